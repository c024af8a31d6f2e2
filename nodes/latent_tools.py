"""Latent toolbox: upscale by a factor, repeat and pick from batches, tiled VAE encode/decode, and
ComfyUI's ``.latent`` files (Save Latent into the output folder, Load Latent from the input folder).

A LATENT is the dict :mod:`nodes.latent` describes; ``batch_index`` (ComfyUI's key) records which
image of a seed's batch each latent is, so picking one out of a batch reproduces its noise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graph_engine import Combo, ExecutionContext, Float, InputError, Int, NodeOutput, Output, Socket, String, node
from nodes.folders import input_dir
from nodes.latent import UPSCALE_METHODS

LATENT_SUFFIX = ".latent"


def list_input_latents() -> list[str]:
    folder = input_dir()
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob(f"*{LATENT_SUFFIX}") if p.is_file())


def resolve_input_latent(name: str) -> Path:
    """A ``.latent`` file of the input folder by its name; names never leave that folder."""
    folder = input_dir().resolve()
    if not name or Path(name).is_absolute() or ".." in Path(name).parts or "\x00" in name:
        raise ValueError(f"latent name {name!r} is not a plain name inside the input folder")
    path = (folder / name).resolve()
    if not path.is_relative_to(folder) or path.suffix != LATENT_SUFFIX:
        raise ValueError(f"{name!r} is not a {LATENT_SUFFIX} file inside the input folder")
    if not path.is_file():
        raise FileNotFoundError(f"no latent {name!r} in {folder}")
    return path


def _latent_hash(values: Mapping[str, Any]) -> str:
    """A file replaced on disk is read again."""
    return hashlib.sha256(resolve_input_latent(values["latent"]).read_bytes()).hexdigest()


def _batch(samples: Mapping[str, Any]) -> int:
    return int(samples["samples"].shape[0])


@node(
    "LatentUpscaleBy",
    display_name="Upscale Latent By",
    category="latent",
    inputs=[
        Socket("samples", "LATENT"),
        Combo("upscale_method", UPSCALE_METHODS),
        Float("scale_by", 1.5, min=0.01, max=8.0, step=0.01),
    ],
    outputs=[Output("LATENT")],
)
def latent_upscale_by(ctx: ExecutionContext, samples: Any, upscale_method: str, scale_by: float) -> tuple[Any]:
    """Resizes latents by a factor (each side rounded), e.g. 1.5× for a hires-fix second pass."""
    from nodes.diffusion.image_ops import scaled_size
    from nodes.diffusion.resize import resize_latent_cells

    h, w = samples["samples"].shape[-2:]
    width, height = scaled_size(w, h, scale_by)
    out = dict(samples)
    out["samples"] = resize_latent_cells(samples["samples"], width, height, upscale_method)
    return (out,)


@node(
    "RepeatLatentBatch",
    display_name="Repeat Latent Batch",
    category="latent/batch",
    inputs=[Socket("samples", "LATENT"), Int("amount", 1, min=1, max=64)],
    outputs=[Output("LATENT")],
)
def repeat_latent_batch(ctx: ExecutionContext, samples: Any, amount: int) -> tuple[Any]:
    """The batch `amount` times over (masks too), each copy with its own batch indices so it gets
    its own noise: several variations of one img2img input in one run."""
    s = samples["samples"]
    out = dict(samples)
    out["samples"] = s.repeat(amount, 1, 1, 1)
    mask = samples.get("noise_mask")
    if mask is not None and mask.shape[0] > 1:
        if mask.shape[0] < s.shape[0]:
            reps = -(-s.shape[0] // mask.shape[0])
            mask = mask.repeat(reps, *([1] * (mask.ndim - 1)))[: s.shape[0]]
        out["noise_mask"] = mask.repeat(amount, *([1] * (mask.ndim - 1)))
    if "batch_index" in samples:
        index = list(samples["batch_index"])
        offset = max(index) - min(index) + 1
        out["batch_index"] = index + [i + k * offset for k in range(1, amount) for i in index]
    return (out,)


@node(
    "LatentFromBatch",
    display_name="Latent From Batch",
    category="latent/batch",
    inputs=[
        Socket("samples", "LATENT"),
        Int("batch_index", 0, min=0, max=63),
        Int("length", 1, min=1, max=64),
    ],
    outputs=[Output("LATENT")],
)
def latent_from_batch(ctx: ExecutionContext, samples: Any, batch_index: int, length: int) -> tuple[Any]:
    """`length` latents starting at `batch_index` (clamped to the batch), remembering their place so a
    re-sample with the same seed gives them the noise they had in the batch."""
    s = samples["samples"]
    b = s.shape[0]
    start = min(b - 1, batch_index)
    length = min(b - start, length)
    out = dict(samples)
    out["samples"] = s[start : start + length].clone()
    mask = samples.get("noise_mask")
    if mask is not None:
        if mask.shape[0] == 1:
            out["noise_mask"] = mask.clone()
        else:
            if mask.shape[0] < b:
                reps = -(-b // mask.shape[0])
                mask = mask.repeat(reps, *([1] * (mask.ndim - 1)))[:b]
            out["noise_mask"] = mask[start : start + length].clone()
    if "batch_index" in samples:
        out["batch_index"] = list(samples["batch_index"])[start : start + length]
    else:
        out["batch_index"] = list(range(start, start + length))
    return (out,)


@node(
    "VAEDecodeTiled",
    display_name="VAE Decode (Tiled)",
    category="_for_testing",
    inputs=[
        Socket("samples", "LATENT"),
        Socket("vae", "VAE"),
        Int("tile_size", 512, min=64, max=4096, step=32),
        Int("overlap", 64, min=0, max=4096, step=32),
        Int("temporal_size", 64, min=8, max=4096, step=4, tooltip="video VAEs only; ignored for images"),
        Int("temporal_overlap", 8, min=4, max=4096, step=4, tooltip="video VAEs only; ignored for images"),
    ],
    outputs=[Output("IMAGE")],
)
def vae_decode_tiled(
    ctx: ExecutionContext,
    samples: Any,
    vae: Any,
    tile_size: int,
    overlap: int,
    temporal_size: int = 64,
    temporal_overlap: int = 8,
) -> tuple[Any]:
    """Decodes in `tile_size`-pixel tiles that cross-fade over `overlap` pixels: big images on little
    memory (an overlap above a quarter of the tile is lowered to a quarter, as ComfyUI does)."""
    import torch

    from nodes.diffusion.checkpoint.vae_ops import decode, downscale_factor

    if tile_size < overlap * 4:
        overlap = tile_size // 4
    cell = downscale_factor(vae.vae)
    with torch.inference_mode():
        image = decode(
            vae.vae,
            samples["samples"],
            scaling_factor=1.0,
            tile=True,
            tile_cells=max(1, tile_size // cell),
            overlap_cells=overlap // cell,
        )
    return (image,)


@node(
    "VAEEncodeTiled",
    display_name="VAE Encode (Tiled)",
    category="_for_testing",
    inputs=[
        Socket("pixels", "IMAGE"),
        Socket("vae", "VAE"),
        Int("tile_size", 512, min=64, max=4096, step=64),
        Int("overlap", 64, min=0, max=4096, step=32),
        Int("temporal_size", 64, min=8, max=4096, step=4, tooltip="video VAEs only; ignored for images"),
        Int("temporal_overlap", 8, min=4, max=4096, step=4, tooltip="video VAEs only; ignored for images"),
    ],
    outputs=[Output("LATENT")],
)
def vae_encode_tiled(
    ctx: ExecutionContext,
    pixels: Any,
    vae: Any,
    tile_size: int,
    overlap: int,
    temporal_size: int = 64,
    temporal_overlap: int = 8,
) -> tuple[Any]:
    """Encodes in `tile_size`-pixel tiles blended over `overlap` pixels, for images too big to encode
    at once (latents near tile seams differ slightly from a whole-image encode)."""
    from nodes.diffusion.vae_tiles import tiled_encode

    if tile_size < overlap * 4:
        overlap = tile_size // 4
    try:
        return ({"samples": tiled_encode(vae.vae, pixels, tile_px=tile_size, overlap_px=overlap)},)
    except ValueError as exc:
        raise InputError("pixels", str(exc)) from None


@node(
    "SaveLatent",
    display_name="SaveLatent",
    category="_for_testing",
    inputs=[Socket("samples", "LATENT"), String("filename_prefix", "latents/sdgraph")],
    output_node=True,
)
def save_latent(ctx: ExecutionContext, samples: Any, filename_prefix: str) -> NodeOutput:
    """Writes the latent as a ComfyUI `.latent` file in the output folder (with the workflow as
    metadata), so it can be reloaded here or in ComfyUI and compared."""
    from nodes.diffusion.images import safe_prefix
    from nodes.diffusion.vae_tiles import save_latent_file

    try:
        folder, stem = safe_prefix(ctx.output_dir, filename_prefix)
    except ValueError as exc:
        raise InputError("filename_prefix", str(exc)) from None
    folder.mkdir(parents=True, exist_ok=True)
    counter = 1 + max(
        (int(p.name[len(stem) + 1 : len(stem) + 6]) for p in folder.glob(f"{stem}_?????_{LATENT_SUFFIX}")),
        default=0,
    )
    path = folder / f"{stem}_{counter:05}_{LATENT_SUFFIX}"
    save_latent_file(path, samples["samples"], {"workflow": ctx.workflow} if ctx.workflow else None)
    entry = {
        "path": str(path),
        "filename": path.name,
        "subfolder": folder.relative_to(Path(ctx.output_dir).resolve()).as_posix(),
        "type": "output",
    }
    return NodeOutput((), {"latents": [entry]})


@node(
    "LoadLatent",
    display_name="LoadLatent",
    category="_for_testing",
    inputs=[Combo("latent", list_input_latents)],
    outputs=[Output("LATENT")],
    fingerprint=_latent_hash,
)
def load_latent(ctx: ExecutionContext, latent: str) -> tuple[Any]:
    """A `.latent` file from the input folder (written by Save Latent here or in ComfyUI)."""
    from nodes.diffusion.vae_tiles import load_latent_file

    try:
        return ({"samples": load_latent_file(resolve_input_latent(latent))},)
    except (ValueError, OSError) as exc:
        raise InputError("latent", str(exc)) from None


NODES = [
    latent_upscale_by,
    repeat_latent_batch,
    latent_from_batch,
    vae_decode_tiled,
    vae_encode_tiled,
    save_latent,
    load_latent,
]
