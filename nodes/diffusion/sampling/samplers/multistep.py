"""Multistep solvers on the noise estimate ε̂ = (x − D)/σ in σ: iPNDM, its variable-step form, DEIS and
gradient estimation.

In σ units the probability-flow ODE is dx/dσ = ε̂(x, σ) (for VE this is the exponential-integrator form
of DEIS, Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator", where the
transformed ODE has no linear term), so Adams–Bashforth in σ on ε̂ is exact for polynomial ε̂:

* **ipndm** — improved PNDM (same paper, sec. 5): Adams–Bashforth of order up to 4 with the fixed
  uniform-step coefficients (1), (3, −1)/2, (23, −16, 5)/12, (55, −59, 37, −9)/24, warming up through the
  lower orders.
* **ipndm_v** — the same with coefficients recomputed for the actual, non-uniform steps (order 4): the
  exact integral of the Lagrange polynomial in σ, which is LMS of order 4.
* **deis** — ρAB-DEIS (the paper's polynomial extrapolation in ρ = σ), order 3: LMS of order 3.
* **gradient_estimation** — Permenter & Yuan 2024 ("Interpreting and Improving Diffusion Models from an
  Optimization Perspective", Alg. 2): the step direction is γ·ε̂_i + (1 − γ)·ε̂_{i−1}, γ = 2, which
  cancels the first-order error of the denoiser's estimate along the path.
"""

from __future__ import annotations

from torch import Tensor

from ..model_sampling import Denoiser
from ..noise_process import VE, NoiseProcess
from ._common import Callback, StepNoise, call, cfgpp_start, report, sigma_list, to_d
from .lms import sample_lms

_AB = [[1.0], [1.5, -0.5], [23 / 12, -16 / 12, 5 / 12], [55 / 24, -59 / 24, 37 / 24, -9 / 24]]


def sample_ipndm(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    order: int = 4,
) -> Tensor:
    """iPNDM (Zhang & Chen 2023): fixed-coefficient Adams–Bashforth on ε̂ in σ, order up to 4."""
    s = sigma_list(sigmas)
    n = len(s) - 1
    slopes: list[Tensor] = []
    for i in range(n):
        denoised = call(denoiser, x, s[i])
        slopes.insert(0, to_d(x, denoised, s[i]))
        del slopes[order:]
        coeffs = _AB[len(slopes) - 1]
        step = slopes[0] * coeffs[0]
        for c, d in zip(coeffs[1:], slopes[1:], strict=True):
            step = step + d * c
        x = x + step * (s[i + 1] - s[i])
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x


def sample_ipndm_v(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    order: int = 4,
) -> Tensor:
    """Variable-step iPNDM: Adams–Bashforth in σ with coefficients for the actual step sizes."""
    return sample_lms(denoiser, x, sigmas, noise=noise, callback=callback, process=process, order=order)


def sample_deis(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    order: int = 3,
) -> Tensor:
    """ρAB-DEIS (Zhang & Chen 2023): ε̂ extrapolated by a polynomial in σ, integrated exactly; order 3."""
    return sample_lms(denoiser, x, sigmas, noise=noise, callback=callback, process=process, order=order)


def sample_gradient_estimation(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    gamma: float = 2.0,
    cfg_pp: bool = False,
) -> Tensor:
    """Gradient estimation (Permenter & Yuan 2024): Euler along γ·ε̂_i + (1 − γ)·ε̂_{i−1}."""
    s = sigma_list(sigmas)
    n = len(s) - 1
    old: Tensor | None = None
    for i in range(n):
        denoised, x = cfgpp_start(denoiser, x, s[i], cfg_pp)
        d = to_d(x, denoised, s[i])
        direction = d if old is None else d * gamma + old * (1.0 - gamma)
        x = x + direction * (s[i + 1] - s[i])
        old = d
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x
