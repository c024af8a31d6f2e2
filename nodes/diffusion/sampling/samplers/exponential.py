"""Exponential integrators in λ = log(α/σ) with polynomial x0 predictions: DPM-Solver++(3M) SDE, the exact
second-order ("heun") 2M SDE, SEEDS-2/3 and SA-Solver, all built on one weight rule.

The SDE family of Lu et al. 2022 (SDE-DPM-Solver++) and Gonzalez et al. 2023 (SEEDS) with noise strength
η ≥ 0 (η = 0 is the probability-flow ODE) has the exact solution, over a step of length h in λ,

    x' = (σ'/σ)·e^{−ηh}·x + α'·∫₀ʰ c·e^{−c(h−τ)}·D(λ+τ) dτ + σ'·√(2η)·∫₀ʰ e^{−η(h−τ)} dW_τ,   c = 1 + η.

Every solver here replaces D(λ+τ) by the Lagrange polynomial through some known predictions (earlier
steps: τ < 0; stages or a corrector point: τ > 0) and integrates it *exactly*
(:func:`exp_poly_weights`), so coefficients hold for any step ratio. The noise integral is Gaussian with
variance 1 − e^{−2ηh}; the single-step stages (SEEDS) split it into nested pieces of one Brownian path, so
each stage's noise is the part of the final noise that has already happened (Gonzalez et al., sec. 4).
For flow models λ = −∞ at σ = 1: that first step has h = ∞ and is the first-order jump
x' = α'·D + σ'·z (η > 0) or σ'·x + α'·D (η = 0), and λ = −∞ predictions are never used as nodes.
A step to σ = 0 lands on D.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.polynomial import polynomial as P
from torch import Tensor

from ..model_sampling import Denoiser
from ..noise_process import VE, NoiseProcess
from ._common import Callback, StepNoise, call, report, require_noise, sigma_list


def _moments(H: float, count: int) -> list[float]:
    """J_k = ∫₀¹ H·e^{−H(1−u)}·u^k du for k < count (series for small H, where the recurrence cancels)."""
    if H <= 1.0:
        out = []
        for k in range(count):
            total, term = 0.0, 1.0 / math.factorial(k + 1)  # m = 0 term of Σ (−H)^m/(m+k+1)!
            for m in range(60):
                total += term
                term *= -H / (m + k + 2)
            out.append(H * math.factorial(k) * total)
        return out
    out = [-math.expm1(-H)]
    for k in range(1, count):
        out.append(1.0 - k / H * out[-1])  # integration by parts
    return out


def exp_poly_weights(taus: Sequence[float], h: float, c: float = 1.0) -> list[float]:
    """w_j = ∫₀ʰ c·e^{−c(h−τ)}·ℓ_j(τ) dτ for the Lagrange basis ℓ_j on the nodes ``taus``.

    ``Σ w_j·D_j`` is the exact integral of the interpolating polynomial against the exponential kernel;
    the weights sum to 1 − e^{−ch}. Computed in the scaled variable u = τ/h, in float64.
    """
    us = [t / h for t in taus]
    moments = _moments(c * h, len(us))
    weights = []
    for j, uj in enumerate(us):
        poly = np.array([1.0])
        for k, uk in enumerate(us):
            if k != j:
                poly = P.polymul(poly, np.array([-uk, 1.0]) / (uj - uk))
        weights.append(float(sum(coef * moments[k] for k, coef in enumerate(poly))))
    return weights


def dpmpp_3m_weights(taus: Sequence[float], h: float, c: float = 1.0) -> list[float]:
    """Weights of DPM-Solver++(3M) (Lu et al. 2022, third-order multistep update) on (D₀, D₁, D₂).

    In u = τ/h the predictions give the divided differences d₁ (slope at 0) and d₂ (the quadratic
    coefficient) of the interpolating quadratic, and the paper's update adds φ₂·d₁ − φ₃·d₂ with
    φ₂ = J₁ and φ₃ = φ₂/(ch) − 1/2 = −J₂/2: *half* the weight that integrating the quadratic exactly
    (:func:`exp_poly_weights`) gives d₂. The difference is O(h³) per step; we keep the published rule
    (also k-diffusion's), which amplifies the noise of SDE steps carried in the predictions less when a
    long step follows short ones (on the Gaussian test at 30 ``normal`` steps the exact quadratic ends
    with 2.7× the target std, the published one 1.8×).
    """
    r0 = -taus[1] / h
    r1 = (taus[1] - taus[2]) / h
    j0, j1, j2 = _moments(c * h, 3)
    eye = np.eye(3)
    d1_0 = (eye[0] - eye[1]) / r0
    d1_1 = (eye[1] - eye[2]) / r1
    d2 = (d1_0 - d1_1) / (r0 + r1)
    d1 = d1_0 + r0 * d2
    return [float(w) for w in eye[0] * j0 + d1 * j1 + d2 * (0.5 * j2)]


def _combine(ds: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    out = ds[0] * weights[0]
    for d, w in zip(ds[1:], weights[1:], strict=True):
        out = out + d * w
    return out


def _decay(sigma: float, sigma_to: float, h: float, eta: float) -> float:
    """The weight (σ'/σ)·e^{−ηh} the step keeps of x (0 for an infinite noisy step)."""
    if not math.isfinite(h):
        return 0.0 if eta > 0.0 else sigma_to / sigma
    return sigma_to / sigma * math.exp(-eta * h)


def _unit_noise_std(h: float, eta: float) -> float:
    """Std of the normalised noise integral √(2η)·∫₀ʰ e^{−η(h−τ)} dW: √(1 − e^{−2ηh})."""
    if eta <= 0.0:
        return 0.0
    return 1.0 if not math.isfinite(h) else math.sqrt(-math.expm1(-2.0 * eta * h))


def _first_order(
    process: NoiseProcess, x: Tensor, d: Tensor, sigma: float, sigma_to: float, h: float, eta: float, z: Tensor | None
) -> Tensor:
    """The exact step for a constant prediction (SDE-DPM-Solver++1 / DDIM with noise)."""
    w = -math.expm1(-(1.0 + eta) * h) if math.isfinite(h) else 1.0
    x = x * _decay(sigma, sigma_to, h, eta) + d * (process.alpha(sigma_to) * w)
    std = _unit_noise_std(h, eta)
    if std > 0.0 and z is not None:
        x = x + z * (sigma_to * std)
    return x


def _sde_multistep(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    noise: StepNoise | None,
    callback: Callback | None,
    process: NoiseProcess,
    eta: float,
    order: int,
    name: str,
) -> Tensor:
    """Multistep SDE-DPM-Solver++ of the given order: polynomial through the last ``order`` predictions."""
    src = require_noise(noise, name) if eta > 0.0 else None
    s = sigma_list(sigmas)
    n = len(s) - 1
    history: list[tuple[float, Tensor]] = []  # (λ, D), newest first
    for i in range(n):
        denoised = call(denoiser, x, s[i])
        lam = process.log_snr_half(s[i])
        if s[i + 1] == 0.0:
            x = denoised
        else:
            h = process.log_snr_half(s[i + 1]) - lam
            z = src.like(x) if src is not None else None
            if not math.isfinite(h):
                x = _first_order(process, x, denoised, s[i], s[i + 1], h, eta, z)
            else:
                past = [(lp, dp) for lp, dp in history if math.isfinite(lp)][: order - 1]
                taus = [0.0] + [lp - lam for lp, _ in past]
                rule = dpmpp_3m_weights if len(taus) == 3 else exp_poly_weights
                weights = rule(taus, h, 1.0 + eta)
                mix = _combine([denoised] + [dp for _, dp in past], weights)
                x = x * _decay(s[i], s[i + 1], h, eta) + mix * process.alpha(s[i + 1])
                if z is not None:
                    x = x + z * (s[i + 1] * _unit_noise_std(h, eta))
        history.insert(0, (lam, denoised))
        del history[order:]
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x


def sample_dpmpp_3m_sde(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    eta: float = 1.0,
) -> Tensor:
    """SDE-DPM-Solver++(3M) (Lu et al. 2022): quadratic through the last three x0 predictions in λ,
    weighted as the paper does (see :func:`dpmpp_3m_weights`)."""
    return _sde_multistep(denoiser, x, sigmas, noise, callback, process, eta, 3, "dpmpp_3m_sde")


def sample_dpmpp_2m_sde_heun(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    eta: float = 1.0,
) -> Tensor:
    """SDE-DPM-Solver++(2M) with the line through the last two predictions integrated exactly
    (k-diffusion's ``solver_type="heun"``; the plain variant uses the midpoint approximation)."""
    return _sde_multistep(denoiser, x, sigmas, noise, callback, process, eta, 2, "dpmpp_2m_sde_heun")


def _seeds(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    noise: StepNoise | None,
    callback: Callback | None,
    process: NoiseProcess,
    eta: float,
    rs: Sequence[float],
    name: str,
) -> Tensor:
    """SEEDS single-step exponential SDE solver with stages at λ + r·h (r in ``rs``, increasing).

    Stage k is built from D and the stage before it (the DPM-Solver++(2S)/(3S) construction with the SDE
    kernel c = 1 + η); the final step uses D and the last stage. Noise: nested pieces of one path.
    """
    src = require_noise(noise, name) if eta > 0.0 else None
    s = sigma_list(sigmas)
    n = len(s) - 1
    c = 1.0 + eta
    for i in range(n):
        denoised = call(denoiser, x, s[i])
        if s[i + 1] == 0.0:
            x = denoised
            report(callback, i, n, x, s[i], s[i + 1], denoised)
            continue
        lam = process.log_snr_half(s[i])
        h = process.log_snr_half(s[i + 1]) - lam
        if not math.isfinite(h):
            x = _first_order(process, x, denoised, s[i], s[i + 1], h, eta, src.like(x) if src else None)
            report(callback, i, n, x, s[i], s[i + 1], denoised)
            continue
        unit: Tensor | None = None  # normalised noise integral up to the current stage
        r_prev = 0.0
        prev_stage: tuple[float, Tensor] | None = None  # (r, D at that stage)
        x_start = x
        for r in [*rs, 1.0]:
            if src is not None:
                fresh = src.like(x) * _unit_noise_std((r - r_prev) * h, eta)
                unit = fresh if unit is None else unit * math.exp(-eta * (r - r_prev) * h) + fresh
            sig_r = s[i + 1] if r == 1.0 else process.sigma_at(lam + r * h)
            if prev_stage is None:
                weights, ds = [-math.expm1(-c * r * h)], [denoised]
            else:
                weights = exp_poly_weights([0.0, prev_stage[0] * h], r * h, c)
                ds = [denoised, prev_stage[1]]
            x_r = x_start * _decay(s[i], sig_r, r * h, eta) + _combine(ds, weights) * process.alpha(sig_r)
            if unit is not None:
                x_r = x_r + unit * sig_r
            if r == 1.0:
                x = x_r
            else:
                prev_stage = (r, call(denoiser, x_r, sig_r))
            r_prev = r
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x


def sample_seeds_2(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    eta: float = 1.0,
    r: float = 0.5,
) -> Tensor:
    """SEEDS-2 (Gonzalez et al. 2023): two-stage exponential SDE solver in data prediction."""
    return _seeds(denoiser, x, sigmas, noise, callback, process, eta, [r], "seeds_2")


def sample_seeds_3(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    eta: float = 1.0,
    r_1: float = 1.0 / 3.0,
    r_2: float = 2.0 / 3.0,
) -> Tensor:
    """SEEDS-3 (Gonzalez et al. 2023): three stages; at η = 0 it is DPM-Solver++(3S), third order."""
    return _seeds(denoiser, x, sigmas, noise, callback, process, eta, [r_1, r_2], "seeds_3")


@dataclass(frozen=True)
class _AdamsStep:
    """One stochastic Adams step of SA-Solver from x at λ over h, for any set of (λ_j, D_j) nodes; the
    predictor and the corrector share it, including the noise z."""

    process: NoiseProcess
    x: Tensor
    sigma: float
    sigma_to: float
    lam: float
    h: float
    eta: float
    z: Tensor | None

    def __call__(self, nodes: Sequence[tuple[float, Tensor]]) -> Tensor:
        weights = exp_poly_weights([lp - self.lam for lp, _ in nodes], self.h, 1.0 + self.eta)
        mix = _combine([dp for _, dp in nodes], weights) * self.process.alpha(self.sigma_to)
        out = self.x * _decay(self.sigma, self.sigma_to, self.h, self.eta) + mix
        if self.z is None:
            return out
        return out + self.z * (self.sigma_to * _unit_noise_std(self.h, self.eta))


def _sa_solver(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    noise: StepNoise | None,
    callback: Callback | None,
    process: NoiseProcess,
    tau: float,
    predictor_order: int,
    corrector_order: int,
    pece: bool,
    noise_window: tuple[float, float],
    name: str,
) -> Tensor:
    s = sigma_list(sigmas)
    n = len(s) - 1
    src = require_noise(noise, name) if tau > 0.0 else None
    history: list[tuple[float, Tensor]] = []  # (λ, D), newest first; D at the current λ is first
    if n > 0:
        history.append((process.log_snr_half(s[0]), call(denoiser, x, s[0])))
    for i in range(n):
        lam, denoised = history[0]
        if s[i + 1] == 0.0:
            x = denoised
            report(callback, i, n, x, s[i], s[i + 1], denoised)
            continue
        lam_to = process.log_snr_half(s[i + 1])
        h = lam_to - lam
        eta = tau * tau if noise_window[0] <= i / n < noise_window[1] else 0.0
        z = src.like(x) if src is not None and eta > 0.0 else None
        finite = [(lp, dp) for lp, dp in history if math.isfinite(lp)]

        step = _AdamsStep(process, x, s[i], s[i + 1], lam, h, eta, z)
        if not math.isfinite(h):
            x_new = _first_order(process, x, denoised, s[i], s[i + 1], h, eta, z)
        else:
            x_new = step(finite[:predictor_order])
        d_next = call(denoiser, x_new, s[i + 1])
        if math.isfinite(h) and corrector_order > 0:
            x_new = step([(lam_to, d_next), *finite[: corrector_order - 1]])
            if pece:
                d_next = call(denoiser, x_new, s[i + 1])
        x = x_new
        history.insert(0, (lam_to, d_next))
        del history[max(predictor_order, corrector_order) :]
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x


def sample_sa_solver(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    tau: float = 1.0,
    predictor_order: int = 3,
    corrector_order: int = 4,
    noise_window: tuple[float, float] = (0.2, 0.8),
) -> Tensor:
    """SA-Solver (Xue et al. 2023): stochastic Adams predictor (order 3) and corrector (order 4) in λ.

    Noise of strength τ is injected on the steps in ``noise_window`` (fractions of the step count; the
    paper's and ComfyUI's default window, which ComfyUI measures in model time instead). The corrector
    uses the prediction at the predicted point and that evaluation is reused by the next step, so each
    step costs one model call.
    """
    return _sa_solver(
        denoiser,
        x,
        sigmas,
        noise,
        callback,
        process,
        tau,
        predictor_order,
        corrector_order,
        False,
        noise_window,
        "sa_solver",
    )


def sample_sa_solver_pece(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    tau: float = 1.0,
    predictor_order: int = 3,
    corrector_order: int = 4,
    noise_window: tuple[float, float] = (0.2, 0.8),
) -> Tensor:
    """SA-Solver in PECE mode: the corrected point is evaluated again (two model calls per step)."""
    return _sa_solver(
        denoiser,
        x,
        sigmas,
        noise,
        callback,
        process,
        tau,
        predictor_order,
        corrector_order,
        True,
        noise_window,
        "sa_solver_pece",
    )
