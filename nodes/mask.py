"""Mask nodes: load, convert, make, invert, crop, grow, feather, threshold and combine masks.

A MASK is ``float [B, H, W]`` (1 = selected / to repaint), ComfyUI's layout; every node also accepts a
single ``[H, W]`` mask. Names, inputs and defaults are ComfyUI's; the arithmetic is in
:mod:`nodes.diffusion.image_ops`.
"""

from __future__ import annotations

from typing import Any

from graph_engine import Boolean, Combo, ExecutionContext, Float, InputError, Int, Output, Socket, node
from nodes.folders import list_input_images, resolve_input_image
from nodes.image import _image_hash

MAX_RESOLUTION = 16384
CHANNELS = ["red", "green", "blue", "alpha"]


@node(
    "LoadImageMask",
    display_name="Load Image (as Mask)",
    category="mask",
    inputs=[Combo("image", list_input_images), Combo("channel", ["alpha", "red", "green", "blue"])],
    outputs=[Output("MASK")],
    fingerprint=_image_hash,
)
def load_image_mask(ctx: ExecutionContext, image: str, channel: str) -> tuple[Any]:
    """One channel of an input image as a mask; for alpha, transparent = 1 (the part to repaint), as
    Load Image's mask (an image without transparency gives an empty mask of its size, as in ComfyUI)."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    try:
        path = resolve_input_image(image)
        with Image.open(path) as opened:
            img = ImageOps.exif_transpose(opened) or opened
            if img.mode == "I":
                img = img.point(lambda v: v * (1 / 255))
            letter = channel[0].upper()
            rgba = img.convert("RGBA")
            values = np.asarray(rgba.getchannel(letter), dtype=np.float32) / 255.0
    except (ValueError, OSError) as exc:
        raise InputError("image", str(exc)) from None
    mask = torch.from_numpy(values.copy())
    if letter == "A":
        mask = 1.0 - mask
    return (mask[None],)


@node(
    "ImageToMask",
    display_name="Convert Image to Mask",
    category="mask",
    inputs=[Socket("image", "IMAGE"), Combo("channel", CHANNELS)],
    outputs=[Output("MASK")],
)
def image_to_mask(ctx: ExecutionContext, image: Any, channel: str) -> tuple[Any]:
    """One channel of an image as a mask (e.g. a painted black-and-white mask image)."""
    index = CHANNELS.index(channel)
    if image.shape[-1] <= index:
        raise InputError("channel", f"the image has {image.shape[-1]} channels, so it has no {channel} channel")
    return (image[..., index].float().clone(),)


@node(
    "MaskToImage",
    display_name="Convert Mask to Image",
    category="mask",
    inputs=[Socket("mask", "MASK")],
    outputs=[Output("IMAGE")],
)
def mask_to_image(ctx: ExecutionContext, mask: Any) -> tuple[Any]:
    """A grey image of the mask (white = 1), to preview, save or blend it."""
    from nodes.diffusion.image_ops import as_mask_batch

    m = as_mask_batch(mask)
    return (m[..., None].expand(-1, -1, -1, 3).contiguous(),)


@node(
    "SolidMask",
    display_name="SolidMask",
    category="mask",
    inputs=[
        Float("value", 1.0, min=0.0, max=1.0, step=0.01),
        Int("width", 512, min=1, max=MAX_RESOLUTION),
        Int("height", 512, min=1, max=MAX_RESOLUTION),
    ],
    outputs=[Output("MASK")],
)
def solid_mask(ctx: ExecutionContext, value: float, width: int, height: int) -> tuple[Any]:
    """A mask of one value everywhere: the canvas to composite other masks onto."""
    import torch

    return (torch.full((1, height, width), float(value), dtype=torch.float32),)


@node(
    "InvertMask",
    display_name="InvertMask",
    category="mask",
    inputs=[Socket("mask", "MASK")],
    outputs=[Output("MASK")],
)
def invert_mask(ctx: ExecutionContext, mask: Any) -> tuple[Any]:
    """1 − mask: repaint everything but the selection."""
    from nodes.diffusion.image_ops import as_mask_batch

    return (1.0 - as_mask_batch(mask),)


@node(
    "CropMask",
    display_name="CropMask",
    category="mask",
    inputs=[
        Socket("mask", "MASK"),
        Int("x", 0, min=0, max=MAX_RESOLUTION),
        Int("y", 0, min=0, max=MAX_RESOLUTION),
        Int("width", 512, min=1, max=MAX_RESOLUTION),
        Int("height", 512, min=1, max=MAX_RESOLUTION),
    ],
    outputs=[Output("MASK")],
)
def crop_mask(ctx: ExecutionContext, mask: Any, x: int, y: int, width: int, height: int) -> tuple[Any]:
    """The `width`×`height` rectangle at (x, y), cut at the mask's edges; starting outside is an error."""
    from nodes.diffusion.image_ops import as_mask_batch

    m = as_mask_batch(mask)
    h, w = m.shape[-2:]
    if x >= w:
        raise InputError("x", f"x = {x} is outside the {w}x{h} mask (at most {w - 1})")
    if y >= h:
        raise InputError("y", f"y = {y} is outside the {w}x{h} mask (at most {h - 1})")
    return (m[:, y : y + height, x : x + width].clone(),)


