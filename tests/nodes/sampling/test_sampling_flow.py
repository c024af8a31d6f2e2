"""Every sampler × schedule on a rectified-flow model, against closed forms.

Flow forward process: x = (1 − σ)·x0 + σ·ε, σ ∈ [0, 1]. For i.i.d. N(μ, s²) data x ~ N((1−σ)μ,
(1−σ)²s² + σ²) and the ideal denoiser is E[x0 | x] = μ + (1−σ)s²/((1−σ)²s² + σ²)·(x − (1−σ)μ), finite at
σ = 1 (where it is μ). The probability-flow ODE is solved exactly by
x(σ') = (1−σ')μ + (x(σ) − (1−σ)μ)·√((1−σ')²s² + σ'²)/√((1−σ)²s² + σ²).
With s = 0 (all data at μ) the denoiser is the constant μ and every correct step — deterministic or
ancestral — must land exactly on the marginal N((1−σ')μ, σ'²): a sharp check of the flow noise rule.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from nodes.diffusion.sampling import (
    FLOW,
    SAMPLERS,
    SCHEDULERS,
    STOCHASTIC_SAMPLERS,
    VE,
    FlowModelSampling,
    NoiseSource,
    sigmas_for,
    time_shift,
)
from nodes.diffusion.sampling.samplers import EVALS_PER_STEP
from nodes.diffusion.sampling.samplers.unipc import sample_uni_pc
from tests.nodes.sampling.test_sampling_gaussian import DETERMINISTIC_OPTIONS, base_name

MU, S = 0.3, 1.0
SD3 = FlowModelSampling(3.0)
FLUX = FlowModelSampling(mu=1.15, multiplier=1.0, num_timesteps=10000)
# ComfyUI's flow "normal" ends on shift(shift(1/N)) ≈ 0.009 (SD3) / 0.001 (FLUX) and ddim_uniform on
# table entry 1: a huge last λ-step that multistep solvers over-extrapolate; they get twice the steps.
# kl_optimal ends on σ_min itself (FLUX: 3e-4) after 0.027: the same kind of final step.
HARD = {"normal", "ddim_uniform", "kl_optimal"}

# Allowed |std/s − 1| per sampler (other schedules, HARD at double steps). Brackets: the worst value
# measured over SD3 (shift 3) and FLUX (mu 1.15, 10000-entry table) on exactly this set-up; bounds are
# ≈1.5× that + 1 %. The worst "other" values come from `exponential`, which is log-uniform down to
# FLUX's σ_min ≈ 3e-4 and so takes few steps at high noise. Convergence is checked separately below.
STD_TOL: dict[str, tuple[float, float]] = {
    "ddim": (0.25, 0.05),  # [15.5 %, 2.0 %]
    "dpm_2": (0.11, 0.04),  # [6.6 %, 1.8 %]
    "dpm_2_ancestral": (0.20, 0.04),  # [12.4 %, 1.9 %]
    "dpmpp_2m": (0.08, 0.08),  # [4.1 %, 4.2 %]
    "dpmpp_2m_sde": (0.11, 0.15),  # [6.0 %, 9.2 %]
    "dpmpp_2s_ancestral": (0.39, 0.05),  # [24.9 %, 2.1 %]
    "dpmpp_sde": (0.14, 0.03),  # [8.3 %, 1.3 %]
    "euler": (0.25, 0.05),  # [15.5 %, 2.0 %]
    "euler_ancestral": (0.33, 0.12),  # [21.0 %, 7.2 %]
    "heun": (0.09, 0.03),  # [5.0 %, 1.0 %]
    "heunpp2": (0.45, 0.05),  # first order, 10 steps; worst on FLUX `exponential` [29.1 %, 2.8 %]
    "lcm": (0.02, 0.02),  # [0.6 %, 0.1 %]
    "lms": (0.09, 0.03),  # [4.7 %, 1.1 %]
    "res_multistep": (0.09, 0.10),  # [4.7 %, 5.9 %]
    # multistep extrapolation across ancestral noise, worst on the HARD final step (→ 0.2 % at 300 steps)
    "res_multistep_ancestral": (0.22, 0.44),  # [13.4 %, 28.3 %]
    "uni_pc": (0.04, 0.05),  # [1.4 %, 2.2 %]
    "uni_pc_bh2": (0.03, 0.03),  # [1.1 %, 1.0 %]
    "ddpm": (0.33, 0.12),  # [21.0 %, 7.2 %]
    "ipndm": (0.06, 0.03),  # [3.3 %, 1.1 %]
    "ipndm_v": (0.08, 0.03),  # [4.7 %, 1.1 %]
    "deis": (0.08, 0.03),  # [4.5 %, 1.1 %]
    "gradient_estimation": (0.21, 0.07),  # [13.0 %, 4.3 %]
    "dpm_fast": (0.04, 0.03),  # [2.2 %, 1.2 %]
    # linear_quadratic (Mochi's) ends with a jump 0.124 → 0 that every sampler takes as x' = D: 10.5 %
    "dpm_adaptive": (0.16, 0.03),  # [10.5 %, 1.1 %]
    "seeds_2": (0.19, 0.04),  # 15 steps [12.1 %, 2.0 %]
    "seeds_3": (0.41, 0.04),  # 10 steps [26.6 %, 1.7 %]
    "er_sde": (0.18, 0.02),  # [11.5 %, 0.5 %]
    "sa_solver": (0.08, 0.30),  # [4.8 %, 19.0 %]
    # multistep extrapolation of noisy predictions across the HARD final step (see the VE test)
    "dpmpp_2m_sde_heun": (0.17, 0.38),  # [10.8 %, 24.6 %]
    "dpmpp_3m_sde": (0.16, 2.2),  # [10.6 % on linear_quadratic's final jump, 146.7 %]
    "sa_solver_pece": (0.36, 0.83),  # 15 steps [23.2 %, 54.3 %]
}


def _b(sigma: Tensor, x: Tensor) -> Tensor:
    return sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


def ideal_denoiser(x: Tensor, sigma: Tensor, s: float = S) -> Tensor:
    sg = _b(sigma, x)
    a = 1.0 - sg
    return MU + a * s * s / (a * a * s * s + sg * sg) * (x - a * MU)


def consistency_fn(x: Tensor, sigma: Tensor) -> Tensor:
    """The exact ODE end point (what a perfect consistency model predicts)."""
    sg = _b(sigma, x)
    a = 1.0 - sg
    return MU + S / torch.sqrt(a * a * S * S + sg * sg) * (x - a * MU)


def point_mass(x: Tensor, sigma: Tensor) -> Tensor:
    """Ideal denoiser when every data point is μ (s = 0)."""
    return torch.full_like(x, MU)


def start_sample(sigma0: float, s: float = S, dtype: torch.dtype = torch.float32, size: int = 8) -> Tensor:
    """Exact flow marginal at σ0: N((1−σ0)μ, (1−σ0)²s² + σ0²)."""
    z = torch.randn(64, 4, size, size, generator=torch.Generator().manual_seed(1234), dtype=dtype)
    a = 1.0 - sigma0
    return a * MU + z * math.sqrt(a * a * s * s + sigma0 * sigma0)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_step_lands_on_the_flow_marginal_for_point_mass_data(sampler: str) -> None:
    """Constant D: deterministic steps are exact and ancestral ones must re-noise to N((1−σ')μ, σ'²)."""
    sigmas = sigmas_for(SD3, "simple", 12)[:8]  # σ = 1 → ≈ 0.62, stopping with noise left
    end = float(sigmas[-1])
    x = start_sample(1.0, s=0.0, size=16)
    out = SAMPLERS[sampler](point_mass, x, sigmas, noise=NoiseSource(5), process=FLOW)
    if sampler in STOCHASTIC_SAMPLERS:
        assert abs(out.mean().item() - (1 - end) * MU) < 0.01
        assert abs(out.std().item() / end - 1.0) < 0.01  # 65536 samples: sampling error ≈ 0.3 %
    else:
        torch.testing.assert_close(out, (1 - end) * MU + x * end, atol=2e-6, rtol=0)  # x = z at σ = 1


def test_ve_noise_rule_on_a_flow_model_is_caught() -> None:
    """Control for the test above: VE re-noising (no data rescale) leaves the wrong marginal."""
    sigmas = sigmas_for(SD3, "simple", 12)[:8]
    end = float(sigmas[-1])
    x = start_sample(1.0, s=0.0, size=16)
    out = SAMPLERS["euler_ancestral"](point_mass, x, sigmas, noise=NoiseSource(5), process=VE)
    assert abs(out.std().item() / end - 1.0) > 0.05 or abs(out.mean().item() - (1 - end) * MU) > 0.05


@pytest.mark.parametrize("model", ["sd3", "flux"])
@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_recovers_gaussian_data(sampler: str, scheduler: str, model: str) -> None:
    ms = SD3 if model == "sd3" else FLUX
    steps = (30 // EVALS_PER_STEP[sampler]) * (2 if scheduler in HARD else 1)
    sigmas = sigmas_for(ms, scheduler, steps)
    x = start_sample(float(sigmas[0]))
    denoiser = consistency_fn if sampler == "lcm" else ideal_denoiser
    out = SAMPLERS[sampler](denoiser, x, sigmas, noise=NoiseSource(7), process=FLOW)
    assert torch.isfinite(out).all()
    assert abs(out.mean().item() - MU) < 0.03 * S  # measured ≤ 1.8 %
    assert abs(out.std().item() / S - 1.0) < STD_TOL[base_name(sampler)][1 if scheduler in HARD else 0]


def _flow_error(sampler: str, steps: int, **options: float) -> float:
    """Max error vs the exact ODE solution from pure noise (σ = 1) to σ = shift(0.05)."""
    sigmas = time_shift(3.0, torch.linspace(1.0, 0.05, steps + 1, dtype=torch.float64))
    assert isinstance(sigmas, Tensor)
    end = float(sigmas[-1])
    x = start_sample(1.0, dtype=torch.float64)
    exact = (1 - end) * MU + x * math.sqrt(S * S * (1 - end) ** 2 + end * end)
    if sampler == "uni_pc_full_order":
        out = sample_uni_pc(ideal_denoiser, x, sigmas, order=3, lower_order_final=False, process=FLOW)
    else:
        out = SAMPLERS[sampler](ideal_denoiser, x, sigmas, process=FLOW, **options)
    return (out - exact).abs().max().item()


@pytest.mark.parametrize(
    ("sampler", "min_order"),
    [
        ("euler", 0.8),  # measured 0.98
        ("ddim", 0.8),
        ("heun", 1.8),  # 2.06
        # first order once the steps are small: 1.51 at 20 → 40, falling to 1.15 at 160 → 320 (the early
        # steps from σ₀ = 1, where its three slopes weigh alike, shrink faster than h)
        ("heunpp2", 0.8),
        ("dpm_2", 1.7),  # 1.93
        ("dpmpp_2m", 1.8),  # 2.07
        ("res_multistep", 1.8),  # 2.12
        ("lms", 2.8),  # 3.15 (warm-up steps are lower order)
        ("uni_pc_full_order", 3.0),  # 3.36
        ("ipndm", 1.3),  # uniform-step weights on a non-uniform grid: 1.45
        ("ipndm_v", 2.8),  # 3.15
        ("deis", 2.8),  # 3.46
        ("gradient_estimation", 0.7),  # 0.86
        ("seeds_2", 1.8),  # 2.04
        # λ-stages need a finite λ: the first step from σ = 1 is first order, which caps the order at 2
        ("seeds_3", 1.6),  # 1.82
        ("dpmpp_2m_sde_heun", 1.8),  # 2.00
        ("dpmpp_3m_sde", 1.8),  # 3.85
        ("sa_solver", 1.8),  # 2.00 (same first step)
        ("sa_solver_pece", 2.3),  # 2.64
    ],
)
def test_deterministic_solvers_converge_on_the_flow_ode(sampler: str, min_order: float) -> None:
    """The flow ODE in σ has the VE form dx/dσ = (x − D)/σ, so every solver keeps its order, including
    the first step from σ = 1 where the sample holds no data at all."""
    options = DETERMINISTIC_OPTIONS.get(sampler, {})
    coarse, fine = _flow_error(sampler, 20, **options), _flow_error(sampler, 40, **options)
    assert math.log2(coarse / fine) > min_order


@pytest.mark.parametrize(
    "sampler",
    [
        "euler_ancestral",
        "dpmpp_2m_sde",
        "res_multistep_ancestral",
        "ddpm",
        "seeds_2",
        "seeds_3",
        "er_sde",
        "dpmpp_2m_sde_heun",
        "dpmpp_3m_sde",
        "sa_solver",  # (sa_solver_pece is already within sampling error, 0.04 %, at 30 steps here)
    ],
)
def test_ancestral_error_vanishes_with_more_steps(sampler: str) -> None:
    """Ancestral error comes from plugging in E[x0|x] as if x0 were known; it must shrink with steps
    (a wrong noise rule would leave a fixed bias)."""
    errors = []
    for steps in (30, 300):
        sigmas = sigmas_for(SD3, "simple", steps)
        out = SAMPLERS[sampler](ideal_denoiser, start_sample(1.0), sigmas, noise=NoiseSource(7), process=FLOW)
        errors.append(abs(out.std().item() / S - 1.0))
    assert errors[1] < 0.025 and errors[1] < errors[0]
