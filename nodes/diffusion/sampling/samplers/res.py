"""RES multistep: the second-order multistep exponential integrator of Zhang, Song & Chen 2023
("Improved Order Analysis and Design of Exponential Integrator for Diffusion Models", arXiv 2308.02157).

In t = −log σ the ODE ``dx/dσ = (x − D)/σ`` reads ``dx/dt = D − x``, solved exactly by
``x(t+h) = e^{−h}·x(t) + ∫₀ʰ e^{−(h−τ)}·D(t+τ) dτ``. Replacing D by the line through the current and
the previous prediction, ``D(t+τ) ≈ D_i + τ·(D_i − D_{i−1})/(t_i − t_{i−1})``, and integrating exactly
with ∫₀ʰ e^{−(h−τ)} dτ = h·φ₁(−h) and ∫₀ʰ e^{−(h−τ)}·τ dτ = h²·φ₂(−h) gives

    x' = e^{−h}·x + h·[(φ₁ + φ₂/c)·D_i − (φ₂/c)·D_{i−1}],   c = (t_i − t_{i−1})/h,

with φ₁(z) = (e^z − 1)/z and φ₂(z) = (φ₁(z) − 1)/z. DPM-Solver++(2M) is the same idea with the
φ₂ term approximated (weights (1 − e^{−h})·(1 ± 1/(2r))); RES keeps the exact weights, which is what
the paper shows satisfies the order conditions for any step ratio. The first step, and any step to
σ = 0, is the exact first-order step. Z-Image Turbo's reference workflow uses it (``res_multistep``).

``res_multistep_ancestral`` takes the same step to σ_down and adds the ancestral noise
(``noise_process.ancestral_step``). The previous prediction is then placed one *deterministic* step
back: c = (t_down,i−1 − t_{i−1})/h measures how far the ODE carried the sample after it (the fresh
noise moves the sample sideways, not along the ODE). Fitting the line at the noise levels instead
(c = (t_i − t_{i−1})/h, which is shorter) extrapolates the jump the noise causes in D and inflates
the variance several-fold on the Gaussian test. With η = 0 both choices are the same.
"""

from __future__ import annotations

import math

from torch import Tensor

from ..model_sampling import Denoiser
from ..noise_process import VE, NoiseProcess, ancestral_step
from ._common import Callback, StepNoise, cfgpp_start, report, require_noise, sigma_list


def phi1(z: float) -> float:
    """(e^z − 1)/z, with its Taylor series near 0 where the quotient loses digits."""
    if abs(z) < 1e-4:
        return 1.0 + z / 2.0 + z * z / 6.0
    return math.expm1(z) / z


def phi2(z: float) -> float:
    """(φ₁(z) − 1)/z, with its Taylor series near 0."""
    if abs(z) < 1e-3:
        return 0.5 + z / 6.0 + z * z / 24.0
    return (phi1(z) - 1.0) / z


def _res_multistep(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    noise: StepNoise | None,
    callback: Callback | None,
    process: NoiseProcess,
    eta: float,
    cfg_pp: bool = False,
) -> Tensor:
    s = sigma_list(sigmas)
    n = len(s) - 1
    # (t, t_down, D): where the previous prediction was made and where its deterministic step ended
    prev: tuple[float, float, Tensor] | None = None
    for i in range(n):
        denoised, x = cfgpp_start(denoiser, x, s[i], cfg_pp)
        step = ancestral_step(process, s[i], s[i + 1], eta)
        t = -math.log(s[i])
        if step.down == 0.0:
            x = denoised
        elif prev is None:
            ratio = step.down / s[i]
            x = x * ratio + denoised * (1.0 - ratio)
        else:
            h = -math.log(step.down) - t
            c = (prev[1] - prev[0]) / h
            p1, p2 = phi1(-h), phi2(-h)
            x = x * (step.down / s[i]) + (denoised * (p1 + p2 / c) - prev[2] * (p2 / c)) * h
        if step.up > 0.0:
            x = step.renoise(x, require_noise(noise, "res_multistep_ancestral").like(x))
        elif step.scale != 1.0:
            x = step.renoise(x, None)
        prev = (t, -math.log(step.down) if step.down > 0.0 else math.inf, denoised)
        report(callback, i, n, x, s[i], s[i + 1], denoised)
    return x


def sample_res_multistep(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    cfg_pp: bool = False,
) -> Tensor:
    """RES second-order multistep exponential integrator (Zhang, Song & Chen 2023), deterministic."""
    return _res_multistep(denoiser, x, sigmas, noise, callback, process, 0.0, cfg_pp)


def sample_res_multistep_ancestral(
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
    """RES multistep to σ_down plus ancestral noise σ_up (η = 1: DDPM's posterior noise)."""
    require_noise(noise, "res_multistep_ancestral")
    return _res_multistep(denoiser, x, sigmas, noise, callback, process, eta, cfg_pp)
