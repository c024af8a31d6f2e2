"""Preparing pixels and mask for inpainting checkpoints (VAE Encode for Inpainting)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nodes.diffusion.resize import grow_mask


def prepare_inpaint(pixels: Tensor, mask: Tensor, grow_by: int) -> tuple[Tensor, Tensor]:
    """Crop to multiples of 8, grey the masked pixels (0.5) so the encoder sees no trace of them, and
    return the (grown, rounded) mask on the image grid as the latent's noise mask."""
    b, h, w, _ = pixels.shape
    m = mask.reshape(-1, mask.shape[-2], mask.shape[-1]).float()
    if m.shape[-2:] != (h, w):
        m = F.interpolate(m[:, None], size=(h, w), mode="bilinear")[:, 0]
    h8, w8 = h // 8 * 8, w // 8 * 8
    y0, x0 = (h - h8) // 2, (w - w8) // 2
    pixels = pixels[:, y0 : y0 + h8, x0 : x0 + w8, :3].clone()
    m = m[:, y0 : y0 + h8, x0 : x0 + w8]
    grown = grow_mask(m, grow_by).round().clamp(0, 1)
    keep = (1.0 - m.round())[..., None]
    pixels = (pixels - 0.5) * keep + 0.5
    return pixels, grown[:, None].expand(max(b, grown.shape[0]), 1, h8, w8).contiguous()


__all__ = ["prepare_inpaint", "torch"]
