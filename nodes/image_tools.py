"""The image toolbox: scale, crop, invert, blend, composite, pad for outpainting, batch.

Type names, input names, order, defaults and ranges are ComfyUI's, so the positional widget values of
a ComfyUI workflow land on the right inputs. The arithmetic is in :mod:`nodes.diffusion.image_ops`.
"""

from __future__ import annotations

from typing import Any

from graph_engine import Boolean, Combo, ExecutionContext, Float, InputError, Int, Output, Socket, node

MAX_RESOLUTION = 16384
IMAGE_UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
BLEND_MODES = ["normal", "multiply", "screen", "overlay", "soft_light", "difference"]


def _check_image(name: str, image: Any) -> None:
    if getattr(image, "ndim", 0) != 4:
        raise InputError(name, f"expected an IMAGE [batch, height, width, channels], got shape {tuple(image.shape)}")


@node(
    "ImageScaleBy",
    display_name="Upscale Image By",
    category="image/upscaling",
    inputs=[
        Socket("image", "IMAGE"),
        Combo("upscale_method", IMAGE_UPSCALE_METHODS),
        Float("scale_by", 1.0, min=0.01, max=8.0, step=0.01),
    ],
    outputs=[Output("IMAGE")],
)
def image_scale_by(ctx: ExecutionContext, image: Any, upscale_method: str, scale_by: float) -> tuple[Any]:
    """Resizes by a factor (each side rounded), e.g. 2× before a second img2img pass."""
    from nodes.diffusion.image_ops import scaled_size
    from nodes.diffusion.resize import resize_image

    _check_image("image", image)
    width, height = scaled_size(image.shape[2], image.shape[1], scale_by)
    return (resize_image(image, width, height, upscale_method, "disabled"),)


@node(
    "ImageScaleToTotalPixels",
    display_name="Scale Image to Total Pixels",
    category="image/upscaling",
    inputs=[
        Socket("image", "IMAGE"),
        Combo("upscale_method", IMAGE_UPSCALE_METHODS),
        Float("megapixels", 1.0, min=0.01, max=16.0, step=0.01),
        Int("resolution_steps", 1, min=1, max=256),
    ],
    outputs=[Output("IMAGE")],
)
def image_scale_to_total_pixels(
    ctx: ExecutionContext, image: Any, upscale_method: str, megapixels: float, resolution_steps: int
) -> tuple[Any]:
    """Resizes to about `megapixels` × 1024² pixels keeping the aspect ratio — the size a model was
    trained at, whatever shape the input has (sides rounded to multiples of `resolution_steps`)."""
    from nodes.diffusion.image_ops import total_pixels_size
    from nodes.diffusion.resize import resize_image

    _check_image("image", image)
    width, height = total_pixels_size(image.shape[2], image.shape[1], megapixels, resolution_steps)
    return (resize_image(image, width, height, upscale_method, "disabled"),)


@node(
    "ImageCrop",
    display_name="Image Crop",
    category="image/transform",
    inputs=[
        Socket("image", "IMAGE"),
        Int("width", 512, min=1, max=MAX_RESOLUTION),
        Int("height", 512, min=1, max=MAX_RESOLUTION),
        Int("x", 0, min=0, max=MAX_RESOLUTION),
        Int("y", 0, min=0, max=MAX_RESOLUTION),
    ],
    outputs=[Output("IMAGE")],
)
def image_crop(ctx: ExecutionContext, image: Any, width: int, height: int, x: int, y: int) -> tuple[Any]:
    """The `width`×`height` rectangle at (x, y); a rectangle reaching past the right or bottom edge is
    cut there (as ComfyUI does), one starting outside the image is an error."""
    _check_image("image", image)
    h, w = image.shape[1:3]
    if x >= w:
        raise InputError("x", f"x = {x} is outside the {w}x{h} image (at most {w - 1})")
    if y >= h:
        raise InputError("y", f"y = {y} is outside the {w}x{h} image (at most {h - 1})")
    return (image[:, y : y + height, x : x + width, :].clone(),)


@node(
    "ImageInvert",
    display_name="Invert Image",
    category="image",
    inputs=[Socket("image", "IMAGE")],
    outputs=[Output("IMAGE")],
)
def image_invert(ctx: ExecutionContext, image: Any) -> tuple[Any]:
    """1 − every channel: a negative, or a white-on-black mask turned black-on-white."""
    return (1.0 - image,)


