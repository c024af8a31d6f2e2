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


def sample_heunpp2(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
) -> Tensor:
    """Heun++ ("heunpp2"; from the A1111 extension sd-webui-sampler-heunpp, carried in k-diffusion forks
    and ComfyUI; no paper): a three-stage explicit Runge-Kutta step whose extra slopes get small weights.

    For the step σ_i → σ_{i+1} (with h = σ_{i+1} − σ_i) the slopes d = (x − D)/σ are taken along Euler
    predictions: d₁ at (x, σ_i); d₂ at x₂ = x + d₁·h, σ_{i+1}; and, when a step follows, d₃ at
    x₃ = x₂ + d₂·(σ_{i+2} − σ_{i+1}), σ_{i+2} (the *next* step's end). The step is x + h·Σ wₖ·dₖ with

    * three stages: w₂ = σ_{i+1}/(3σ₀), w₃ = σ_{i+2}/(3σ₀), w₁ = 1 − w₂ − w₃;
    * two stages (the step before the last, where σ_{i+2} is the schedule's end): w₂ = σ_{i+1}/(2σ₀),
      w₁ = 1 − w₂ — Heun's average when σ_{i+1} = σ₀, leaning on d₁ more as σ falls;
    * one stage on the last step: Euler (a slope at the end σ, usually 0, cannot be evaluated).

    σ₀ is the first σ of the given schedule. The weights sum to 1, so the method is consistent, but they
    are not the ones that cancel the h² error term (w₂ = ½ for two stages), so it converges at first
    order, like Euler, with a smaller constant early in the schedule where the later slopes weigh most.
    """
    s = sigma_list(sigmas)
    n = len(s) - 1
    end = s[-1]
    for i in range(n):
        denoised = call(denoiser, x, s[i])
        d = to_d(x, denoised, s[i])
        h = s[i + 1] - s[i]
        if s[i + 1] != end:
            x_2 = x + d * h
            d_2 = to_d(x_2, call(denoiser, x_2, s[i + 1]), s[i + 1])
            if s[i + 2] == end:
                w_2 = s[i + 1] / (2.0 * s[0])
                d = d * (1.0 - w_2) + d_2 * w_2
            else:
                x_3 = x_2 + d_2 * (s[i + 2] - s[i + 1])
                d_3 = to_d(x_3, call(denoiser, x_3, s[i + 2]), s[i + 2])
                w_2, w_3 = s[i + 1] / (3.0 * s[0]), s[i + 2] / (3.0 * s[0])
                d = d * (1.0 - w_2 - w_3) + d_2 * w_2 + d_3 * w_3
        x = x + d * h
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
