"""Karras-style ODE/ancestral samplers working directly on dx/dσ = (x − D)/σ.

Euler and Heun are Karras et al. 2022 ("Elucidating the Design Space of Diffusion-Based Generative
Models") Algorithm 1 without churn; dpm_2 is the same paper's DPM-Solver-2-like variant (midpoint in
log σ); the ``_ancestral`` versions take the deterministic step to σ_down and add fresh noise of std
σ_up (see ``noise_process.ancestral_step``, which also rescales the data for flow models). A step
to σ = 0 is always a plain Euler step (which lands exactly on D), because a second evaluation at
σ = 0 would divide by zero.
"""

from __future__ import annotations

import math

from torch import Tensor

from ..model_sampling import Denoiser
from ..noise_process import VE, NoiseProcess, ancestral_step
from ._common import Callback, StepNoise, call, cfgpp_start, report, require_noise, sigma_list, to_d


def sample_euler(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    cfg_pp: bool = False,
) -> Tensor:
    """Euler method on the probability-flow ODE (Karras et al. 2022, Alg. 1 with first-order step).
    ``cfg_pp``: CFG++'s step x' = D + σ'·ε̂_uncond (see ``cfgpp_start``)."""
    s = sigma_list(sigmas)
    n = len(s) - 1
    for i in range(n):
        denoised, x = cfgpp_start(denoiser, x, s[i], cfg_pp)
        x = x + to_d(x, denoised, s[i]) * (s[i + 1] - s[i])
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x


def sample_euler_ancestral(
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
    """Ancestral Euler: Euler to σ_down, then add noise σ_up (DDPM-style ancestral sampling in σ)."""
    src = require_noise(noise, "euler_ancestral")
    s = sigma_list(sigmas)
    n = len(s) - 1
    for i in range(n):
        denoised, x = cfgpp_start(denoiser, x, s[i], cfg_pp)
        step = ancestral_step(process, s[i], s[i + 1], eta)
        x = x + to_d(x, denoised, s[i]) * (step.down - s[i])
        x = step.renoise(x, src.like(x) if step.up > 0.0 else None)
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x


def sample_heun(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
) -> Tensor:
    """Heun's 2nd-order method (Karras et al. 2022, Alg. 1, deterministic); Euler on the last step."""
    s = sigma_list(sigmas)
    n = len(s) - 1
    for i in range(n):
        denoised = call(denoiser, x, s[i])
        d = to_d(x, denoised, s[i])
        dt = s[i + 1] - s[i]
        x_euler = x + d * dt
        if s[i + 1] == 0.0:
            x = x_euler
        else:
            d_next = to_d(x_euler, call(denoiser, x_euler, s[i + 1]), s[i + 1])
            x = x + (d + d_next) * (0.5 * dt)
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x


def _dpm2_step(denoiser: Denoiser, x: Tensor, d: Tensor, sigma: float, sigma_to: float) -> Tensor:
    """Midpoint step σ → σ_to evaluating the slope at the geometric mean of the two sigmas."""
    if sigma_to == 0.0:
        return x + d * (sigma_to - sigma)
    sigma_mid = math.exp(0.5 * (math.log(sigma) + math.log(sigma_to)))
    x_mid = x + d * (sigma_mid - sigma)
    d_mid = to_d(x_mid, call(denoiser, x_mid, sigma_mid), sigma_mid)
    return x + d_mid * (sigma_to - sigma)


def sample_dpm_2(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
) -> Tensor:
    """DPM-Solver-2 style midpoint method in log σ (Karras et al. 2022, sec. 3 / Lu et al. 2022)."""
    s = sigma_list(sigmas)
    n = len(s) - 1
    for i in range(n):
        denoised = call(denoiser, x, s[i])
        x = _dpm2_step(denoiser, x, to_d(x, denoised, s[i]), s[i], s[i + 1])
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x


def sample_dpm_2_ancestral(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    eta: float = 1.0,
) -> Tensor:
    """Ancestral DPM-2: midpoint step to σ_down, then fresh noise of std σ_up."""
    src = require_noise(noise, "dpm_2_ancestral")
    s = sigma_list(sigmas)
    n = len(s) - 1
    for i in range(n):
        denoised = call(denoiser, x, s[i])
        step = ancestral_step(process, s[i], s[i + 1], eta)
        x = _dpm2_step(denoiser, x, to_d(x, denoised, s[i]), s[i], step.down)
        x = step.renoise(x, src.like(x) if step.up > 0.0 else None)
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x
