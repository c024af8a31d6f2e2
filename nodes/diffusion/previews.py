"""Cheap latent previews: a per-pixel linear map from the latent channels to RGB.

The factors are the published latent-to-RGB approximations of each family's latent space, declared
with its latent format (``nodes.families``) and applied to the denoiser-space latent. A C×3 matrix
product on a 1/8-size image costs nothing next to a denoiser step, so every step can have a preview.
"""

from __future__ import annotations

import numpy as np
import torch

from nodes import families
from nodes.families import LatentFormat


def preview_format(family: str) -> LatentFormat:
    """The family's latent format if it declares preview factors, else SD1's (the historical default
    for names the registry does not know)."""
    known = family in families.names(only_supported=False)
    latent = families.get(family).latent if known else None
    if latent is None or latent.rgb_factors is None:
        latent = families.get("sd1").latent
    assert latent is not None and latent.rgb_factors is not None
    return latent


def latent_to_rgb(latent: torch.Tensor, family: str = "sd1") -> np.ndarray:
    """First item of a [B, C, h, w] latent → uint8 [h, w, 3]."""
    fmt = preview_format(family)
    assert fmt.rgb_factors is not None
    factors = torch.tensor(fmt.rgb_factors, dtype=torch.float32)
    z = latent[0, : factors.shape[0]].detach().float().cpu()
    rgb = torch.einsum("chw,cr->hwr", z, factors)
    if any(fmt.rgb_bias):
        rgb = rgb + torch.tensor(fmt.rgb_bias)
    return ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
