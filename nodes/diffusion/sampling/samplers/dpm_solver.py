"""DPM-Solver (Lu et al. 2022, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model Sampling
in Around 10 Steps"), the original noise-prediction solver, with its fast and adaptive step rules.

In t = −log σ the ODE dx/dσ = ε̂ has the exact solution x(t') = x(t) − ∫ σ(τ)·ε̂ dτ·…; DPM-Solver-1/2/3
(the paper's Alg. 1 and 2 with α = 1) approximate ε̂ by its Taylor expansion in t through 1–3 evaluations
per step, at intermediate levels t + r·h:

* DPM-Solver-1: x' = x − σ'(e^h − 1)·ε̂₀ (the DDIM/Euler step).
* DPM-Solver-2 (r₁): u = x − σ₁(e^{r₁h} − 1)·ε̂₀; x' = x − σ'(e^h − 1)·ε̂₀ − σ'/(2r₁)·(e^h − 1)·(ε̂₁ − ε̂₀).
* DPM-Solver-3 (r₁ = 1/3, r₂ = 2/3): the paper's third-order rule with the φ-type factor (e^h−1)/h − 1.

``dpm_fast`` spends the schedule's model calls on uniform steps in t between its first and last non-zero
σ, in the paper's order pattern (3, 3, …, then 2/1: "DPM-Solver-fast"); ``dpm_adaptive`` picks its own
steps with the paper's embedded 2/3 pair and an error controller (sec. 3.4, app. C). Both use only the
schedule's end points, as the paper's solvers do. Where the schedule ends at σ = 0 they finish on the
last non-zero σ and take the model's prediction there (one call of dpm_fast's budget).
In these variables the same code solves a flow model's ODE (see ``noise_process``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..model_sampling import Denoiser
from ..noise_process import VE, NoiseProcess
from ._common import Callback, StepNoise, call, report, sigma_list


def _eps(denoiser: Denoiser, x: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    denoised = call(denoiser, x, sigma)
    return (x - denoised) / sigma, denoised


def _dpm_step(denoiser: Denoiser, x: Tensor, eps0: Tensor, t: float, t_next: float, order: int) -> Tensor:
    """One DPM-Solver step of the given order from t to t_next (t = −log σ), ε̂ at t given."""
    h = t_next - t
    sigma_next = math.exp(-t_next)
    base = x - eps0 * (sigma_next * math.expm1(h))
    if order == 1:
        return base
    if order == 2:
        r1 = 0.5
        sigma_1 = math.exp(-(t + r1 * h))
        eps1, _ = _eps(denoiser, x - eps0 * (sigma_1 * math.expm1(r1 * h)), sigma_1)
        return base - (eps1 - eps0) * (sigma_next / (2.0 * r1) * math.expm1(h))
    return _dpm_23(denoiser, x, eps0, t, t_next)[1]


def _dpm_23(denoiser: Denoiser, x: Tensor, eps0: Tensor, t: float, t_next: float) -> tuple[Tensor, Tensor]:
    """The embedded pair: DPM-Solver-2 with r₁ = 1/3 and DPM-Solver-3, sharing their evaluations."""
    r1, r2 = 1.0 / 3.0, 2.0 / 3.0
    h = t_next - t
    sigma_next = math.exp(-t_next)
    sigma_1, sigma_2 = math.exp(-(t + r1 * h)), math.exp(-(t + r2 * h))
    eps1, _ = _eps(denoiser, x - eps0 * (sigma_1 * math.expm1(r1 * h)), sigma_1)
    base = x - eps0 * (sigma_next * math.expm1(h))
    x_low = base - (eps1 - eps0) * (sigma_next / (2.0 * r1) * math.expm1(h))
    u2 = (
        x
        - eps0 * (sigma_2 * math.expm1(r2 * h))
        - (eps1 - eps0) * (sigma_2 * (r2 / r1) * (math.expm1(r2 * h) / (r2 * h) - 1.0))
    )
    eps2, _ = _eps(denoiser, u2, sigma_2)
    x_high = base - (eps2 - eps0) * (sigma_next / r2 * (math.expm1(h) / h - 1.0))
    return x_low, x_high


def _ends(s: list[float]) -> tuple[float, float, bool]:
    """(σ_start, σ_end, finish_with_denoise): the solvers stop at the last non-zero σ."""
    if s[-1] == 0.0:
        return s[0], s[-2], True
    return s[0], s[-1], False


def sample_dpm_fast(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
) -> Tensor:
    """DPM-Solver-fast (Lu et al. 2022, sec. 3.4): the schedule's call budget on uniform steps in log σ."""
    s = sigma_list(sigmas)
    if len(s) < 2:
        return x
    sigma_start, sigma_end, finish = _ends(s)
    nfe = len(s) - 1 - (1 if finish else 0)
    if nfe > 0 and sigma_end < sigma_start:
        m = nfe // 3 + 1
        orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
        ts = torch.linspace(-math.log(sigma_start), -math.log(sigma_end), len(orders) + 1, dtype=torch.float64)
        total = len(orders) + (1 if finish else 0)
        for i, order in enumerate(orders):
            t, t_next = float(ts[i]), float(ts[i + 1])
            eps0, denoised = _eps(denoiser, x, math.exp(-t))
            x = _dpm_step(denoiser, x, eps0, t, t_next, order)
            report(callback, i, total, x, math.exp(-t), math.exp(-t_next), denoised)
    else:
        total = 1
    if finish:
        denoised = call(denoiser, x, sigma_end)
        x = denoised
        report(callback, total - 1, total, x, sigma_end, 0.0, denoised)
    return x


def sample_dpm_adaptive(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    rtol: float = 0.05,
    atol: float = 0.0078,
    h_init: float = 0.05,
    safety: float = 0.9,
) -> Tensor:
    """Adaptive DPM-Solver-23 (Lu et al. 2022, app. C): accept a step when the scaled RMS difference of the
    2nd- and 3rd-order results is ≤ 1; the next h is h·safety·E^{−1/3}, kept within [0.2h, 5h].

    Error scale per element: max(atol, rtol·max(|x_low|, |x|)), as in the paper. The number of steps is
    not known in advance; progress reports count accepted steps against the schedule's step count.
    """
    s = sigma_list(sigmas)
    if len(s) < 2:
        return x
    sigma_start, sigma_end, finish = _ends(s)
    nominal = len(s) - 1
    t, t_end = -math.log(sigma_start), -math.log(sigma_end)
    h = h_init
    i = 0
    while t_end - t > 1e-9:
        h = min(h, t_end - t)
        eps0, denoised = _eps(denoiser, x, math.exp(-t))
        while True:
            x_low, x_high = _dpm_23(denoiser, x, eps0, t, t + h)
            scale = torch.maximum(torch.full_like(x, atol), torch.maximum(x_low.abs(), x.abs()) * rtol)
            error = float(((x_low - x_high) / scale).square().mean().sqrt())
            if not math.isfinite(error):
                raise FloatingPointError(f"dpm_adaptive: the step from σ = {math.exp(-t):.4g} produced NaN/inf")
            factor = min(5.0, max(0.2, safety * (max(error, 1e-10) ** (-1.0 / 3.0))))
            if error <= 1.0:
                break
            h *= factor
        report(callback, i, max(nominal, i + 1), x_high, math.exp(-t), math.exp(-(t + h)), denoised)
        x, t, i = x_high, t + h, i + 1
        h *= factor
    if finish:
        denoised = call(denoiser, x, sigma_end)
        x = denoised
        report(callback, i, max(nominal, i + 1), x, sigma_end, 0.0, denoised)
    return x
