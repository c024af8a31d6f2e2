"""Upscale models (ESRGAN, RealESRGAN, SwinIR, HAT, DAT, …) read through spandrel, and upscaling in tiles.

Reading: a ``.safetensors`` file is read with safetensors; a ``.pth``/``.pt``/``.ckpt`` only with
``torch.load(weights_only=True)``, which rebuilds tensors and plain containers and refuses every other
class, so no code in the file runs (spandrel's own file loader unpickles with an allow-list instead; it
is not used). spandrel's ``canonicalize_state_dict`` then unwraps the usual containers (RealESRGAN's
``params_ema``, ``state_dict``, ``module.`` prefixes) and its registry detects the architecture and
its hyperparameters from the keys and shapes.

Two kinds of wrong file get a message of their own instead of spandrel's: a file that is some other
model sdgraph knows (a checkpoint, VAE, LoRA, text encoder or ControlNet put into ``upscale_models``,
told from a safetensors header before any tensor is read), and a model spandrel knows that is not an
image-to-image model (LaMa inpainting needs a mask).

Upscaling: the whole image in one call first; when the device runs out of memory, in tiles of 512
input pixels, halved on each further out-of-memory down to the model's minimum. Tiles overlap by
`OVERLAP` input pixels and are blended with weights that ramp linearly across the overlap, so there
are no seams; the networks see less context at a tile's border, so tiled results differ slightly from
whole-image ones near tile edges (tests/nodes/test_upscale_models.py states the tolerance). A fixed
tile size can be set (the ``upscale_tile_size`` setting); 0 means this automatic choice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nodes.diffusion.errors import CorruptCheckpointError, ModelError, OutOfMemoryError
from nodes.diffusion.spandrel_import import import_spandrel

SAFE_SUFFIXES = (".safetensors", ".sft")
WEIGHTS_ONLY_SUFFIXES = (".pth", ".pt", ".ckpt")
FIRST_TILE = 512  # input pixels, as ComfyUI's ImageUpscaleWithModel starts
OVERLAP = 32  # input pixels shared by neighbouring tiles
MIN_TILE = 32

# Key markers of model files that belong in another folder, checked when spandrel knows none of its
# architectures in a file (RestoreFormer has VAE-like keys, so these may not pre-empt spandrel).
_OTHER_KINDS: tuple[tuple[Callable[[str], bool], str, str], ...] = (
    (lambda k: k.startswith(("control_model.", "controlnet_")), "a ControlNet", "controlnet"),
    (lambda k: k.startswith(("lora_unet_", "lora_te")) or ".lora_" in k or "lora_A" in k, "a LoRA", "loras"),
    (lambda k: k.startswith("decoder.conv_in."), "a VAE", "vae"),
    (lambda k: k.startswith(("text_model.", "encoder.block.", "shared.")), "a text encoder", "text_encoders"),
)


class NotAnUpscaleModelError(ModelError):
    """The file is a model, but not one an image-to-image upscale node can run."""


@dataclass
class UpscaleModel:
    """An UPSCALE_MODEL value: spandrel's descriptor (the network, its scale and size rules) and its file."""

    descriptor: Any  # spandrel.ImageModelDescriptor
    name: str

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    @property
    def architecture(self) -> str:
        return str(self.descriptor.architecture.name)

    @property
    def min_size(self) -> int:
        return max(1, int(self.descriptor.size_requirements.minimum))

    def __repr__(self) -> str:
        return f"UpscaleModel({self.name!r}, {self.architecture} {self.scale}x)"


