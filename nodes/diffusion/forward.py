"""The forward (noising) process of diffusion, as a standalone calculation for the Add Noise node.

A DDPM-trained model learned to undo ``x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε`` (Ho et al. 2020, eq. 4), where
``ᾱ_t = ∏_{s≤t} (1−β_s)`` and ε ~ N(0, I). This module computes ᾱ for the three classic β schedules
and applies the formula to a latent, so a user can watch the signal fade as t grows.

Timestep convention (the one the node documents): ``t`` is an integer in [0, T] with T = 1000.
``t = 0`` means "no noise at all" (ᾱ = 1, x_t is x₀ exactly) and ``t ≥ 1`` reads entry ``t − 1`` of the
1000-entry ᾱ table, so ``t = 1`` is one β step and ``t = 1000`` is the table's last entry (DDPM's own
1-based t = 1…T). The samplers' `ModelSampling.timestep` counts table indices 0…999 instead, i.e. the
same noise level is ``t_here = index + 1``.

Schedules:

* ``scaled_linear`` — what Stable Diffusion was trained with: β linear in √β from 0.00085 to 0.012.
  ᾱ_T ≈ 0.0047, so x_1000 still holds √ᾱ ≈ 6.8 % of x₀ (SD's famous non-zero terminal SNR).
* ``linear`` — DDPM's original β from 1e-4 to 0.02; ᾱ_T ≈ 4e-5.
* ``cosine`` — Improved DDPM (Nichol & Dhariwal 2021): ᾱ_t = f(t)/f(0) with
  f(t) = cos²((t/T + s)/(1 + s)·π/2), s = 0.008, built through β_t = min(1 − ᾱ_t/ᾱ_{t−1}, 0.999)
  like the paper's code, so ᾱ_T is ~0 (pure noise) rather than exactly the closed form's 0.

The noise ε comes from `nodes.diffusion.sampling.initial_noise`, the same seeded stream KSampler starts from,
so Add Noise at a given seed shows the very noise a sampler with that seed would begin with.

* ``flow`` — rectified flow (SD3, FLUX, Z-Image): ``x_t = (1−σ)·x₀ + σ·ε`` with σ = shift(t/T), the
  timestep shift of :func:`nodes.diffusion.sampling.time_shift` (1 = none; SD3 and Z-Image sample with
  3). Here t = T is pure noise (σ = 1) and the signal falls linearly rather than as √ᾱ. For comparison
  with the VP schedules the level also reports the VP ᾱ with the same SNR, (1−σ)²/((1−σ)² + σ²).

The formula is applied to latents in the *model's* space (the VAE latent times its scaling factor,
≈ unit variance), because that is the space the β schedule was designed for: in the raw VAE space
(std ≈ 5) the same ε would drown the image far too early.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from nodes.diffusion.sampling import initial_noise

Schedule = Literal["scaled_linear", "linear", "cosine", "flow"]
#: The variance-preserving (DDPM) schedules: x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε.
VP_SCHEDULES: tuple[Schedule, ...] = ("scaled_linear", "linear", "cosine")
SCHEDULES: tuple[Schedule, ...] = (*VP_SCHEDULES, "flow")
T = 1000
COSINE_S = 0.008
MAX_BETA = 0.999


def betas(schedule: Schedule, n: int = T) -> np.ndarray:
    """β_1…β_n (float64) for one of the supported schedules."""
    if schedule == "scaled_linear":
        return np.linspace(0.00085**0.5, 0.012**0.5, n, dtype=np.float64) ** 2
    if schedule == "linear":
        return np.linspace(1e-4, 0.02, n, dtype=np.float64)
    if schedule == "cosine":
        f = cosine_f(np.arange(n + 1, dtype=np.float64), n)
        abar = f / f[0]
        return np.minimum(1.0 - abar[1:] / abar[:-1], MAX_BETA)
    raise ValueError(f"{schedule!r} has no β table; choose one of {', '.join(VP_SCHEDULES)}")


def cosine_f(t: np.ndarray, n: int = T, s: float = COSINE_S) -> np.ndarray:
    """Improved DDPM's f(t) = cos²((t/T + s)/(1 + s)·π/2)."""
    return np.asarray(np.cos((t / n + s) / (1 + s) * math.pi / 2) ** 2)


def alphas_cumprod(schedule: Schedule, n: int = T) -> np.ndarray:
    """The 1000-entry ᾱ table: entry i is the signal fraction after i + 1 noising steps."""
    return np.cumprod(1.0 - betas(schedule, n))


