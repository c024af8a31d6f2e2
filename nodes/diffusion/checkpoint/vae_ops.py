"""VAE encode/decode between the graph's IMAGE and LATENT values.

Conventions (shared with the sampler and VAE nodes):

* IMAGE is what ComfyUI passes around: ``float32 [B, H, W, C]`` in 0..1, channels last, on the CPU.
* LATENT here is the *scaled* latent the UNet works on (diffusers' convention): the VAE's raw
  latent times ``scaling_factor`` (minus ``shift_factor`` first, for VAEs that have one). Keeping the
  scaling inside these two functions means no other node needs to know the factor.

Half-precision VAEs can overflow to NaN/inf (black or noisy images, mostly SDXL's VAE in fp16). When
that happens we redo the call once in fp32 on a temporary copy, instead of failing or mutating a
model other nodes may be sharing. Encoding uses the distribution's mean, so the same image always
gives the same latent; pass a generator to sample instead.

Large images are decoded in overlapping tiles (``tiled_decode``): automatically above
``TILE_ABOVE_PIXELS`` output pixels per call, and as a retry when a whole decode runs out of memory.
Tiles are blended with weights that ramp across the overlap, so there are no seams; tiling costs
time (2.3x at 512 px on a CPU, measured) and only saves memory, so small images never use it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import torch
from diffusers import AutoencoderKL

from nodes.diffusion.model_manager import is_out_of_memory

log = logging.getLogger(__name__)

# Output pixels (batch x height x width) above which decode() tiles by itself: 1536x1536, where a
# whole-image SD VAE decode needs several GB of activations in fp32.
TILE_ABOVE_PIXELS = 1536 * 1536
TILE_LATENT = 64  # latent cells per tile side (512 px for SD VAEs, the size they were trained at)
TILE_OVERLAP = 16  # latent cells shared by neighbouring tiles


def _factors(vae: AutoencoderKL, scaling_factor: float | None) -> tuple[float, float]:
    """(scale, shift) between the VAE's raw latent and the latent handed in/out. With an explicit
    ``scaling_factor`` (the nodes pass 1.0: LATENT holds the VAE's own latent, and the model applies its
    scale and shift) no shift is applied either; the VAE's ``shift_factor`` goes with its own scale only."""
    if scaling_factor is not None:
        return float(scaling_factor), 0.0
    shift = getattr(vae.config, "shift_factor", None)
    return float(vae.config.scaling_factor), float(shift) if shift is not None else 0.0


def downscale_factor(vae: AutoencoderKL) -> int:
    """Pixels per latent cell along each side: 8 for every released SD VAE (4 levels, 3 downsamplers)."""
    return int(2 ** (len(vae.config.block_out_channels) - 1))


def _model_dtype_device(vae: AutoencoderKL) -> tuple[torch.dtype, torch.device]:
    param = next(vae.parameters())
    return param.dtype, param.device


def _with_fp32_fallback(vae: AutoencoderKL, run: Callable[[AutoencoderKL], torch.Tensor], what: str) -> torch.Tensor:
    """Run once in the VAE's dtype; if the result has NaN/inf and that dtype is not fp32, retry in fp32."""
    result = run(vae)
    dtype, _ = _model_dtype_device(vae)
    if dtype != torch.float32 and not torch.isfinite(result).all():
        log.warning("VAE %s produced NaN/inf in %s; retrying in float32", what, dtype)
        upcast = copy.deepcopy(vae).to(torch.float32)
        result = run(upcast)
        del upcast
    return result


@torch.inference_mode()
def decode(
    vae: AutoencoderKL,
    latents: torch.Tensor,
    *,
    scaling_factor: float | None = None,
    tile: bool | None = None,
    tile_cells: int = TILE_LATENT,
    overlap_cells: int = TILE_OVERLAP,
) -> torch.Tensor:
    """Scaled latents ``[B, C, h, w]`` -> IMAGE ``float32 [B, 8h, 8w, 3]`` in 0..1 on the CPU (8 = SD VAEs).

    ``tile``: True/False forces tiled/whole decoding; None tiles above ``TILE_ABOVE_PIXELS`` and
    retries tiled when the whole decode runs out of memory. ``tile_cells``/``overlap_cells``: the tile
    side and overlap in latent cells (VAE Decode (Tiled) chooses them).
    """
    scale, shift = _factors(vae, scaling_factor)
    cell = downscale_factor(vae)
    b, _, h, w = latents.shape
    use_tiles = tile if tile is not None else b * h * w * cell * cell > TILE_ABOVE_PIXELS

    def run(model: AutoencoderKL) -> torch.Tensor:
        dtype, device = _model_dtype_device(model)
        z = (latents.to(device=device, dtype=torch.float32) / scale + shift).to(dtype)
        if use_tiles:
            return tiled_decode(model, z, tile=tile_cells, overlap=overlap_cells)
        try:
            out: torch.Tensor = model.decode(z).sample
        except Exception as exc:
            if tile is False or not is_out_of_memory(exc):
                raise
            log.warning("VAE decode of %dx%d ran out of memory; decoding in tiles", h * cell, w * cell)
            _free_device_cache(device)
            return tiled_decode(model, z, tile=tile_cells, overlap=overlap_cells)
        return out

    pixels = _with_fp32_fallback(vae, run, "decode")
    image = (pixels.float() / 2 + 0.5).clamp(0, 1)
    return image.permute(0, 2, 3, 1).contiguous().cpu()


