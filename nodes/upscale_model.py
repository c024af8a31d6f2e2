"""Upscale-model nodes, named and wired as ComfyUI's so its workflows run: load an ESRGAN/SwinIR/HAT/DAT/…
file from ``models/upscale_models`` (through spandrel, `nodes.diffusion.upscale_models`) and upscale
images with it, in tiles when memory is short."""

from __future__ import annotations

from typing import Any

from graph_engine import Combo, ExecutionContext, InputError, Output, Socket, node
from nodes.folders import list_models, model_identity


class UpscaleUnavailableError(Exception):
    """spandrel is missing: one message with the install command, no traceback."""

    user_facing = True


def _fingerprint(values: Any) -> tuple[str, int, int]:
    return model_identity("upscale_models", values["model_name"])


def _spandrel() -> None:
    from nodes.diffusion.spandrel_import import SpandrelUnavailable, import_spandrel

    try:
        import_spandrel()
    except SpandrelUnavailable as exc:
        raise UpscaleUnavailableError(str(exc)) from None


@node(
    "UpscaleModelLoader",
    display_name="Load Upscale Model",
    category="loaders",
    inputs=[Combo("model_name", lambda: list_models("upscale_models"))],
    outputs=[Output("UPSCALE_MODEL")],
    fingerprint=_fingerprint,
)
def upscale_model_loader(ctx: ExecutionContext, model_name: str) -> tuple[Any]:
    """Loads an upscale model (ESRGAN, RealESRGAN, SwinIR, HAT, DAT, …) from models/upscale_models; the
    architecture and scale are read from the weights by spandrel. .safetensors files, or .pth/.pt read
    weights-only (no code in the file runs)."""
    _spandrel()
    from nodes.diffusion.errors import ModelError
    from nodes.diffusion.loading import resolve
    from nodes.diffusion.upscale_models import load_upscale_model

    path = resolve("upscale_models", model_name, "model_name")
    try:
        return (load_upscale_model(path, model_name),)
    except ModelError as exc:
        raise InputError("model_name", str(exc)) from None


@node(
    "ImageUpscaleWithModel",
    display_name="Upscale Image (using Model)",
    category="image/upscaling",
    inputs=[Socket("upscale_model", "UPSCALE_MODEL"), Socket("image", "IMAGE")],
    outputs=[Output("IMAGE")],
)
def image_upscale_with_model(ctx: ExecutionContext, upscale_model: Any, image: Any) -> tuple[Any]:
    """Upscales images by the model's factor (4x for most ESRGANs). The whole image is tried first; when
    memory runs out it goes in overlapping tiles, halved until they fit (the upscale_tile_size setting
    fixes a tile size instead)."""
    _spandrel()
    from nodes.diffusion.runtime import device_for, setting
    from nodes.diffusion.upscale_models import upscale_image

    if getattr(image, "ndim", 0) != 4:
        raise InputError("image", "expected an IMAGE ([batch, height, width, channels])")
    tile = int(setting(ctx.settings, "upscale_tile_size", 0) or 0)
    try:
        out = upscale_image(upscale_model, image, device_for(ctx.device), tile, ctx.progress)
    except ValueError as exc:
        raise InputError("image", str(exc)) from None
    return (out,)


NODES = [upscale_model_loader, image_upscale_with_model]
