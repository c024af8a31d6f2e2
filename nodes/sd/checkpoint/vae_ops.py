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
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import torch
from diffusers import AutoencoderKL

log = logging.getLogger(__name__)


def _factors(vae: AutoencoderKL, scaling_factor: float | None) -> tuple[float, float]:
    scale = float(scaling_factor if scaling_factor is not None else vae.config.scaling_factor)
    shift = getattr(vae.config, "shift_factor", None)
    return scale, float(shift) if shift is not None else 0.0


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
def decode(vae: AutoencoderKL, latents: torch.Tensor, *, scaling_factor: float | None = None) -> torch.Tensor:
    """Scaled latents ``[B, C, h, w]`` -> IMAGE ``float32 [B, 8h, 8w, 3]`` in 0..1 on the CPU (8 = SD VAEs)."""
    scale, shift = _factors(vae, scaling_factor)

    def run(model: AutoencoderKL) -> torch.Tensor:
        dtype, device = _model_dtype_device(model)
        z = latents.to(device=device, dtype=torch.float32) / scale + shift
        out: torch.Tensor = model.decode(z.to(dtype)).sample
        return out

    pixels = _with_fp32_fallback(vae, run, "decode")
    image = (pixels.float() / 2 + 0.5).clamp(0, 1)
    return image.permute(0, 2, 3, 1).contiguous().cpu()


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
