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


def preview_source(latent: torch.Tensor) -> np.ndarray:
    """The first item of a [B, C, h, w] latent as a float32 array of its own, for `latent_to_rgb`.

    Taken on the sampling thread (a copy: the sampler may reuse its buffers while the preview waits),
    so the preview thread runs no torch at all: a torch op there starts a second OpenMP team on the
    sampler's cores, and its spinning threads slowed every SD1.5 step by ~15 % (bf16, 2 cores,
    docs/benchmarks.md "Previews and the sampler's threads").
    """
    return latent[0].detach().to("cpu", torch.float32, copy=True).numpy()


def latent_to_rgb(latent: torch.Tensor | np.ndarray, family: str = "sd1") -> np.ndarray:
    """First item of a [B, C, h, w] latent (or a [C, h, w] array from `preview_source`) → uint8 [h, w, 3].

    numpy only (no BLAS: ``einsum`` without ``optimize``), for the reason in `preview_source`.
    """
    fmt = preview_format(family)
    assert fmt.rgb_factors is not None
    factors = np.asarray(fmt.rgb_factors, dtype=np.float32)
    z = latent if isinstance(latent, np.ndarray) else preview_source(latent)
    rgb = np.einsum("chw,cr->hwr", z[: factors.shape[0]], factors)
    if any(fmt.rgb_bias):
        rgb += np.asarray(fmt.rgb_bias, dtype=np.float32)
    return np.rint((np.clip(rgb, -1, 1) + 1) * np.float32(127.5)).astype(np.uint8)
