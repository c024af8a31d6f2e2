"""Image nodes: load, scale, save (with the workflow embedded) and preview."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from graph_engine import Combo, ExecutionContext, InputError, Int, NodeOutput, Output, Socket, String, node
from nodes.folders import list_input_images, resolve_input_image, temp_dir


def _image_hash(values: Mapping[str, Any]) -> str:
    """Editing the file on disk changes its hash, so the graph re-reads it."""
    return hashlib.sha256(resolve_input_image(values["image"]).read_bytes()).hexdigest()


@node(
    "LoadImage",
    display_name="Load Image",
    category="image",
    # display="image_file": the editor adds "Choose file…", paste and drop, and shows the picture.
    inputs=[Combo("image", list_input_images, display="image_file")],
    outputs=[Output("IMAGE"), Output("MASK")],
    fingerprint=_image_hash,
)
def load_image(ctx: ExecutionContext, image: str) -> tuple[Any, Any]:
    """An image from the input folder; its transparency becomes the MASK (1 = transparent)."""
    from nodes.diffusion.images import load_image as load

    try:
        path = resolve_input_image(image)
        return load(path)
    except (ValueError, OSError) as exc:
        raise InputError("image", str(exc)) from None


@node(
    "ImageScale",
    display_name="Upscale Image",
    category="image/upscaling",
    inputs=[
        Socket("image", "IMAGE"),
        Combo("upscale_method", ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]),
        Int("width", 512, min=0, max=16384),
        Int("height", 512, min=0, max=16384),
        Combo("crop", ["disabled", "center"]),
    ],
    outputs=[Output("IMAGE")],
)
def image_scale(
    ctx: ExecutionContext, image: Any, upscale_method: str, width: int, height: int, crop: str
) -> tuple[Any]:
    """Resizes images (0 for one side keeps the aspect ratio)."""
    if width == 0 and height == 0:
        return (image,)
    from nodes.diffusion.resize import resize_image

    return (resize_image(image, width, height, upscale_method, crop),)


DEFAULT_PNG_LEVEL = 4


def png_level(ctx: ExecutionContext) -> int:
    """zlib level for saved PNGs, from the ``png_compress_level`` setting (0-9; anything else: 4).

    4 is ComfyUI's choice and the default here: measured on 1024² photo-like images (docs/benchmarks.md,
    "Parts of the graph"), level 1 is about 2x faster (tenths of a second) but its files are 10-20 % bigger,
    and 6 and 9 are slower without being smaller. Saving runs on the executor's worker thread, never the
    UI's, so the level only delays the next queued run, never the window.
    """
    from nodes.diffusion.runtime import setting

    value = setting(ctx.settings, "png_compress_level", DEFAULT_PNG_LEVEL)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        return DEFAULT_PNG_LEVEL
    return value


class ImageWriteError(Exception):
    """An image could not be written (full disk, no permission): the message names the file, no traceback."""

    user_facing = True


@node(
    "SaveImage",
    display_name="Save Image",
    category="image",
    inputs=[Socket("images", "IMAGE"), String("filename_prefix", "sdgraph")],
    output_node=True,
)
def save_image(ctx: ExecutionContext, images: Any, filename_prefix: str) -> NodeOutput:
    """Writes PNGs into the output folder with the workflow embedded, so the image reopens as its graph."""
    from nodes.diffusion.images import save_images

    try:
        saved = save_images(images, ctx.output_dir, filename_prefix, ctx.workflow, compress_level=png_level(ctx))
    except ValueError as exc:
        raise InputError("filename_prefix", str(exc)) from None
    except OSError as exc:  # the file that was being written stays as it was (atomic write)
        where = exc.filename or ctx.output_dir
        raise ImageWriteError(f"{where} could not be written: {exc.strerror or exc}") from None
    return NodeOutput((), {"images": saved})


@node(
    "PreviewImage",
    display_name="Preview Image",
    category="image",
    inputs=[Socket("images", "IMAGE")],
    output_node=True,
)
def preview_image(ctx: ExecutionContext, images: Any) -> NodeOutput:
    """Shows images without keeping them (they go to a temporary folder)."""
    from nodes.diffusion.images import save_images

    folder = ctx.temp_dir or temp_dir()
    folder.mkdir(parents=True, exist_ok=True)
    saved = save_images(images, folder, f"preview_{ctx.node_id}", ctx.workflow, kind="temp", compress_level=1)
    return NodeOutput((), {"images": saved})


NODES = [load_image, image_scale, save_image, preview_image]