@dataclass(frozen=True)
class NoiseLevel:
    """The figures the Add Noise node shows for one (schedule, t).

    ``flow_sigma`` is set for the flow schedule (x_t = (1−σ)·x₀ + σ·ε); ``alpha_bar`` is then the VP ᾱ
    with the same signal-to-noise ratio.
    """

    schedule: str
    t: int
    alpha_bar: float
    flow_sigma: float | None = None

    @property
    def signal(self) -> float:
        """√ᾱ_t (flow: 1 − σ): how much of x₀ is left."""
        if self.flow_sigma is not None:
            return 1.0 - self.flow_sigma
        return math.sqrt(self.alpha_bar)

    @property
    def noise(self) -> float:
        """√(1−ᾱ_t) (flow: σ): how much of ε is mixed in."""
        if self.flow_sigma is not None:
            return self.flow_sigma
        return math.sqrt(max(0.0, 1.0 - self.alpha_bar))

    @property
    def snr(self) -> float:
        """ᾱ/(1−ᾱ) = signal²/noise², infinite at t = 0 (and 0 at pure flow noise)."""
        if self.flow_sigma is not None:
            return math.inf if self.flow_sigma <= 0.0 else self.signal**2 / self.noise**2
        return math.inf if self.alpha_bar >= 1.0 else self.alpha_bar / (1.0 - self.alpha_bar)

    @property
    def sigma(self) -> float:
        """The same level in the VE samplers' σ units: noise/signal = 1/√SNR (∞ at pure flow noise)."""
        if self.flow_sigma is not None:
            return math.inf if self.signal <= 0.0 else self.noise / self.signal
        return 0.0 if self.alpha_bar >= 1.0 else math.sqrt((1.0 - self.alpha_bar) / max(self.alpha_bar, 1e-300))

    def figures(self) -> dict[str, float]:
        out = {
            "t": float(self.t),
            "alpha_bar": self.alpha_bar,
            "sqrt_alpha_bar": self.signal,
            "sqrt_one_minus_alpha_bar": self.noise,
            "snr": self.snr,
            "sigma": self.sigma,
        }
        if self.flow_sigma is not None:
            out["flow_sigma"] = self.flow_sigma
        return out

    def lines(self) -> list[str]:
        """Short lines for the node's face: what the user reads under the slider."""
        snr = "∞" if math.isinf(self.snr) else f"{self.snr:.4g}"
        if self.flow_sigma is not None:
            return [
                f"t = {self.t} (flow)",
                f"σ = {self.flow_sigma:.5f}",
                f"1−σ = {self.signal:.4f}  (image)",
                f"σ = {self.noise:.4f}  (noise)",
                f"SNR = {snr}",
            ]
        return [
            f"t = {self.t} ({self.schedule})",
            f"ᾱ = {self.alpha_bar:.5f}",
            f"√ᾱ = {self.signal:.4f}  (image)",
            f"√(1−ᾱ) = {self.noise:.4f}  (noise)",
            f"SNR = {snr}",
        ]


def noise_level(schedule: Schedule, t: int, shift: float = 1.0) -> NoiseLevel:
    """ᾱ at integer t in [0, T] under this module's convention (t = 0 → ᾱ = 1, t = T → last entry);
    for ``"flow"``, σ = shift(t/T) (t = 0 clean, t = T pure noise)."""
    if not 0 <= t <= T:
        raise ValueError(f"t must be between 0 and {T}, got {t}")
    if schedule == "flow":
        from nodes.diffusion.sampling import time_shift

        if shift <= 0:
            raise ValueError(f"shift must be above 0, got {shift}")
        sigma = float(time_shift(shift, t / T))
        a = 1.0 - sigma
        return NoiseLevel(schedule, int(t), a * a / (a * a + sigma * sigma), flow_sigma=sigma)
    abar = 1.0 if t == 0 else float(alphas_cumprod(schedule)[t - 1])
    return NoiseLevel(schedule, int(t), abar)


def add_noise(x0: Tensor, level: NoiseLevel, seed: int) -> tuple[Tensor, Tensor]:
    """x_t = √ᾱ·x₀ + √(1−ᾱ)·ε (flow: (1−σ)·x₀ + σ·ε) for a model-space latent; returns (x_t, ε).
    t = 0 returns x₀ itself."""
    eps = initial_noise(seed, tuple(x0.shape)).to(dtype=torch.float32)
    if level.alpha_bar >= 1.0:
        return x0.float().clone(), eps
    return level.signal * x0.float() + level.noise * eps, eps
