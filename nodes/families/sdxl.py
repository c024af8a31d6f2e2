"""SDXL base: CLIP-L and OpenCLIP-bigG (features concatenated, bigG's pooled output), size conditioning
with 6 ids, its own VAE latent space."""

from __future__ import annotations

from nodes.families import ldm
from nodes.families.base import DiffusersFolder, LatentFormat, LdmUnet, ModelFamily, Sampling, TextConditioning
from nodes.families.base import TextEncoderSlot as Slot

# The published latent-to-RGB approximation of the SDXL VAE latent space (shared with the refiner).
SDXL_LATENT = LatentFormat(
    channels=4,
    scaling_factor=0.13025,
    rgb_factors=(
        (0.3651, 0.4232, 0.4341),
        (-0.2533, -0.0042, 0.1068),
        (0.1076, 0.1111, -0.0362),
        (-0.3165, -0.2492, -0.2188),
    ),
    rgb_bias=(0.1084, -0.0175, -0.0011),
)

BIG_G_ROLE = "OpenCLIP-bigG with projection"
TEXT_ENCODERS = (
    Slot(
        "text_encoder",
        "CLIP-L",
        "conditioner.embedders.0.transformer.text_model.",
        "clip",
        "CLIPTextModel",
        "clip",
        ldm.PAD_CLIP_L,
    ),
    Slot(
        "text_encoder_2",
        BIG_G_ROLE,
        "conditioner.embedders.1.model.",
        "openclip",
        "CLIPTextModelWithProjection",
        "clip",
        ldm.PAD_OPEN_CLIP,
    ),
)


def _diffusers(folder: DiffusersFolder) -> bool:
    return ldm.sdxl_style(folder) and folder.has("text_encoder")


FAMILY = ModelFamily(
    name="sdxl",
    display_name="SDXL",
    description="an SDXL base checkpoint",
    recognise=ldm.recognise_by_encoders(TEXT_ENCODERS),
    supported=True,
    diffusers_pipelines=("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"),
    recognise_diffusers=_diffusers,
    denoiser_class=ldm.DENOISER_CLASS,
    vae_class=ldm.VAE_CLASS,
    config_dir="sdxl",
    components=(*ldm.COMPONENTS_ALL, "text_encoder", "text_encoder_2"),
    latent=SDXL_LATENT,
    sampling=Sampling("epsilon"),
    text_encoders=TEXT_ENCODERS,
    conditioning=TextConditioning(default_layer=-2, final_norm=False, pooled_encoder=1),
    ldm_unet=LdmUnet(signature=(2048, True), time_ids=6),
    detector="nodes.diffusion.checkpoint.detect:detect_ldm_checkpoint",
)