def read_state_dict(path: Path) -> dict[str, Any]:
    """The file's tensors, from safetensors or a weights-only ``torch.load``; never unpickles objects."""
    suffix = path.suffix.lower()
    if suffix in SAFE_SUFFIXES:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CorruptCheckpointError(path, f"safetensors could not read it ({exc})") from None
    if suffix in WEIGHTS_ONLY_SUFFIXES:
        from nodes.diffusion.checkpoint.files import load_weights_only

        obj = load_weights_only(path)
        if not isinstance(obj, dict):
            raise ModelError(f"{path.name} holds a {type(obj).__name__}, not a dict of weights.")
        return obj
    raise ModelError(f"{path.name} is not a model file sdgraph reads (.safetensors, or .pth/.pt weights).")


def _misfiled(path: Path) -> str | None:
    """A checkpoint or diffusion model (gigabytes) in the wrong folder, told from the safetensors header
    alone, so it is refused before its tensors are read."""
    if path.suffix.lower() not in SAFE_SUFFIXES:
        return None
    from nodes.diffusion.checkpoint.files import read_safetensors_header

    return _misfiled_shapes(read_safetensors_header(path).shapes(), families_only=True)


def _misfiled_shapes(shapes: dict[str, tuple[int, ...]], *, families_only: bool = False) -> str | None:
    from nodes.families import recognise_single_file

    family = recognise_single_file(shapes)
    if family is not None:
        return f"a {family.display_name} model (checkpoint or diffusion model), which goes in models/checkpoints"
    if families_only:
        return None
    for test, what, folder in _OTHER_KINDS:
        if any(test(k) for k in shapes):
            return f"{what}, which goes in models/{folder}"
    return None


def load_upscale_model(path: Path, name: str) -> UpscaleModel:
    """Read, identify and build an upscale model on the CPU; every failure is a `ModelError` naming the file."""
    spandrel = import_spandrel()
    other = _misfiled(path)
    if other is not None:
        raise NotAnUpscaleModelError(f"{name} is not an upscale model: it looks like {other}.")
    state = spandrel.canonicalize_state_dict(read_state_dict(path))
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ModelError(f"{name} holds no weights.")
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        other = _misfiled_shapes({k: tuple(v.shape) for k, v in state.items()})
        if other is not None:
            raise NotAnUpscaleModelError(f"{name} is not an upscale model: it looks like {other}.") from None
        raise ModelError(
            f"{name} is not an upscale model spandrel {spandrel.__version__} recognises (ESRGAN, RealESRGAN, "
            "SwinIR, HAT, DAT, OmniSR, SPAN, …). Check that the file is complete and is an image upscaler."
        ) from None
    except Exception as exc:  # detected as an architecture, but the weights do not build it
        raise ModelError(f"{name} could not be built as an upscale model: {type(exc).__name__}: {exc}") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        arch = descriptor.architecture.name
        raise NotAnUpscaleModelError(
            f"{name} is a {arch} model ({descriptor.purpose}), which needs a mask as well as an image; "
            "only image-to-image models (upscalers, restorers) run here."
        )
    descriptor.model.eval()
    return UpscaleModel(descriptor, name)