@node(
    "ImageBlend",
    display_name="Image Blend",
    category="image/postprocessing",
    inputs=[
        Socket("image1", "IMAGE"),
        Socket("image2", "IMAGE"),
        Float("blend_factor", 0.5, min=0.0, max=1.0, step=0.01),
        Combo("blend_mode", BLEND_MODES),
    ],
    outputs=[Output("IMAGE")],
)
def image_blend(ctx: ExecutionContext, image1: Any, image2: Any, blend_factor: float, blend_mode: str) -> tuple[Any]:
    """Mixes two images as a paint program's layer modes do (image1 the base, image2 the layer), by
    `blend_factor`; image2 is resized to image1 when their sizes differ."""
    from nodes.diffusion.image_ops import blend

    _check_image("image1", image1)
    _check_image("image2", image2)
    return (blend(image1, image2, blend_factor, blend_mode),)


@node(
    "ImageCompositeMasked",
    display_name="ImageCompositeMasked",
    category="image",
    inputs=[
        Socket("destination", "IMAGE"),
        Socket("source", "IMAGE"),
        Int("x", 0, min=0, max=MAX_RESOLUTION, step=8),
        Int("y", 0, min=0, max=MAX_RESOLUTION, step=8),
        Boolean("resize_source", False),
        Socket("mask", "MASK", optional=True),
    ],
    outputs=[Output("IMAGE")],
)
def image_composite_masked(
    ctx: ExecutionContext,
    destination: Any,
    source: Any,
    x: int,
    y: int,
    resize_source: bool,
    mask: Any = None,
) -> tuple[Any]:
    """Pastes `source` onto `destination` at (x, y), through `mask` when given (1 = source) — e.g. an
    inpainted crop put back into the full image. The mask must have the source's shape (its scale may
    differ: it is resized)."""
    from nodes.diffusion.image_ops import composite

    _check_image("destination", destination)
    _check_image("source", source)
    try:
        return (composite(destination, source, x, y, mask, resize_source),)
    except ValueError as exc:
        raise InputError("mask", str(exc)) from None


@node(
    "ImagePadForOutpaint",
    display_name="Pad Image for Outpainting",
    category="image",
    inputs=[
        Socket("image", "IMAGE"),
        Int("left", 0, min=0, max=MAX_RESOLUTION, step=8),
        Int("top", 0, min=0, max=MAX_RESOLUTION, step=8),
        Int("right", 0, min=0, max=MAX_RESOLUTION, step=8),
        Int("bottom", 0, min=0, max=MAX_RESOLUTION, step=8),
        Int("feathering", 40, min=0, max=MAX_RESOLUTION),
    ],
    outputs=[Output("IMAGE"), Output("MASK")],
)
def image_pad_for_outpaint(
    ctx: ExecutionContext, image: Any, left: int, top: int, right: int, bottom: int, feathering: int
) -> tuple[Any, Any]:
    """Grows the canvas (new pixels grey) and returns the mask of what to paint: the new margins, fading
    `feathering` pixels into the old image so the seam blends. Feed both to VAE Encode (for Inpainting)."""
    from nodes.diffusion.image_ops import pad_for_outpaint

    _check_image("image", image)
    return pad_for_outpaint(image, left, top, right, bottom, feathering)


@node(
    "ImageBatch",
    display_name="Batch Images",
    category="image",
    inputs=[Socket("image1", "IMAGE"), Socket("image2", "IMAGE")],
    outputs=[Output("IMAGE")],
)
def image_batch(ctx: ExecutionContext, image1: Any, image2: Any) -> tuple[Any]:
    """One batch of both inputs (image2 resized to image1's size), so later nodes treat them together."""
    from nodes.diffusion.image_ops import batch_images

    _check_image("image1", image1)
    _check_image("image2", image2)
    try:
        return (batch_images(image1, image2),)
    except ValueError as exc:
        raise InputError("image2", str(exc)) from None


NODES = [
    image_scale_by,
    image_scale_to_total_pixels,
    image_crop,
    image_invert,
    image_blend,
    image_composite_masked,
    image_pad_for_outpaint,
    image_batch,
]
