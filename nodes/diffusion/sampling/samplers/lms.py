"""Linear multistep (Adams–Bashforth on a non-uniform σ grid), as used for diffusion by Karras/k-diffusion.

The ODE slope d = (x − D)/σ is remembered for the last ``order`` steps; the step σ_i → σ_{i+1} integrates
the Lagrange polynomial through those slopes (as a function of σ) over [σ_i, σ_{i+1}]. The integrals are
exact (polynomial antiderivatives in float64) rather than numerical quadrature. Warm-up uses as many
past slopes as exist, so the first step is Euler.
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial import polynomial as P
from torch import Tensor

from ..model_sampling import Denoiser
from ..noise_process import VE, NoiseProcess
from ._common import Callback, StepNoise, call, report, sigma_list, to_d


def lms_coefficients(nodes: list[float], a: float, b: float) -> list[float]:
    """∫_a^b L_j(σ) dσ for each Lagrange basis polynomial L_j on ``nodes`` (newest node first)."""
    out = []
    for j, sj in enumerate(nodes):
        poly = np.array([1.0])
        for k, sk in enumerate(nodes):
            if k != j:
                poly = P.polymul(poly, np.array([-sk, 1.0]) / (sj - sk))
        anti = P.polyint(poly)
        out.append(float(P.polyval(b, anti) - P.polyval(a, anti)))
    return out


def sample_lms(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    order: int = 4,
) -> Tensor:
    """Linear multistep method of order ``order`` (default 4) in σ (Adams–Bashforth, k-diffusion LMS)."""
    s = sigma_list(sigmas)
    n = len(s) - 1
    slopes: list[Tensor] = []
    for i in range(n):
        denoised = call(denoiser, x, s[i])
        slopes.insert(0, to_d(x, denoised, s[i]))
        del slopes[order:]
        nodes = [s[i - k] for k in range(len(slopes))]
        coeffs = lms_coefficients(nodes, s[i], s[i + 1])
        for c, d in zip(coeffs, slopes, strict=True):
            x = x + d * c
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x