def tiled_decode(
    vae: AutoencoderKL, z: torch.Tensor, *, tile: int = TILE_LATENT, overlap: int = TILE_OVERLAP
) -> torch.Tensor:
    """Decode raw latents ``z`` (already unscaled, in the VAE's dtype) tile by tile; float32 pixels in -1..1.

    Peak memory is that of one ``tile``-cell decode whatever the image size. Each tile's pixels are
    weighted by a ramp that rises over the overlap from the tile's inner edges, and the weighted sum
    is normalised, so neighbouring tiles cross-fade.
    """
    cell = downscale_factor(vae)
    b, _, h, w = z.shape
    tile = max(1, min(tile, max(h, w)))
    overlap = max(0, min(overlap, tile - 1))
    ys, xs = _tile_starts(h, tile, overlap), _tile_starts(w, tile, overlap)
    out = torch.zeros(b, 3, h * cell, w * cell, dtype=torch.float32, device=z.device)
    weight = torch.zeros(1, 1, h * cell, w * cell, dtype=torch.float32, device=z.device)
    ramp = max(1, overlap * cell)
    for y0 in ys:
        for x0 in xs:
            part = z[:, :, y0 : y0 + tile, x0 : x0 + tile]
            pixels = vae.decode(part).sample.float()
            th, tw = pixels.shape[-2:]
            wy = _ramp(th, ramp, y0 > 0, y0 + tile < h, z.device)
            wx = _ramp(tw, ramp, x0 > 0, x0 + tile < w, z.device)
            mask = wy[:, None] * wx[None, :]
            py, px = y0 * cell, x0 * cell
            out[:, :, py : py + th, px : px + tw] += pixels * mask
            weight[:, :, py : py + th, px : px + tw] += mask
    return out / weight


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``length`` with tiles of ``tile`` that overlap by at least ``overlap``."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _ramp(length: int, ramp: int, fade_in: bool, fade_out: bool, device: torch.device) -> torch.Tensor:
    idx = torch.arange(length, dtype=torch.float32, device=device)
    weight = torch.ones(length, dtype=torch.float32, device=device)
    if fade_in:
        weight = torch.minimum(weight, (idx + 1) / (ramp + 1))
    if fade_out:
        weight = torch.minimum(weight, (length - idx) / (ramp + 1))
    return weight


def _free_device_cache(device: torch.device) -> None:
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


@torch.inference_mode()
def encode(
    vae: AutoencoderKL,
    image: torch.Tensor,
    *,
    scaling_factor: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """IMAGE ``[B, H, W, C]`` 0..1 -> scaled latents ``float32 [B, C, H/8, W/8]`` on the CPU.

    H and W are centre-cropped to multiples of the VAE's cell size (8 for SD), as ComfyUI does.
    Only the first 3 channels are used (an alpha channel is dropped).
    """
    if image.ndim != 4:
        raise ValueError(f"expected an IMAGE of shape [B, H, W, C], got {tuple(image.shape)}")
    scale, shift = _factors(vae, scaling_factor)
    _, height, width, _ = image.shape
    cell = downscale_factor(vae)
    h8, w8 = height // cell * cell, width // cell * cell
    if h8 == 0 or w8 == 0:
        raise ValueError(f"image {height}x{width} is smaller than the VAE's {cell}x{cell} pixel cell")
    top, left = (height - h8) // 2, (width - w8) // 2
    pixels = image[:, top : top + h8, left : left + w8, :3].permute(0, 3, 1, 2).float() * 2 - 1

    def run(model: AutoencoderKL) -> torch.Tensor:
        dtype, device = _model_dtype_device(model)
        dist = model.encode(pixels.to(device=device, dtype=dtype)).latent_dist
        z = dist.sample(generator) if generator is not None else dist.mode()
        return z.float()

    raw = _with_fp32_fallback(vae, run, "encode")
    return ((raw - shift) * scale).cpu()
