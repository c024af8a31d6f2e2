"""Shared vocabulary of the samplers: the call signature, per-step report, and small helpers.

Every sampler integrates the probability-flow ODE (or an SDE with the same marginals) of the VE
diffusion ``x_σ = x0 + σ·ε`` (or of rectified flow, ``x_σ = (1 − σ)·x0 + σ·ε``: same ODE in these
variables, see :mod:`..noise_process`) along a given schedule ``sigmas``, using only a denoiser
``D(x, σ) ≈ E[x0 | x_σ = x]``. In these variables the ODE is ``dx/dσ = (x − D(x, σ))/σ`` (Karras et al.
2022, eq. 3 with s(t)=1, σ(t)=t); "data-prediction" solvers (DPM-Solver++, UniPC) instead integrate
exactly in λ = −log σ, where ``x_σ' = (σ'/σ)·x_σ + (1 − σ'/σ)·D`` is the exact step for constant D.

Coefficients are computed as Python floats (float64) from the schedule, and only the tensor updates
run on the sample's device/dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from ..model_sampling import Denoiser
from ..noise_process import VE, NoiseProcess, ve_ancestral_split


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
    ``process`` says what fresh noise must look like (VE by default, :data:`..noise_process.FLOW` for
    flow models); deterministic samplers accept and ignore it, because the probability-flow ODE
    ``dx/dσ = (x − D)/σ`` has the same form for both (see :mod:`..noise_process`).
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
        process: NoiseProcess = VE,
    ) -> Tensor: ...


def sigma_list(sigmas: Tensor) -> list[float]:
    """Schedule as Python floats, so coefficient arithmetic is float64 and device-independent."""
    return [float(s) for s in sigmas.detach().cpu().reshape(-1)]


def call(denoiser: Denoiser, x: Tensor, sigma: float) -> Tensor:
    """Evaluate the denoiser with σ broadcast to a per-batch float32 tensor on ``x``'s device."""
    return denoiser(x, torch.full((x.shape[0],), sigma, dtype=torch.float32, device=x.device))


def cfgpp_start(denoiser: Denoiser, x: Tensor, sigma: float, cfg_pp: bool) -> tuple[Tensor, Tensor]:
    """The prediction at x and the point a step starts from: x itself, or for CFG++ x + (D − D_uncond).

    CFG++ (Chung et al. 2024, "CFG++: Manifold-constrained Classifier Free Guidance") keeps the guided
    x0 prediction D but re-noises along the *unconditional* noise estimate ε̂_u = (x − D_u)/σ: its DDIM
    step is x' = D + σ'·ε̂_u. Starting any sampler's step from x̃ = D + σ·ε̂_u = x + (D − D_u) with the
    guided D gives exactly that for Euler/DDIM and the same correction for the higher-order and
    ancestral samplers. The unconditional prediction comes from the denoiser's ``with_uncond`` (see
    :class:`..model_sampling.GuidedDenoiser`); a denoiser without one has D_u = D, the plain sampler.
    """
    if not cfg_pp:
        return call(denoiser, x, sigma), x
    denoised, uncond = call_with_uncond(denoiser, x, sigma)
    return denoised, x + (denoised - uncond)


def call_with_uncond(denoiser: Denoiser, x: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    """(guided, unconditional) x0 predictions; both the guided one for a denoiser without guidance."""
    with_uncond = getattr(denoiser, "with_uncond", None)
    sig = torch.full((x.shape[0],), sigma, dtype=torch.float32, device=x.device)
    if with_uncond is None:
        denoised = denoiser(x, sig)
        return denoised, denoised
    guided, uncond = with_uncond(x, sig)
    return guided, uncond


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
    """VE ancestral split (σ_down, σ_up); kept under its k-diffusion name. See ``noise_process``."""
    return ve_ancestral_split(sigma, sigma_next, eta)


def to_d(x: Tensor, denoised: Tensor, sigma: float) -> Tensor:
    """ODE slope dx/dσ = (x − D)/σ (Karras et al. 2022, eq. 3)."""
    return (x - denoised) / sigma
