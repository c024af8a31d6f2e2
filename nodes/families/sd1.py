"""Stable Diffusion 1.x: one CLIP-L text encoder, 4-channel latents, ε-prediction."""

from __future__ import annotations

from nodes.families import ldm
from nodes.families.base import DiffusersFolder, LatentFormat, LdmUnet, ModelFamily, Sampling, TextConditioning
from nodes.families.base import TextEncoderSlot as Slot

# The published latent-to-RGB approximation of the SD1/SD2 VAE latent space (shared with SD2).
SD_LATENT = LatentFormat(
    channels=4,
    scaling_factor=0.18215,
    rgb_factors=(
        (0.3512, 0.2297, 0.3227),
        (0.3250, 0.4974, 0.2350),
        (-0.2829, 0.1762, 0.2721),
        (-0.2120, -0.2616, -0.7177),
    ),
)

TEXT_ENCODERS = (
    Slot(
        "text_encoder",
        "CLIP-L",
        "cond_stage_model.transformer.text_model.",
        "clip",
        "CLIPTextModel",
        "clip",
        ldm.PAD_CLIP_L,
    ),
)


def _diffusers(folder: DiffusersFolder) -> bool:
    if ldm.sdxl_style(folder):
        return False
    act = ldm.clip_activation(folder)
    return act == "quick_gelu" if act else folder.config("unet").get("cross_attention_dim") == 768


FAMILY = ModelFamily(
    name="sd1",
    display_name="Stable Diffusion 1.x",
    description="a Stable Diffusion 1.x checkpoint",
    recognise=ldm.recognise_by_encoders(TEXT_ENCODERS),
    supported=True,
    diffusers_pipelines=("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"),
    recognise_diffusers=_diffusers,
    denoiser_class=ldm.DENOISER_CLASS,
    vae_class=ldm.VAE_CLASS,
    config_dir="sd1",
    components=(*ldm.COMPONENTS_ALL, "text_encoder"),
    latent=SD_LATENT,
    sampling=Sampling("epsilon"),
    text_encoders=TEXT_ENCODERS,
    conditioning=TextConditioning(default_layer=-1, final_norm=True, pooled_encoder=None),
    ldm_unet=LdmUnet(signature=(768, False), heads="config"),
    detector="nodes.diffusion.checkpoint.detect:detect_ldm_checkpoint",
)
