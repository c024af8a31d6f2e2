"""FLUX.1 (dev, schnell and their fine-tunes): a rectified-flow MMDiT with CLIP-L and T5-XXL.

Recognised from the original layout (``double_blocks.*``/``single_blocks.*``, bare as in ComfyUI's
``diffusion_models`` files or under ``model.diffusion_model.`` in all-in-one files) and from
diffusers-format transformer files (``single_transformer_blocks.*``). FLUX.2 and Chroma share the
block names and are told apart first (``nodes.families.others``). The network code (shapes,
conversion, the pipeline's call) is ``nodes.diffusion.dit.flux``.

Sampling: dev models use ComfyUI's default ModelSamplingFlux, the exponential shift at mu = 1.15
(``Sampling.shift`` holds that mu; ModelSamplingFlux recomputes it from the image size between
``base_shift`` and ``max_shift``); schnell (no guidance embedder) runs unshifted.
"""

from __future__ import annotations

from nodes.families.base import (
    LatentFormat,
    ModelFamily,
    Sampling,
    Shapes,
    TextConditioning,
    has_prefix,
    with_prefixes,
)
from nodes.families.base import TextEncoderSlot as Slot

TEXT_ENCODERS = (
    Slot("text_encoder", "CLIP-L", "text_encoders.clip_l.transformer.text_model.", "clip",
         "CLIPTextModel", "clip", 49407),
    Slot("text_encoder_2", "T5-XXL", "text_encoders.t5xxl.transformer.", "t5", "T5EncoderModel", "t5", 0),
)  # fmt: skip


# The FLUX.1 VAE's latent space (also Z-Image's). Preview factors: the community's published
# least-squares latent-to-RGB fit for this VAE (as ComfyUI and many previewers ship it), applied to
# the denoiser-space latent.
FLUX_LATENT = LatentFormat(
    channels=16,
    scaling_factor=0.3611,
    shift_factor=0.1159,
    rgb_factors=(
        (-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433), (-0.0174, 0.0160, 0.0617),
        (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115), (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259),
        (-0.0245, 0.0250, 0.1180), (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
        (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499), (-0.1262, -0.0982, -0.0778),
    ),
    rgb_bias=(-0.0329, -0.0718, -0.0851),
)  # fmt: skip


def recognise(shapes: Shapes) -> bool:
    return has_prefix(shapes, with_prefixes(["double_blocks.", "single_blocks.", "single_transformer_blocks."]))


FAMILY = ModelFamily(
    name="flux",
    display_name="FLUX.1",
    description="a FLUX.1 (Black Forest Labs Flux) diffusion transformer",
    recognise=recognise,
    supported=True,
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
    config_dir="flux1_dev",
    components=("transformer", "vae", "scheduler"),
    latent=FLUX_LATENT,
    # FLUX.1-dev's resolution-dependent shift; schnell runs unshifted (its checkpoint has no guidance_in).
    sampling=Sampling("flow", "flux", shift=1.15, base_shift=0.5, max_shift=1.15),
    text_encoders=TEXT_ENCODERS,
    # CLIP-L gives the pooled vector, T5 the sequence (nodes.diffusion.text.flow_encode).
    conditioning=TextConditioning(default_layer=-1, final_norm=True, pooled_encoder=0),
    detector="nodes.diffusion.dit.flux:config_from_shapes",
    predictor="nodes.diffusion.dit.flux:predict",
    denoiser_loader="nodes.diffusion.dit.flux:load",
    clip_type="flux",
)
