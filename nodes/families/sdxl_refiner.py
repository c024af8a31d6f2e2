"""SDXL refiner: OpenCLIP-bigG alone (at SGM embedder 0), size conditioning with 5 ids (no target
size, plus an aesthetic score), SDXL's latent space."""

from __future__ import annotations

from nodes.families import ldm
from nodes.families.base import DiffusersFolder, LdmUnet, ModelFamily, Sampling, TextConditioning
from nodes.families.base import TextEncoderSlot as Slot
from nodes.families.sdxl import BIG_G_ROLE, SDXL_LATENT

TEXT_ENCODERS = (
    Slot(
        "text_encoder_2",
        BIG_G_ROLE,
        "conditioner.embedders.0.model.",
        "openclip",
        "CLIPTextModelWithProjection",
        "clip",
        ldm.PAD_OPEN_CLIP,
    ),
)


def _diffusers(folder: DiffusersFolder) -> bool:
    return ldm.sdxl_style(folder) and not folder.has("text_encoder")


FAMILY = ModelFamily(
    name="sdxl_refiner",
    display_name="SDXL refiner",
    description="an SDXL refiner checkpoint",
    recognise=ldm.recognise_by_encoders(TEXT_ENCODERS),
    supported=True,
    diffusers_pipelines=("StableDiffusionXLImg2ImgPipeline",),
    recognise_diffusers=_diffusers,
    denoiser_class=ldm.DENOISER_CLASS,
    vae_class=ldm.VAE_CLASS,
    config_dir="sdxl_refiner",
    components=(*ldm.COMPONENTS_ALL, "text_encoder_2"),
    latent=SDXL_LATENT,
    sampling=Sampling("epsilon"),
    text_encoders=TEXT_ENCODERS,
    conditioning=TextConditioning(default_layer=-2, final_norm=False, pooled_encoder=0),
    ldm_unet=LdmUnet(signature=(1280, True), time_ids=5),
    detector="nodes.diffusion.checkpoint.detect:detect_ldm_checkpoint",
)
