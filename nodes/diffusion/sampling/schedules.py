"""Noise schedules: which noise levels σ a sampler visits, from σ_max down to 0.

A schedule is a 1-D float32 tensor of ``steps + 1`` descending sigmas that ends in 0; sampler *i* moves
the sample from ``sigmas[i]`` to ``sigmas[i+1]``. Keeping schedules as plain tensors (k-diffusion style)
lets every sampler run on every schedule and makes img2img "start part-way down a longer schedule".

Names follow ComfyUI (``normal``, ``karras``, ``exponential``, ``sgm_uniform``, ``simple``,
``ddim_uniform``, ``beta``, ``linear_quadratic``, ``kl_optimal``) and each is built from the published
rule; ``linspace_diffusers`` reproduces diffusers' EulerDiscreteScheduler(timestep_spacing="linspace")
bit for bit, which differs from ``normal`` only in interpolating σ linearly rather than log-linearly
between table entries. The tabulated AYS and GITS schedules have their own nodes (see ``tabulated``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from .flow import FlowModelSampling
from .model_sampling import AnyModelSampling

ScheduleFn = Callable[[AnyModelSampling, int], Tensor]


def _finish(sigmas: np.ndarray | list[float] | Tensor) -> Tensor:
    """Append the terminal 0 and fix the dtype so every schedule has the same contract."""
    body = torch.as_tensor(np.asarray(sigmas, dtype=np.float64), dtype=torch.float64)
    return torch.cat([body, body.new_zeros(1)]).to(torch.float32)


def _check_steps(steps: int) -> None:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. 2022 (eq. 5): n sigmas uniform in σ^(1/ρ), plus the final 0.

    Model-independent so the KarrasScheduler node can take σ_min/σ_max/ρ directly. Computed in
    float64 (like diffusers' use_karras_sigmas) and returned as float32.
    """
    _check_steps(n)
    ramp = np.linspace(0.0, 1.0, n)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return _finish((hi + ramp * (lo - hi)) ** rho)


def exponential_sigmas(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """n sigmas uniform in log σ (equal ratios between neighbours), plus the final 0."""
    _check_steps(n)
    return _finish(np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), n)))


def karras(ms: AnyModelSampling, steps: int) -> Tensor:
    """Karras ρ=7 over the model's continuous [σ_min, σ_max]; concentrates steps at low noise."""
    return karras_sigmas(steps, ms.sigma_min, ms.sigma_max, 7.0)


def exponential(ms: AnyModelSampling, steps: int) -> Tensor:
    """Log-uniform sigmas over the model's [σ_min, σ_max]."""
    return exponential_sigmas(steps, ms.sigma_min, ms.sigma_max)


def _uniform_timesteps(ms: AnyModelSampling, count: int, keep: int) -> Tensor:
    """``count`` evenly spaced (fractional) timesteps from t(σ_max) to t(σ_min); keep the first ``keep``."""
    t_max = float(ms.timestep(ms.sigma_max))
    t_min = float(ms.timestep(ms.sigma_min))
    ts = torch.linspace(t_max, t_min, count, dtype=torch.float64)[:keep]
    return _finish(ms.sigma(ts.float()).double())


def normal(ms: AnyModelSampling, steps: int) -> Tensor:
    """ComfyUI "normal": ``steps`` uniform timesteps 999…0, σ by log-linear interpolation."""
    _check_steps(steps)
    return _uniform_timesteps(ms, steps, steps)


def sgm_uniform(ms: AnyModelSampling, steps: int) -> Tensor:
    """Stability "sgm" convention: steps+1 uniform timesteps 999…0, drop the last (t=0) one."""
    _check_steps(steps)
    return _uniform_timesteps(ms, steps + 1, steps)


def simple(ms: AnyModelSampling, steps: int) -> Tensor:
    """Walk the σ table from the top with stride n/steps (diffusers "trailing" spacing)."""
    _check_steps(steps)
    table = ms.sigmas.double()
    stride = len(table) / steps
    return _finish(torch.stack([table[-(1 + int(i * stride))] for i in range(steps)]))


