"""FLUX.1 (dev, schnell and their fine-tunes): known, not yet runnable.

Recognised from the original layout (``double_blocks.*``/``single_blocks.*``, bare as in ComfyUI's
``diffusion_models`` files or under ``model.diffusion_model.`` in all-in-one files) and from
diffusers-format transformer files (``single_transformer_blocks.*``). FLUX.2 and Chroma share the
block names and are told apart first (``nodes.families.others``). To support FLUX.1: set
``supported=True`` and fill in the fields the conformance test asks for.
"""

from __future__ import annotations

from nodes.families.base import LatentFormat, ModelFamily, Sampling, Shapes, has_prefix, with_prefixes
from nodes.families.base import TextEncoderSlot as Slot

TEXT_ENCODERS = (
    Slot("text_encoder", "CLIP-L", "text_encoders.clip_l.transformer.text_model.", "clip",
         "CLIPTextModel", "clip", 49407),
    Slot("text_encoder_2", "T5-XXL", "text_encoders.t5xxl.transformer.", "t5", "T5EncoderModel", "t5", 0),
)  # fmt: skip


def recognise(shapes: Shapes) -> bool:
    return has_prefix(shapes, with_prefixes(["double_blocks.", "single_blocks.", "single_transformer_blocks."]))


FAMILY = ModelFamily(
    name="flux",
    display_name="FLUX.1",
    description="a FLUX.1 (Black Forest Labs Flux) diffusion transformer",
    recognise=recognise,
    diffusers_pipelines=(
        "FluxPipeline",
        "FluxImg2ImgPipeline",
        "FluxInpaintPipeline",
        "FluxFillPipeline",
        "FluxControlPipeline",
        "FluxKontextPipeline",
    ),
    denoiser_class="diffusers.FluxTransformer2DModel",
    vae_class="diffusers.AutoencoderKL",
    latent=LatentFormat(channels=16, scaling_factor=0.3611, shift_factor=0.1159),
    # FLUX.1-dev's resolution-dependent shift; schnell runs unshifted (its checkpoint has no guidance_in).
    sampling=Sampling("flow", "flux", shift=1.15, base_shift=0.5, max_shift=1.15),
    text_encoders=TEXT_ENCODERS,
)
