"""Names shared by the Stable Diffusion families stored in the original LDM/SGM layout.

A single-file SD checkpoint holds the UNet under ``model.diffusion_model.``, the VAE under
``first_stage_model.`` and its text encoders at a prefix that differs per family; which encoder
prefixes are present is what tells SD1, SD2, SDXL and the refiner apart (the UNets alone differ
only in widths, which pruned and distilled files change).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from nodes.families.base import DiffusersFolder, Shapes, TextEncoderSlot

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
UNET_MARKER = UNET_PREFIX + "input_blocks.0.0.weight"
DENOISER_CLASS = "diffusers.UNet2DConditionModel"
VAE_CLASS = "diffusers.AutoencoderKL"
COMPONENTS_ALL = ("unet", "vae", "scheduler")

# Padding ids of the two tokenizer conventions (nodes.diffusion.text.tokenize): CLIP-L pads with EOS,
# OpenCLIP with 0.
PAD_CLIP_L = 49407
PAD_OPEN_CLIP = 0


def encoder_marker(slot: TextEncoderSlot) -> str:
    """The one tensor whose presence says this encoder is in the file: its token embedding."""
    if slot.layout == "clip":
        return slot.prefix + "embeddings.token_embedding.weight"
    return slot.prefix + "token_embedding.weight"


def recognise_by_encoders(slots: Sequence[TextEncoderSlot]) -> Callable[[Shapes], bool]:
    """An LDM UNet plus any of this family's text encoders at its own prefix."""
    markers = [encoder_marker(s) for s in slots]

    def recognise(shapes: Shapes) -> bool:
        return UNET_MARKER in shapes and any(m in shapes for m in markers)

    return recognise


def sdxl_style(folder: DiffusersFolder) -> bool:
    """A diffusers UNet with SDXL's size conditioning."""
    return folder.config("unet").get("addition_embed_type") == "text_time"


def clip_activation(folder: DiffusersFolder) -> str | None:
    """SD1 uses OpenAI's CLIP-L (quick_gelu), SD2 OpenCLIP-H (gelu); None if the folder does not say."""
    act = folder.config("text_encoder").get("hidden_act") if folder.has("text_encoder") else None
    return act if act in ("quick_gelu", "gelu") else None
