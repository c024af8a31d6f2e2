"""ER-SDE-Solver (Cui et al. 2025, "Elucidating the Solution Space of Extended Reverse-Time SDE for
Diffusion Models", arXiv 2309.06169), multistep up to stage 3.

The extended reverse-time SDE is a family indexed by a *noise scale function* φ; in VE units (s = σ for
VE; for flow models the VE-equivalent level s = σ/α of y = x/α, see ``noise_process``) its exact solution
over a step s → s' is

    y' = (φ(s')/φ(s))·y + φ(s')·∫_{s'}^{s} D(u)·(φ'(u)/φ(u)²) du + √(s'² − s²·(φ(s')/φ(s))²)·z.

φ(s) = s gives the probability-flow ODE (no noise), φ(s) = s² ancestral DDPM; the paper's recommended
φ(s) = s·(e^{s^0.3} + 10) lies in between, noisier at high noise. Stage 1 takes D constant; stages 2 and 3
replace it by the polynomial in s through the last 2–3 predictions, integrated against the kernel by
Gauss–Legendre quadrature in log s (the kernel is smooth; 32 nodes are exact to float precision here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.polynomial import legendre
from numpy.polynomial import polynomial as P
from torch import Tensor

from ..model_sampling import Denoiser
from ..noise_process import VE, NoiseProcess
from ._common import Callback, StepNoise, call, report, require_noise, sigma_list

_GL_X, _GL_W = legendre.leggauss(32)


def noise_scale(s: np.ndarray | float) -> np.ndarray | float:
    """The paper's φ(s) = s·(e^{s^0.3} + 10)."""
    return s * (np.exp(np.power(s, 0.3)) + 10.0)


def _noise_scale_slope(s: np.ndarray) -> np.ndarray:
    """φ'(s)."""
    e: np.ndarray = np.exp(np.power(s, 0.3))
    out: np.ndarray = e * (1.0 + 0.3 * np.power(s, 0.3)) + 10.0
    return out


def er_weights(nodes: Sequence[float], s: float, s_to: float) -> list[float]:
    """φ(s')·∫_{s'}^{s} ℓ_j(u)·φ'(u)/φ(u)² du for the Lagrange basis ℓ_j on ``nodes`` (levels in s)."""
    lo, hi = math.log(s_to), math.log(s)
    v = 0.5 * (hi - lo) * _GL_X + 0.5 * (hi + lo)
    u = np.exp(v)
    kernel = _noise_scale_slope(u) / np.square(noise_scale(u)) * u * (0.5 * (hi - lo)) * _GL_W
    scale = float(noise_scale(s_to))
    weights = []
    for j, sj in enumerate(nodes):
        poly = np.array([1.0])
        for k, sk in enumerate(nodes):
            if k != j:
                poly = P.polymul(poly, np.array([-sk, 1.0]) / (sj - sk))
        weights.append(scale * float(np.sum(P.polyval(u, poly) * kernel)))
    return weights


def sample_er_sde(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    max_stage: int = 3,
    s_noise: float = 1.0,
) -> Tensor:
    """ER-SDE-Solver-3 (Cui et al. 2025) with φ(s) = s·(e^{s^0.3} + 10); ``s_noise`` scales the noise."""
    src = require_noise(noise, "er_sde")
    s = sigma_list(sigmas)
    n = len(s) - 1
    history: list[tuple[float, Tensor]] = []  # (VE level, D), newest first; finite levels only
    for i in range(n):
        denoised = call(denoiser, x, s[i])
        alpha, alpha_next = process.alpha(s[i]), process.alpha(s[i + 1])
        if s[i + 1] == 0.0:
            x = denoised
        elif alpha <= 0.0:  # flow at σ = 1: φ(∞) = ∞, the sample carries nothing forward
            x = denoised * alpha_next + src.like(x) * (s[i + 1] * s_noise)
        else:
            level, level_next = s[i] / alpha, s[i + 1] / alpha_next
            ratio = float(noise_scale(level_next) / noise_scale(level))
            nodes = [(level, denoised), *history][:max_stage]
            weights = er_weights([lv for lv, _ in nodes], level, level_next)
            mix = nodes[0][1] * weights[0]
            for (_, d), w in zip(nodes[1:], weights[1:], strict=True):
                mix = mix + d * w
            std = math.sqrt(max(level_next**2 - (level * ratio) ** 2, 0.0)) * s_noise
            y = (x / alpha) * ratio + mix + src.like(x) * std
            x = y * alpha_next
        if alpha > 0.0:
            history.insert(0, (s[i] / alpha, denoised))
            del history[max_stage - 1 :]
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x
