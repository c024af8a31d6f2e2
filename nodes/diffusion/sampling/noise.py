"""Seeded noise that is identical on every device.

All randomness is drawn from a dedicated CPU ``torch.Generator`` in float32 and only then moved/cast to
the sampling device and dtype. GPU generators (and global RNG state) give different streams per device
and vendor, so drawing there would make a seed mean different images on different machines.

Seeds are accepted in ComfyUI's range 0 … 2**64−1 (negatives wrap modulo 2**64, as torch does). Note
that torch's CPU generator (mt19937) only uses the low 32 bits of the seed, so seeds that differ by a
multiple of 2**32 give the same noise; this is also true in ComfyUI and is kept for parity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

SEED_MODULUS = 2**64


def normalize_seed(seed: int) -> int:
    """Map any Python int onto the unsigned 64-bit range torch's ``manual_seed`` accepts."""
    return int(seed) % SEED_MODULUS


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(normalize_seed(seed))


def initial_noise(
    seed: int,
    shape: Sequence[int],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    *,
    batch_index: Sequence[int] | None = None,
) -> Tensor:
    """The starting noise of a run; equals ComfyUI's ``prepare_noise`` for the same seed.

    The whole batch comes from one ``randn`` call on a fresh generator, so image k of a batch is the k-th
    slice of one stream (not seed+k). With ``batch_index`` (latents picked out of a batch) one
    [1, ...] draw is made per index up to max(batch_index) and the referenced ones are kept, so an image
    gets the same noise it had inside its original batch.
    """
    g = _generator(seed)
    if batch_index is None:
        noise = torch.randn(tuple(shape), generator=g, dtype=torch.float32, device="cpu")
    else:
        if len(batch_index) != shape[0]:
            raise ValueError("batch_index must have one entry per batch item")
        single = (1, *tuple(shape)[1:])
        draws = [torch.randn(single, generator=g, dtype=torch.float32) for _ in range(max(batch_index) + 1)]
        noise = torch.cat([draws[i] for i in batch_index], dim=0)
    return noise.to(device=device, dtype=dtype)


class NoiseSource:
    """Per-step Gaussian noise for ancestral/SDE samplers, reproducible across devices.

    Seeded with ``seed + 1`` (mod 2**64) so the step noise is a different stream from
    :func:`initial_noise` for the same seed (the same convention ComfyUI uses for CPU sampling); with the
    same seed the first step would otherwise re-inject the initial noise itself.
    """

    def __init__(self, seed: int, *, offset: int = 1) -> None:
        self.seed = normalize_seed(seed + offset)
        self._gen = _generator(self.seed)

    def draw(self, shape: Sequence[int], like: Tensor | None = None) -> Tensor:
        """Standard normal noise of ``shape``, drawn on CPU in float32, then placed like ``like``."""
        z = torch.randn(tuple(shape), generator=self._gen, dtype=torch.float32, device="cpu")
        if like is not None:
            z = z.to(device=like.device, dtype=like.dtype)
        return z

    def like(self, x: Tensor) -> Tensor:
        """Noise with the shape, device and dtype of ``x``."""
        return self.draw(x.shape, like=x)
