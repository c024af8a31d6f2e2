"""Regional and combined conditioning: areas, masks and strengths (regional prompts), concat and
average of prompts, the SDXL refiner's prompt encode, and InpaintModelConditioning.

The values these nodes set live in each entry's ``extras`` (keys in :mod:`nodes.diffusion.conditioning`);
the sampler's guider is what makes an area or mask count (:mod:`nodes.diffusion.guidance`). Names,
inputs and defaults are ComfyUI's so its workflows map.
"""

from __future__ import annotations

import logging
from typing import Any

from graph_engine import (
    Boolean,
    Combo,
    ExecutionContext,
    Float,
    InputError,
    Int,
    Output,
    Socket,
    String,
    node,
)

MAX_RESOLUTION = 16384
log = logging.getLogger(__name__)


def _set(conditioning: Any, **extras: Any) -> Any:
    from nodes.diffusion.conditioning import with_extras

    return with_extras(conditioning, **extras)


@node(
    "ConditioningSetArea",
    display_name="Conditioning (Set Area)",
    category="conditioning",
    inputs=[
        Socket("conditioning", "CONDITIONING"),
        Int("width", 64, min=64, max=MAX_RESOLUTION, step=8),
        Int("height", 64, min=64, max=MAX_RESOLUTION, step=8),
        Int("x", 0, min=0, max=MAX_RESOLUTION, step=8),
        Int("y", 0, min=0, max=MAX_RESOLUTION, step=8),
        Float("strength", 1.0, min=0.0, max=10.0, step=0.01),
    ],
    outputs=[Output("CONDITIONING")],
)
def conditioning_set_area(
    ctx: ExecutionContext, conditioning: Any, width: int, height: int, x: int, y: int, strength: float
) -> tuple[Any]:
    """This prompt guides only the `width`×`height` rectangle at (x, y) (pixels); combine it with a
    prompt for the whole image. Where regions overlap, `strength` weighs them."""
    from nodes.diffusion.conditioning import AREA_KEY, AREA_TO_BOUNDS_KEY, STRENGTH_KEY

    area = ("cells", height // 8, width // 8, y // 8, x // 8)
    return (_set(conditioning, **{AREA_KEY: area, STRENGTH_KEY: float(strength), AREA_TO_BOUNDS_KEY: False}),)


@node(
    "ConditioningSetAreaPercentage",
    display_name="Conditioning (Set Area with Percentage)",
    category="conditioning",
    inputs=[
        Socket("conditioning", "CONDITIONING"),
        Float("width", 1.0, min=0.0, max=1.0, step=0.01),
        Float("height", 1.0, min=0.0, max=1.0, step=0.01),
        Float("x", 0.0, min=0.0, max=1.0, step=0.01),
        Float("y", 0.0, min=0.0, max=1.0, step=0.01),
        Float("strength", 1.0, min=0.0, max=10.0, step=0.01),
    ],
    outputs=[Output("CONDITIONING")],
)
def conditioning_set_area_percentage(
    ctx: ExecutionContext, conditioning: Any, width: float, height: float, x: float, y: float, strength: float
) -> tuple[Any]:
    """As Set Area, with the rectangle in fractions of the image, so it follows any image size."""
    from nodes.diffusion.conditioning import AREA_KEY, AREA_TO_BOUNDS_KEY, STRENGTH_KEY

    area = ("percentage", float(height), float(width), float(y), float(x))
    return (_set(conditioning, **{AREA_KEY: area, STRENGTH_KEY: float(strength), AREA_TO_BOUNDS_KEY: False}),)


@node(
    "ConditioningSetAreaStrength",
    display_name="ConditioningSetAreaStrength",
    category="conditioning",
    inputs=[Socket("conditioning", "CONDITIONING"), Float("strength", 1.0, min=0.0, max=10.0, step=0.01)],
    outputs=[Output("CONDITIONING")],
)
def conditioning_set_area_strength(ctx: ExecutionContext, conditioning: Any, strength: float) -> tuple[Any]:
    """The weight of this prompt where it overlaps other prompts (its predictions are averaged with
    theirs, weighted)."""
    from nodes.diffusion.conditioning import STRENGTH_KEY

    return (_set(conditioning, **{STRENGTH_KEY: float(strength)}),)


@node(
    "ConditioningSetMask",
    display_name="Conditioning (Set Mask)",
    category="conditioning",
    inputs=[
        Socket("conditioning", "CONDITIONING"),
        Socket("mask", "MASK"),
        Float("strength", 1.0, min=0.0, max=10.0, step=0.01),
        Combo("set_cond_area", ["default", "mask bounds"]),
    ],
    outputs=[Output("CONDITIONING")],
)
def conditioning_set_mask(
    ctx: ExecutionContext, conditioning: Any, mask: Any, strength: float, set_cond_area: str
) -> tuple[Any]:
    """This prompt guides where the mask is (weighted by it, resized to the latent); with "mask
    bounds" the model sees only the mask's bounding box, as if it were the whole image."""
    from nodes.diffusion.conditioning import AREA_TO_BOUNDS_KEY, MASK_KEY, MASK_STRENGTH_KEY

    if getattr(mask, "ndim", 0) not in (2, 3):
        raise InputError("mask", f"expected a MASK [batch, height, width], got shape {tuple(mask.shape)}")
    m = mask.float().reshape(-1, mask.shape[-2], mask.shape[-1])
    return (
        _set(
            conditioning,
            **{MASK_KEY: m, AREA_TO_BOUNDS_KEY: set_cond_area != "default", MASK_STRENGTH_KEY: float(strength)},
        ),
    )


@node(
    "ConditioningConcat",
    display_name="Conditioning (Concat)",
    category="conditioning",
    inputs=[Socket("conditioning_to", "CONDITIONING"), Socket("conditioning_from", "CONDITIONING")],
    outputs=[Output("CONDITIONING")],
)
def conditioning_concat(ctx: ExecutionContext, conditioning_to: Any, conditioning_from: Any) -> tuple[Any]:
    """Appends the tokens of `conditioning_from` (its first prompt) to each prompt of `conditioning_to`:
    one prompt reading both, a way past the 77-token window without averaging."""
    from nodes.diffusion.conditioning import concat_entries

    if len(conditioning_from) > 1:
        log.warning("conditioning_from holds several prompts; only the first is appended")
    return (concat_entries(conditioning_to, conditioning_from),)


@node(
    "ConditioningAverage",
    display_name="ConditioningAverage",
    category="conditioning",
    inputs=[
        Socket("conditioning_to", "CONDITIONING"),
        Socket("conditioning_from", "CONDITIONING"),
        Float("conditioning_to_strength", 1.0, min=0.0, max=1.0, step=0.01),
    ],
    outputs=[Output("CONDITIONING")],
)
def conditioning_average(
    ctx: ExecutionContext, conditioning_to: Any, conditioning_from: Any, conditioning_to_strength: float
) -> tuple[Any]:
    """Interpolates the embeddings: `to`·s + `from`·(1 − s), a blend of two prompts in one."""
    from nodes.diffusion.conditioning import average_entries

    if len(conditioning_from) > 1:
        log.warning("conditioning_from holds several prompts; only the first is averaged in")
    return (average_entries(conditioning_to, conditioning_from, conditioning_to_strength),)


@node(
    "CLIPTextEncodeSDXLRefiner",
    display_name="CLIPTextEncodeSDXLRefiner",
    category="advanced/conditioning",
    inputs=[
        Float("ascore", 6.0, min=0.0, max=1000.0, step=0.01),
        Int("width", 1024, min=0, max=MAX_RESOLUTION),
        Int("height", 1024, min=0, max=MAX_RESOLUTION),
        String("text", "", multiline=True),
        Socket("clip", "CLIP"),
    ],
    outputs=[Output("CONDITIONING")],
)
def clip_text_encode_sdxl_refiner(
    ctx: ExecutionContext, ascore: float, width: int, height: int, text: str, clip: Any
) -> tuple[Any]:
    """The SDXL refiner's prompt: its text plus the aesthetic score it is conditioned on (about 6 for
    the positive, 2.5 for the negative) and the original image size."""
    from nodes.diffusion.conditioning import AESTHETIC_SCORE_KEY

    if clip is None:
        raise InputError("clip", "no text encoder: this checkpoint has none")
    return (clip.encode(text, {AESTHETIC_SCORE_KEY: float(ascore), "width": width, "height": height}),)


@node(
    "InpaintModelConditioning",
    display_name="InpaintModelConditioning",
    category="conditioning/inpaint",
    inputs=[
        Socket("positive", "CONDITIONING"),
        Socket("negative", "CONDITIONING"),
        Socket("vae", "VAE"),
        Socket("pixels", "IMAGE"),
        Socket("mask", "MASK"),
        Boolean(
            "noise_mask",
            True,
            tooltip="also limit sampling to the mask (for ordinary checkpoints and partial denoise)",
        ),
    ],
    outputs=[Output("CONDITIONING", "positive"), Output("CONDITIONING", "negative"), Output("LATENT", "latent")],
)
def inpaint_model_conditioning(
    ctx: ExecutionContext, positive: Any, negative: Any, vae: Any, pixels: Any, mask: Any, noise_mask: bool
) -> tuple[Any, Any, Any]:
    """Inpainting with the image kept: the latent is the whole image's (so denoise < 1 works), and the
    prompts carry the masked image's latent and the mask, which inpainting checkpoints take as extra
    input channels; with `noise_mask`, only the mask is resampled (ordinary checkpoints too)."""
    import torch

    from nodes.diffusion.checkpoint.vae_ops import encode
    from nodes.diffusion.conditioning import CONCAT_LATENT_KEY, CONCAT_MASK_KEY, with_extras
    from nodes.diffusion.image_ops import fit_mask

    h, w = pixels.shape[1:3]
    try:
        m = fit_mask(mask, h, w, "the image")
    except ValueError as exc:
        raise InputError("mask", str(exc)) from None
    h8, w8 = h // 8 * 8, w // 8 * 8
    y0, x0 = (h - h8) // 2, (w - w8) // 2
    image = pixels[:, y0 : y0 + h8, x0 : x0 + w8, :3].float()
    m = m[:, y0 : y0 + h8, x0 : x0 + w8]
    keep = (1.0 - m.round())[..., None]
    masked = (image - 0.5) * keep + 0.5
    with torch.inference_mode():
        concat_latent = encode(vae.vae, masked, scaling_factor=1.0)
        latent = encode(vae.vae, image, scaling_factor=1.0)
    extras = {CONCAT_LATENT_KEY: concat_latent, CONCAT_MASK_KEY: m[:, None]}
    out: dict[str, Any] = {"samples": latent}
    if noise_mask:
        out["noise_mask"] = m[:, None]
    return with_extras(positive, **extras), with_extras(negative, **extras), out


NODES = [
    conditioning_set_area,
    conditioning_set_area_percentage,
    conditioning_set_area_strength,
    conditioning_set_mask,
    conditioning_concat,
    conditioning_average,
    clip_text_encode_sdxl_refiner,
    inpaint_model_conditioning,
]
