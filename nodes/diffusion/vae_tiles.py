"""Encoding an image in overlapping tiles (VAE Encode (Tiled)), and ComfyUI's ``.latent`` files.

Tiled encoding mirrors :func:`nodes.diffusion.checkpoint.vae_ops.tiled_decode`: each pixel tile is
encoded on its own (peak memory of one tile), and the latent tiles are blended with weights that ramp
across the overlap and normalised, so there are no seams. The encoder's receptive field is wider than
a tile's border, so tiled latents differ slightly from whole-image ones near tile edges; with one tile
covering the image they are identical.

A ``.latent`` file (ComfyUI's SaveLatent) is a safetensors file holding the VAE's own latent under
``latent_tensor`` and an empty ``latent_format_version_0`` tensor marking the format; files without that
marker are from ComfyUI's first version, which stored latents multiplied by SD's 0.18215.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL

from nodes.diffusion.checkpoint.vae_ops import (
    _factors,
    _model_dtype_device,
    _ramp,
    _tile_starts,
    downscale_factor,
)

LATENT_KEY = "latent_tensor"
FORMAT_KEY = "latent_format_version_0"
LEGACY_SCALE = 0.18215


@torch.inference_mode()
def tiled_encode(
    vae: AutoencoderKL, image: torch.Tensor, *, tile_px: int, overlap_px: int, scaling_factor: float = 1.0
) -> torch.Tensor:
    """IMAGE ``[B, H, W, C]`` → latents ``float32 [B, C, H/8, W/8]`` on the CPU, encoded tile by tile
    (sides cropped to multiples of 8 around the centre, as whole-image encoding does)."""
    scale, shift = _factors(vae, scaling_factor)
    cell = downscale_factor(vae)
    _, height, width, _ = image.shape
    h8, w8 = height // cell * cell, width // cell * cell
    if h8 == 0 or w8 == 0:
        raise ValueError(f"image {height}x{width} is smaller than the VAE's {cell}x{cell} pixel cell")
    top, left = (height - h8) // 2, (width - w8) // 2
    pixels = image[:, top : top + h8, left : left + w8, :3].permute(0, 3, 1, 2).float() * 2 - 1
    dtype, device = _model_dtype_device(vae)
    h, w = h8 // cell, w8 // cell
    tile = max(1, min(tile_px // cell, max(h, w)))
    overlap = max(0, min(overlap_px // cell, tile - 1))
    ys, xs = _tile_starts(h, tile, overlap), _tile_starts(w, tile, overlap)
    out: torch.Tensor | None = None
    weight = torch.zeros(1, 1, h, w, dtype=torch.float32, device=device)
    for y0 in ys:
        for x0 in xs:
            part = pixels[:, :, y0 * cell : (y0 + tile) * cell, x0 * cell : (x0 + tile) * cell]
            z = vae.encode(part.to(device=device, dtype=dtype)).latent_dist.mode().float()
            if out is None:
                out = torch.zeros(z.shape[0], z.shape[1], h, w, dtype=torch.float32, device=device)
            th, tw = z.shape[-2:]
            wy = _ramp(th, max(1, overlap), y0 > 0, y0 + tile < h, device)
            wx = _ramp(tw, max(1, overlap), x0 > 0, x0 + tile < w, device)
            mask = wy[:, None] * wx[None, :]
            out[:, :, y0 : y0 + th, x0 : x0 + tw] += z * mask
            weight[:, :, y0 : y0 + th, x0 : x0 + tw] += mask
    assert out is not None
    return ((out / weight - shift) * scale).cpu()


def save_latent_file(path: Path, samples: torch.Tensor, metadata: Mapping[str, Any] | None = None) -> None:
    """Write a ComfyUI-format ``.latent`` file (text metadata values are stored as JSON)."""
    from safetensors.torch import save_file

    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    tensors = {LATENT_KEY: samples.float().contiguous().cpu(), FORMAT_KEY: torch.tensor([])}
    save_file(tensors, str(path), metadata=meta or None)


def load_latent_file(path: Path) -> torch.Tensor:
    """The VAE latent of a ``.latent`` file, undoing the 0.18215 of first-version files."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors reports a damaged header with its own exception type
        raise ValueError(f"{path.name} is not a readable safetensors file ({exc})") from None
    if LATENT_KEY not in tensors:
        raise ValueError(f"{path.name} has no {LATENT_KEY!r} tensor; it is not a latent saved by Save Latent")
    samples = tensors[LATENT_KEY].float()
    if FORMAT_KEY not in tensors:
        samples = samples / LEGACY_SCALE
    if samples.ndim != 4:
        raise ValueError(f"{path.name} holds a tensor of shape {tuple(samples.shape)}, not a latent batch")
    return samples


__all__ = ["FORMAT_KEY", "LATENT_KEY", "load_latent_file", "save_latent_file", "tiled_encode"]
