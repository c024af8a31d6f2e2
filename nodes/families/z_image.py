"""Z-Image (Turbo): a single-stream DiT with a Qwen3 text encoder; known, not yet runnable.

Recognised from the original (Lumina2-style) layout: ``layers.N.attention.qkv``, ``cap_embedder``,
``noise_refiner``, ``context_refiner``, with Z-Image's ``layers.0.adaLN_modulation.0`` (the key
diffusers' single-file loader uses to tell it from Lumina2), bare or under ``model.diffusion_model.``;
and from diffusers-format files (``all_x_embedder.*``). Its text encoder is Qwen3-4B (ComfyUI's CLIPLoader
type ``lumina2``), read at the second-to-last hidden state over a chat template. Sampling: ComfyUI's
ModelSamplingAuraFlow at shift 3 (timestep σ; the network itself is fed 1 − σ, see
``nodes.diffusion.dit.z_image``).
"""

from __future__ import annotations

from nodes.families.base import ModelFamily, Sampling, Shapes, TextConditioning, has_any, has_prefix, with_prefixes
from nodes.families.base import TextEncoderSlot as Slot
from nodes.families.flux import FLUX_LATENT

QWEN3_PAD = 151643  # <|endoftext|>
TEXT_ENCODERS = (
    Slot("text_encoder", "Qwen3-4B", "text_encoders.qwen3_4b.transformer.", "qwen3", "Qwen3Model", "qwen3", QWEN3_PAD),
)


def recognise(shapes: Shapes) -> bool:
    if has_any(shapes, with_prefixes(["layers.0.adaLN_modulation.0.weight"])):
        return True
    return has_prefix(shapes, with_prefixes(["all_x_embedder."]))


FAMILY = ModelFamily(
    name="z_image",
    display_name="Z-Image",
    description="a Z-Image diffusion transformer",
    recognise=recognise,
    supported=True,
    diffusers_pipelines=("ZImagePipeline", "ZImageImg2ImgPipeline", "ZImageInpaintPipeline"),
    denoiser_class="diffusers.ZImageTransformer2DModel",
    vae_class="diffusers.AutoencoderKL",
    config_dir="z_image_turbo",
    components=("transformer", "vae", "scheduler"),
    latent=FLUX_LATENT,  # the FLUX.1 VAE
    sampling=Sampling("flow", "auraflow", shift=3.0),
    text_encoders=TEXT_ENCODERS,
    conditioning=TextConditioning(default_layer=-2, final_norm=False, pooled_encoder=None),
    detector="nodes.diffusion.dit.z_image:config_from_shapes",
    predictor="nodes.diffusion.dit.z_image:predict",
    denoiser_loader="nodes.diffusion.dit.z_image:load",
    clip_type="lumina2",
)