def ddim_uniform(ms: AnyModelSampling, steps: int) -> Tensor:
    """Classic DDIM spacing: table indices 1, 1+c, 1+2c, … with c = ⌊n/steps⌋, descending.

    Exactly ``steps`` entries, which equals diffusers' "leading" spacing with steps_offset=1. ComfyUI
    walks until the end of the table instead, so for step counts that do not divide 1000 it runs a few
    extra steps; we keep the steps+1 contract.
    """
    _check_steps(steps)
    n = len(ms.sigmas)
    stride = max(n // steps, 1)
    idx = [min(1 + k * stride, n - 1) for k in range(steps)][::-1]
    return _finish(ms.sigmas.double()[idx])


def beta(ms: AnyModelSampling, steps: int, alpha: float = 0.6, beta_: float = 0.6) -> Tensor:
    """Beta-quantile timesteps (Lee et al. 2024, arXiv 2407.12173), read from the σ table.

    Puts more steps at both ends of the noise range. Consecutive duplicate timesteps (possible at
    large step counts) are dropped as ComfyUI does, so the result can be shorter than steps+1; a
    duplicate would otherwise be a zero-length step, which multistep solvers cannot divide by.
    """
    from scipy import stats

    _check_steps(steps)
    n = len(ms.sigmas)
    q = 1.0 - np.linspace(0.0, 1.0, steps, endpoint=False)
    ts = np.rint(stats.beta.ppf(q, alpha, beta_) * (n - 1)).astype(np.int64)
    keep = [int(t) for i, t in enumerate(ts) if i == 0 or t != ts[i - 1]]
    return _finish(ms.sigmas.double()[keep])


def linspace_diffusers(ms: AnyModelSampling, steps: int) -> Tensor:
    """The schedule of diffusers' default pipeline for this kind of model, bit for bit.

    Discrete (SD) models: EulerDiscreteScheduler(timestep_spacing="linspace"). Same timesteps as
    :func:`normal` but σ is interpolated *linearly* between table entries (numpy ``interp`` on the
    float32 table), which is what diffusers' default SD pipelines use. Quirk kept for parity: at
    steps=1 diffusers' ``linspace(0, 999, 1)`` is [0], so the single step starts at σ_min.

    Flow models: FlowMatchEulerDiscreteScheduler with the sigmas FluxPipeline and ZImagePipeline pass,
    ``linspace(1, 1/steps, steps)``, shifted by the model's shift (or FLUX's mu); see
    ``FlowModelSampling.diffusers_sigmas``. (StableDiffusion3Pipeline passes no sigmas and gets the
    scheduler's own spacing, which is ComfyUI's ``normal`` for a flow model.)
    """
    _check_steps(steps)
    if isinstance(ms, FlowModelSampling):
        return ms.diffusers_sigmas(steps)
    n = ms.num_train_timesteps
    ts = np.linspace(0, n - 1, steps, dtype=np.float32)[::-1].copy()
    table = ms.sigmas.numpy()
    sig = np.interp(ts, np.arange(0, n), table)
    return torch.from_numpy(np.concatenate([sig, [0.0]]).astype(np.float32))


def kl_optimal(ms: AnyModelSampling, steps: int) -> Tensor:
    """KL-optimal schedule (Sabour, Fidler & Kreis 2024, "Align Your Steps", app.: the schedule that
    minimises the KL bound for a Gaussian data model): uniform in arctan σ from σ_max to σ_min."""
    _check_steps(steps)
    if steps == 1:
        return _finish([ms.sigma_max])
    frac = np.linspace(0.0, 1.0, steps)
    return _finish(np.tan(frac * math.atan(ms.sigma_min) + (1.0 - frac) * math.atan(ms.sigma_max)))


def linear_quadratic(ms: AnyModelSampling, steps: int, threshold_noise: float = 0.025) -> Tensor:
    """Mochi's linear-quadratic schedule (Genmo 2024), scaled by σ_max.

    In s = 1 − σ/σ_max: the first ⌊steps/2⌋ steps rise linearly to ``threshold_noise``; the rest follow the
    quadratic that continues that line with the same slope and reaches s = 1 (σ = 0) at the last step.
    """
    _check_steps(steps)
    if steps == 1:
        return _finish([ms.sigma_max])
    n_lin = steps // 2
    slope = threshold_noise / n_lin
    # s(i) = threshold + slope·(i − L) + a·(i − L)² for i ≥ L, with s(steps) = 1
    span = steps - n_lin
    a = (1.0 - threshold_noise - slope * span) / (span * span)
    s = [slope * i if i < n_lin else threshold_noise + slope * (i - n_lin) + a * (i - n_lin) ** 2 for i in range(steps)]
    return _finish([(1.0 - v) * ms.sigma_max for v in s])


SCHEDULERS: dict[str, ScheduleFn] = {
    "normal": normal,
    "karras": karras,
    "exponential": exponential,
    "sgm_uniform": sgm_uniform,
    "simple": simple,
    "ddim_uniform": ddim_uniform,
    "beta": beta,
    "linspace_diffusers": linspace_diffusers,
    "linear_quadratic": linear_quadratic,
    "kl_optimal": kl_optimal,
}


def sigmas_for(
    ms: AnyModelSampling,
    scheduler: str,
    steps: int,
    denoise: float = 1.0,
    *,
    discard_penultimate: bool = False,
) -> Tensor:
    """Schedule for a KSampler-style run, with ComfyUI's denoise < 1 rule.

    denoise < 1 builds the schedule for ⌊steps/denoise⌋ steps and keeps its last steps+1 sigmas, so the
    number of model calls stays ``steps`` and the start level is a point *on* the longer schedule;
    denoise <= 0 gives an empty tensor (the sampler then returns its input unchanged).
    ``discard_penultimate`` reproduces ComfyUI's treatment of dpm_2/dpm_2_ancestral/uni_pc(_bh2)
    (schedule one step longer, drop the second-to-last sigma); see
    ``samplers.DISCARD_PENULTIMATE_SIGMA_SAMPLERS``.
    """
    try:
        fn = SCHEDULERS[scheduler]
    except KeyError:
        raise ValueError(f"unknown scheduler {scheduler!r}; known: {sorted(SCHEDULERS)}") from None
    _check_steps(steps)
    if denoise <= 0.0:
        return torch.zeros(0, dtype=torch.float32)

    def build(n: int) -> Tensor:
        if not discard_penultimate:
            return fn(ms, n)
        longer = fn(ms, n + 1)
        return torch.cat([longer[:-2], longer[-1:]])

    if denoise >= 0.9999:
        return build(steps)
    return build(int(steps / denoise))[-(steps + 1) :]
