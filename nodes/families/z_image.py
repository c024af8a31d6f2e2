"""Z-Image (Turbo): a single-stream DiT with a Qwen3 text encoder; known, not yet runnable.

Recognised from the original (Lumina2-style) layout: ``layers.N.attention.qkv``, ``cap_embedder``,
``noise_refiner``, ``context_refiner``, with Z-Image's ``layers.0.adaLN_modulation.0`` (the key
diffusers' single-file loader uses to tell it from Lumina2), bare or under ``model.diffusion_model.``;
and from diffusers-format files (``all_x_embedder.*``). To support it: set ``supported=True`` and fill
in the fields the conformance test asks for.
"""

from __future__ import annotations

from nodes.families.base import LatentFormat, ModelFamily, Sampling, Shapes, has_any, has_prefix, with_prefixes


def recognise(shapes: Shapes) -> bool:
    if has_any(shapes, with_prefixes(["layers.0.adaLN_modulation.0.weight"])):
        return True
    return has_prefix(shapes, with_prefixes(["all_x_embedder."]))


FAMILY = ModelFamily(
    name="z_image",
    display_name="Z-Image",
    description="a Z-Image diffusion transformer",
    recognise=recognise,
    diffusers_pipelines=("ZImagePipeline", "ZImageImg2ImgPipeline", "ZImageInpaintPipeline"),
    denoiser_class="diffusers.ZImageTransformer2DModel",
    vae_class="diffusers.AutoencoderKL",
    latent=LatentFormat(channels=16, scaling_factor=0.3611, shift_factor=0.1159),  # the FLUX.1 VAE
    sampling=Sampling("flow", "auraflow", shift=3.0),
)
