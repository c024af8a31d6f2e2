"""DDIM and LCM: samplers that jump through the x0 prediction rather than following a slope.

DDIM (Song et al. 2021) writes the next sample as ``D + σ'·ε̂`` with ε̂ = (x − D)/σ the implied noise;
with η = 0 this is algebraically the Euler step of the probability-flow ODE, and with η > 0 it equals
ancestral sampling with the same η (the DDIM σ_t(η) in VE units is ``ancestral_split``'s σ_up).
LCM (Luo et al. 2023, "Latent Consistency Models", multistep sampling, Alg. 1) discards the old sample
entirely: predict x0, then re-noise it with *fresh* noise to the next level (for a flow model:
``(1 − σ')·x0 + σ'·z``).
"""

from __future__ import annotations

from torch import Tensor

from ..model_sampling import Denoiser
from ..noise_process import VE, NoiseProcess, ancestral_step
from ._common import Callback, StepNoise, call, report, require_noise, sigma_list


def sample_ddim(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    eta: float = 0.0,
) -> Tensor:
    """DDIM (Song et al. 2021) in σ units: x' = D + √(σ'² − σ_up²)·ε̂ + σ_up·z; η = 0 by default."""
    src = require_noise(noise, "ddim") if eta > 0.0 else None
    s = sigma_list(sigmas)
    n = len(s) - 1
    for i in range(n):
        denoised = call(denoiser, x, s[i])
        step = ancestral_step(process, s[i], s[i + 1], eta)
        eps = (x - denoised) / s[i]
        x = denoised + eps * step.down
        x = step.renoise(x, src.like(x) if step.up > 0.0 and src is not None else None)
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x


def sample_lcm(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
) -> Tensor:
    """LCM multistep consistency sampling (Luo et al. 2023, Alg. 1): x0 prediction, then fresh noise σ'."""
    src = require_noise(noise, "lcm")
    s = sigma_list(sigmas)
    n = len(s) - 1
    for i in range(n):
        denoised = call(denoiser, x, s[i])
        x = denoised
        if s[i + 1] > 0.0:
            x = process.noised(denoised, src.like(x), s[i + 1])
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x


def sample_ddpm(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020): draw x' from the posterior q(x_σ' | x_σ, x0 = D).

    Written for any ``x_σ = α·x0 + σ·ε``: x_σ = a·x_σ' + noise of variance v = σ² − a²σ'² with
    a = α/α', so by Gaussian conditioning the posterior has mean α'·D + (a·σ'²/σ²)·(x − α·D) and variance
    σ'²·v/σ². (For VE this equals ancestral Euler with η = 1, as DDIM's η = 1 equals DDPM.)
    """
    src = require_noise(noise, "ddpm")
    s = sigma_list(sigmas)
    n = len(s) - 1
    for i in range(n):
        denoised = call(denoiser, x, s[i])
        sigma, sigma_next = s[i], s[i + 1]
        if sigma_next == 0.0:
            x = denoised
        else:
            alpha, alpha_next = process.alpha(sigma), process.alpha(sigma_next)
            a = alpha / alpha_next
            var = max(sigma * sigma - a * a * sigma_next * sigma_next, 0.0)
            k = a * sigma_next * sigma_next / (sigma * sigma)
            x = denoised * alpha_next + (x - denoised * alpha) * k
            x = x + src.like(x) * (sigma_next * (var**0.5) / sigma)
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x