@node(
    "GrowMask",
    display_name="GrowMask",
    category="mask",
    inputs=[
        Socket("mask", "MASK"),
        Int("expand", 0, min=-MAX_RESOLUTION, max=MAX_RESOLUTION),
        Boolean("tapered_corners", True),
    ],
    outputs=[Output("MASK")],
)
def grow_mask(ctx: ExecutionContext, mask: Any, expand: int, tapered_corners: bool) -> tuple[Any]:
    """Grows the mask by `expand` pixels (shrinks it when negative), so an inpaint covers the object's
    edge too; tapered corners grow diagonally slower (a rounder outline)."""
    from nodes.diffusion.image_ops import grow

    return (grow(mask, expand, tapered_corners),)


@node(
    "FeatherMask",
    display_name="FeatherMask",
    category="mask",
    inputs=[
        Socket("mask", "MASK"),
        Int("left", 0, min=0, max=MAX_RESOLUTION),
        Int("top", 0, min=0, max=MAX_RESOLUTION),
        Int("right", 0, min=0, max=MAX_RESOLUTION),
        Int("bottom", 0, min=0, max=MAX_RESOLUTION),
    ],
    outputs=[Output("MASK")],
)
def feather_mask(ctx: ExecutionContext, mask: Any, left: int, top: int, right: int, bottom: int) -> tuple[Any]:
    """Fades the mask linearly to zero over the given number of pixels at each edge."""
    from nodes.diffusion.image_ops import feather

    return (feather(mask, left, top, right, bottom),)


@node(
    "ThresholdMask",
    display_name="ThresholdMask",
    category="mask",
    inputs=[Socket("mask", "MASK"), Float("value", 0.5, min=0.0, max=1.0, step=0.01)],
    outputs=[Output("MASK")],
)
def threshold_mask(ctx: ExecutionContext, mask: Any, value: float) -> tuple[Any]:
    """1 where the mask is above `value`, 0 elsewhere: a hard mask from a soft one."""
    from nodes.diffusion.image_ops import as_mask_batch

    return ((as_mask_batch(mask) > value).float(),)


@node(
    "MaskComposite",
    display_name="MaskComposite",
    category="mask",
    inputs=[
        Socket("destination", "MASK"),
        Socket("source", "MASK"),
        Int("x", 0, min=0, max=MAX_RESOLUTION),
        Int("y", 0, min=0, max=MAX_RESOLUTION),
        Combo("operation", ["multiply", "add", "subtract", "and", "or", "xor"]),
    ],
    outputs=[Output("MASK")],
)
def mask_composite(ctx: ExecutionContext, destination: Any, source: Any, x: int, y: int, operation: str) -> tuple[Any]:
    """Combines `source`, placed at (x, y), into `destination` where they overlap (add, subtract,
    multiply; and/or/xor of the rounded masks), clamped to 0..1."""
    from nodes.diffusion.image_ops import mask_composite as composite

    return (composite(destination, source, x, y, operation),)


NODES = [
    load_image_mask,
    image_to_mask,
    mask_to_image,
    solid_mask,
    invert_mask,
    crop_mask,
    grow_mask,
    feather_mask,
    threshold_mask,
    mask_composite,
]