def is_out_of_memory(exc: BaseException) -> bool:
    """A device (or host) allocation failure: the one error that tiling can get past."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "not enough memory" in text or "can't allocate memory" in text
    )


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering [0, length): stride tile - overlap, the last one flush with the end."""
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _ramp(length: int, ramp: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """Blend weights along one axis: 1 inside, rising linearly over `ramp` pixels at inner edges."""
    w = torch.ones(length)
    if ramp > 0:
        steps = torch.arange(1, ramp + 1, dtype=torch.float32) / (ramp + 1)
        n = min(ramp, length)
        if not at_start:
            w[:n] = torch.minimum(w[:n], steps[:n])
        if not at_end:
            w[-n:] = torch.minimum(w[-n:], steps[:n].flip(0))
    return w


@torch.inference_mode()
def upscale_tiled(
    model: UpscaleModel,
    pixels: torch.Tensor,
    tile: int,
    overlap: int = OVERLAP,
    on_tile: Callable[[], None] | None = None,
) -> torch.Tensor:
    """One image ``[1, C, H, W]`` (on the model's device) upscaled in overlapping tiles of `tile` pixels."""
    _, channels, height, width = pixels.shape
    s = model.scale
    tile = max(tile, model.min_size)
    overlap = max(0, min(overlap, tile // 2))
    ys, xs = _starts(height, tile, overlap), _starts(width, tile, overlap)
    out = torch.zeros(1, channels, height * s, width * s, device=pixels.device, dtype=torch.float32)
    weight = torch.zeros(1, 1, height * s, width * s, device=pixels.device, dtype=torch.float32)
    for y0 in ys:
        for x0 in xs:
            part = pixels[:, :, y0 : y0 + tile, x0 : x0 + tile]
            up = model.descriptor(part).float()
            th, tw = up.shape[-2:]
            wy = _ramp(th, overlap * s, y0 == 0, y0 + tile >= height).to(pixels.device)
            wx = _ramp(tw, overlap * s, x0 == 0, x0 + tile >= width).to(pixels.device)
            w = (wy[:, None] * wx[None, :])[None, None]
            out[:, :, y0 * s : y0 * s + th, x0 * s : x0 * s + tw] += up * w
            weight[:, :, y0 * s : y0 * s + th, x0 * s : x0 * s + tw] += w
            if on_tile is not None:
                on_tile()
    return out / weight


def upscale_image(
    model: UpscaleModel,
    image: torch.Tensor,
    device: torch.device,
    tile_size: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """IMAGE ``[B, H, W, C]`` → IMAGE ``[B, H·s, W·s, C]`` (alpha dropped), float32 on the CPU.

    ``tile_size`` 0: whole images, falling back to tiles on out-of-memory; > 0: always tiles of that size.
    """
    descriptor = model.descriptor
    if image.shape[-1] < descriptor.input_channels:
        raise ValueError(f"the image has {image.shape[-1]} channels; {model.name} needs {descriptor.input_channels}")
    pixels = image[..., : descriptor.input_channels].movedim(-1, 1).float()
    dtype = next(descriptor.model.parameters()).dtype
    descriptor.model.to(device)
    results = []
    try:
        for i in range(pixels.shape[0]):
            one = pixels[i : i + 1].to(device, dtype)
            results.append(_upscale_one(model, one, tile_size, i, pixels.shape[0], on_progress).cpu())
    finally:
        descriptor.model.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return torch.cat(results).movedim(1, -1).float()


def _upscale_one(
    model: UpscaleModel,
    pixels: torch.Tensor,
    tile_size: int,
    index: int,
    count: int,
    on_progress: Callable[[int, int], None] | None,
) -> torch.Tensor:
    def report(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(index * total + done, count * total)

    if tile_size > 0:
        return _tiles_with_progress(model, pixels, tile_size, report)
    try:
        with torch.inference_mode():
            out: torch.Tensor = model.descriptor(pixels).float()
        report(1, 1)
        return out
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
    tile = FIRST_TILE
    while True:
        _empty_caches(pixels.device)
        try:
            return _tiles_with_progress(model, pixels, tile, report)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if tile // 2 < max(MIN_TILE, model.min_size):
                raise OutOfMemoryError(
                    str(pixels.device),
                    f"upscaling with {model.name} in tiles of {tile} pixels",
                    "Try a smaller image, or run on the CPU.",
                ) from None
            tile //= 2


def _tiles_with_progress(
    model: UpscaleModel, pixels: torch.Tensor, tile: int, report: Callable[[int, int], None]
) -> torch.Tensor:
    _, _, height, width = pixels.shape
    tile = max(tile, model.min_size)
    overlap = max(0, min(OVERLAP, tile // 2))
    total = len(_starts(height, tile, overlap)) * len(_starts(width, tile, overlap))
    done = [0]

    def tick() -> None:
        done[0] += 1
        report(done[0], total)

    return upscale_tiled(model, pixels, tile, overlap, on_tile=tick)


def _empty_caches(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
