"""Shared vocabulary of the samplers: the call signature, per-step report, and small helpers.

Every sampler integrates the probability-flow ODE (or an SDE with the same marginals) of the VE
diffusion ``x_σ = x0 + σ·ε`` along a given schedule ``sigmas``, using only a denoiser
``D(x, σ) ≈ E[x0 | x_σ = x]``. In these variables the ODE is ``dx/dσ = (x − D(x, σ))/σ`` (Karras et al.
2022, eq. 3 with s(t)=1, σ(t)=t); "data-prediction" solvers (DPM-Solver++, UniPC) instead integrate
exactly in λ = −log σ, where ``x_σ' = (σ'/σ)·x_σ + (1 − σ'/σ)·D`` is the exact step for constant D.

Coefficients are computed as Python floats (float64) from the schedule, and only the tensor updates
run on the sample's device/dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from ..model_sampling import Denoiser


@dataclass(frozen=True)
class StepInfo:
    """Reported once per finished step: ``x`` is the new sample at ``sigma_next`` and ``denoised`` the
    x0 prediction made at ``sigma`` (what latent previews show). ``i`` counts from 0 to ``n − 1``."""

    i: int
    n: int
    x: Tensor
    sigma: float
    sigma_next: float
    denoised: Tensor


Callback = Callable[[StepInfo], None]


class StepNoise(Protocol):
    """Where stochastic samplers get fresh N(0, 1) noise; :class:`..noise.NoiseSource` is the standard
    one. A protocol so tests can replay recorded noise and a Brownian-tree source could be plugged in."""

    def like(self, x: Tensor) -> Tensor: ...


class SamplerFn(Protocol):
    """Uniform sampler signature. ``noise`` is required by stochastic samplers, ignored by others.
    Some samplers take extra keyword options (``eta``, ``order``, ``variant``, …) with defaults.

    The callback runs synchronously after every step and may raise to cancel the run; samplers never
    catch its exceptions.
    """

    def __call__(
        self,
        denoiser: Denoiser,
        x: Tensor,
        sigmas: Tensor,
        *,
        noise: StepNoise | None = None,
        callback: Callback | None = None,
    ) -> Tensor: ...


def sigma_list(sigmas: Tensor) -> list[float]:
    """Schedule as Python floats, so coefficient arithmetic is float64 and device-independent."""
    return [float(s) for s in sigmas.detach().cpu().reshape(-1)]


def call(denoiser: Denoiser, x: Tensor, sigma: float) -> Tensor:
    """Evaluate the denoiser with σ broadcast to a per-batch float32 tensor on ``x``'s device."""
    return denoiser(x, torch.full((x.shape[0],), sigma, dtype=torch.float32, device=x.device))


def report(
    callback: Callback | None, i: int, n: int, x: Tensor, sigma: float, sigma_next: float, denoised: Tensor
) -> None:
    if callback is not None:
        callback(StepInfo(i=i, n=n, x=x, sigma=sigma, sigma_next=sigma_next, denoised=denoised))


def require_noise(noise: StepNoise | None, name: str) -> StepNoise:
    """Stochastic samplers refuse to invent a seed: silent fallback noise would break reproducibility."""
    if noise is None:
        raise ValueError(f"sampler {name!r} injects noise and needs a NoiseSource (noise=...)")
    return noise


def ancestral_split(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """Split a step σ → σ' into a deterministic move to σ_down and fresh noise of std σ_up.

    σ_up² = η²·σ'²(σ² − σ'²)/σ² is DDPM's posterior variance rewritten in VE units (η=1 is ancestral
    DDPM sampling, η=0 deterministic DDIM); σ_down² + σ_up² = σ'² keeps the marginal noise level right.
    """
    if sigma_next <= 0.0 or eta == 0.0:
        return sigma_next, 0.0
    up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    down = math.sqrt(max(sigma_next**2 - up**2, 0.0))
    return down, up


def to_d(x: Tensor, denoised: Tensor, sigma: float) -> Tensor:
    """ODE slope dx/dσ = (x − D)/σ (Karras et al. 2022, eq. 3)."""
    return (x - denoised) / sigma
