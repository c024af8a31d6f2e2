"""Stable Diffusion 2.x: OpenCLIP-H (used up to its penultimate block), SD1's latent space, and ε or v
prediction, which the files do not record (detection measures it)."""

from __future__ import annotations

from nodes.families import ldm
from nodes.families.base import DiffusersFolder, LdmUnet, ModelFamily, Sampling, TextConditioning
from nodes.families.base import TextEncoderSlot as Slot
from nodes.families.sd1 import SD_LATENT

TEXT_ENCODERS = (
    Slot(
        "text_encoder",
        "OpenCLIP-H",
        "cond_stage_model.model.",
        "openclip",
        "CLIPTextModel",
        "clip",
        ldm.PAD_OPEN_CLIP,
        drop_last_block=True,
    ),
)


def _diffusers(folder: DiffusersFolder) -> bool:
    if ldm.sdxl_style(folder):
        return False
    act = ldm.clip_activation(folder)
    return act == "gelu" if act else folder.config("unet").get("cross_attention_dim") == 1024


FAMILY = ModelFamily(
    name="sd2",
    display_name="Stable Diffusion 2.x",
    description="a Stable Diffusion 2.x checkpoint",
    recognise=ldm.recognise_by_encoders(TEXT_ENCODERS),
    supported=True,
    diffusers_pipelines=("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"),
    recognise_diffusers=_diffusers,
    denoiser_class=ldm.DENOISER_CLASS,
    vae_class=ldm.VAE_CLASS,
    config_dir="sd2",
    components=(*ldm.COMPONENTS_ALL, "text_encoder"),
    latent=SD_LATENT,
    # SD2.1-768 predicts v, 2.x-base ε; the weights are measured (nodes.diffusion.checkpoint.detect).
    sampling=Sampling("v_prediction", measured=True),
    text_encoders=TEXT_ENCODERS,
    conditioning=TextConditioning(default_layer=-1, final_norm=True, pooled_encoder=None),
    ldm_unet=LdmUnet(signature=(1024, False), upcast_attention_for_v=True),
    detector="nodes.diffusion.checkpoint.detect:detect_ldm_checkpoint",
)
