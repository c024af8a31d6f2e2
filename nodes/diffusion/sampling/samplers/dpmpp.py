"""DPM-Solver++ family (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models"), written for VE samples with α = 1, so λ = −log σ and h = log(σ_i/σ_{i+1}).

The first-order data-prediction step is exact for a constant denoiser:
``x' = (σ'/σ)·x + (1 − σ'/σ)·D``; higher orders replace D by a combination of denoiser outputs
(single-step: an extra evaluation at the λ-midpoint; multistep: the previous step's output). The SDE
variants (Lu et al. 2022, SDE-DPM-Solver++) damp x by e^{−ηh} and re-inject matching fresh noise.

Noise: plain Gaussians from a seeded :class:`NoiseSource`, not k-diffusion's Brownian tree (torchsde).
Steps cover disjoint σ intervals, so independent per-step draws have the same distribution as a
Brownian path; only dpmpp_sde, whose two sub-steps share an interval, needs a bridge draw to keep them
coherent. The numbers differ from ComfyUI's for the same seed; the distribution does not.
A step to σ = 0 is first order (x' = D), as the higher-order terms blow up when h = ∞.
"""

from __future__ import annotations

import math

from torch import Tensor

from ..model_sampling import Denoiser
from ..noise_process import VE, NoiseProcess, ancestral_step
from ._common import Callback, StepNoise, call, cfgpp_start, report, require_noise, sigma_list


def _toward(x: Tensor, denoised: Tensor, sigma: float, sigma_to: float) -> Tensor:
    """Exact step σ → σ_to of the ODE for a constant x0 prediction (DPM-Solver++ first order)."""
    ratio = sigma_to / sigma
    return x * ratio + denoised * (1.0 - ratio)


def sample_dpmpp_2s_ancestral(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    eta: float = 1.0,
    cfg_pp: bool = False,
) -> Tensor:
    """DPM-Solver++(2S) (Lu et al. 2022, Alg. 1, r = 1/2) to σ_down, plus ancestral noise σ_up."""
    src = require_noise(noise, "dpmpp_2s_ancestral")
    s = sigma_list(sigmas)
    n = len(s) - 1
    for i in range(n):
        denoised, x = cfgpp_start(denoiser, x, s[i], cfg_pp)
        step = ancestral_step(process, s[i], s[i + 1], eta)
        if step.down == 0.0:
            x = denoised
        else:
            sigma_mid = math.sqrt(s[i] * step.down)  # λ-midpoint
            x_mid = _toward(x, denoised, s[i], sigma_mid)
            x = _toward(x, call(denoiser, x_mid, sigma_mid), s[i], step.down)
        x = step.renoise(x, src.like(x) if step.up > 0.0 else None)
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x


def _bridge_pair(
    src: StepNoise, like: Tensor, sigma: float, sigma_mid: float, sigma_next: float
) -> tuple[Tensor, Tensor]:
    """Unit-variance noise for the nested intervals [σ, σ_mid] ⊂ [σ, σ'] of one Brownian path in time σ.

    The increment W(σ') − W(σ) is drawn first and W(σ_mid) − W(σ) from the Brownian bridge given it, so
    the two sub-steps of ``dpmpp_sde`` see coherent noise, as with k-diffusion's Brownian tree, without
    torchsde. Independent draws would make the mid-point evaluation refer to a different noise path than
    the final update and cost the method its second order.
    """
    full = sigma - sigma_next
    part = sigma - sigma_mid
    w_full = src.like(like) * math.sqrt(full)
    w_part = w_full * (part / full) + src.like(like) * math.sqrt(part * (full - part) / full)
    return w_part / math.sqrt(part), w_full / math.sqrt(full)


def sample_dpmpp_sde(
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
    """Stochastic DPM-Solver++(2S): both sub-steps are ancestral (Lu et al. 2022; k-diffusion "dpmpp_sde").

    Sub-step 1 goes to the intermediate level σ^(1−r)·σ'^r with noise; sub-step 2 restarts from x and
    goes to σ' using the mix (1 − 1/(2r))·D + 1/(2r)·D_mid, with noise from the same Brownian path.
    """
    src = require_noise(noise, "dpmpp_sde")
    s = sigma_list(sigmas)
    n = len(s) - 1
    fac = 1.0 / (2.0 * r)
    for i in range(n):
        denoised = call(denoiser, x, s[i])
        if s[i + 1] == 0.0:
            x = denoised
        else:
            sigma_mid = math.exp((1.0 - r) * math.log(s[i]) + r * math.log(s[i + 1]))
            z_mid, z_full = _bridge_pair(src, x, s[i], sigma_mid, s[i + 1])
            step = ancestral_step(process, s[i], sigma_mid, eta)
            x_mid = step.renoise(_toward(x, denoised, s[i], step.down), z_mid)
            mixed = denoised * (1.0 - fac) + call(denoiser, x_mid, sigma_mid) * fac
            step = ancestral_step(process, s[i], s[i + 1], eta)
            x = step.renoise(_toward(x, mixed, s[i], step.down), z_full)
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x


def sample_dpmpp_2m(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    cfg_pp: bool = False,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2): second order from the previous step's x0 prediction."""
    s = sigma_list(sigmas)
    n = len(s) - 1
    old: Tensor | None = None
    h_last = 0.0
    for i in range(n):
        denoised, x = cfgpp_start(denoiser, x, s[i], cfg_pp)
        if s[i + 1] == 0.0:
            x = denoised
        else:
            h = math.log(s[i] / s[i + 1])
            d_eff = denoised
            if old is not None:
                half_inv_r = 0.5 * h / h_last
                d_eff = denoised * (1.0 + half_inv_r) - old * half_inv_r
            x = _toward(x, d_eff, s[i], s[i + 1])
            h_last = h
        old = denoised
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x


def sample_dpmpp_2m_sde(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    eta: float = 1.0,
) -> Tensor:
    """SDE-DPM-Solver++(2M), midpoint variant (Lu et al. 2022, sec. 5 / app. on SDE solvers).

    Stepped in λ = log(α/σ) (``NoiseProcess.step_h``): for VE that is −log σ; for flow the x0 terms
    carry the data scale α' = 1 − σ' and the first step from σ = 1 (h = ∞) lands on α'·D + σ'·z.
    """
    src = require_noise(noise, "dpmpp_2m_sde")
    s = sigma_list(sigmas)
    n = len(s) - 1
    old: Tensor | None = None
    h_last = 0.0
    for i in range(n):
        denoised = call(denoiser, x, s[i])
        if s[i + 1] == 0.0:
            x = denoised
        else:
            h = process.step_h(s[i], s[i + 1])
            eh = eta * h if eta > 0.0 else 0.0
            a_next = process.alpha(s[i + 1])
            gain = -math.expm1(-h - eh) * a_next  # α'·(1 − e^{−(1+η)h}): weight on D
            x = x * (s[i + 1] / s[i] * math.exp(-eh)) + denoised * gain
            if old is not None and math.isfinite(h_last):
                x = x + (denoised - old) * (0.5 * gain * h / h_last)
            if eh > 0.0:
                x = x + src.like(x) * (s[i + 1] * math.sqrt(-math.expm1(-2.0 * eh)))
            h_last = h
        old = denoised
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x
