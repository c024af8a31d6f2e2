"""Cheap latent previews: a per-pixel linear map from the 4 latent channels to RGB.

The factors are the published latent-to-RGB approximations for the SD1/SD2 and SDXL latent spaces
(applied to the UNet-space latent). A 4×3 matrix product on a 1/8-size image costs nothing next to a
UNet step, so every step can have a preview.
"""

from __future__ import annotations

import numpy as np
import torch

SD_FACTORS = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
]
SDXL_FACTORS = [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
]
SDXL_BIAS = [0.1084, -0.0175, -0.0011]


def latent_to_rgb(latent: torch.Tensor, family: str = "sd1") -> np.ndarray:
    """First item of a [B, 4, h, w] latent → uint8 [h, w, 3]."""
    sdxl = family in ("sdxl", "sdxl_refiner")
    factors = torch.tensor(SDXL_FACTORS if sdxl else SD_FACTORS, dtype=torch.float32)
    z = latent[0, :4].detach().float().cpu()
    rgb = torch.einsum("chw,cr->hwr", z, factors)
    if sdxl:
        rgb = rgb + torch.tensor(SDXL_BIAS)
    return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
