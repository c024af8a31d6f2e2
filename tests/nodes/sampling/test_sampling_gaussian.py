"""Every sampler × every schedule against a problem with a known answer.

If the data are i.i.d. N(μ, s²) per element, the ideal denoiser is exact in closed form: with
x = x0 + σ·ε, E[x0 | x] = μ + s²/(s²+σ²)·(x − μ). Sampling with it must reproduce N(μ, s²), and the
probability-flow ODE has the exact solution x(σ') = μ + (x(σ) − μ)·√(s²+σ'²)/√(s²+σ²), which lets us
measure the convergence order of the deterministic solvers.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from nodes.diffusion.sampling import SAMPLERS, SCHEDULERS, ModelSampling, NoiseSource, sigmas_for
from nodes.diffusion.sampling.samplers import EVALS_PER_STEP, GPU_ALIASES
from nodes.diffusion.sampling.samplers.unipc import sample_uni_pc

MU, S = 0.3, 1.0
MS = ModelSampling()
# Schedules whose last non-zero step is a large jump in log σ (σ ≈ 0.15 → 0.029 at 30 steps, because the
# table's σ(t) falls like √t near t = 0 and these space t, not σ, uniformly).
HARD_FINAL_STEP = {"normal", "linspace_diffusers", "ddim_uniform"}

# Allowed |std/s − 1| per sampler as (other schedules, HARD_FINAL_STEP schedules). The sampling error of a
# 16384-element std is ≈0.6 %; the rest is discretisation error. Brackets: the worst value measured on
# exactly this set-up; bounds are ≈1.5× that. These errors shrink with more steps (the convergence test
# below checks the deterministic ones), and for dpmpp_2m/dpmpp_2m_sde/uni_pc the same trajectories come
# out of diffusers (test_sampling_parity.py), so a large bound there documents the algorithm, not a bug.
STD_TOL: dict[str, tuple[float, float]] = {
    "lms": (0.02, 0.02),  # 4th-order multistep [1.1 %, 1.1 %]
    "heun": (0.06, 0.06),  # 2nd order, 15 steps [3.9 %, 2.1 %]
    # first order (its weights are not Heun's ½) and 3 calls a step: 10 steps [12.2 %, 10.7 %]
    "heunpp2": (0.19, 0.17),
    "dpm_2": (0.05, 0.05),  # 2nd order, 15 steps [2.4 %, 3.2 %]
    "euler": (0.07, 0.07),  # 1st order: error ∝ 1/steps [4.2 %, 3.5 %]
    "ddim": (0.07, 0.07),  # η = 0 DDIM is the Euler step [4.2 %, 3.5 %]
    # Multistep solvers extrapolate D over the step ratio r = h_prev/h; on the big final λ-step of the
    # HARD_FINAL_STEP schedules r ≈ 0.2 and the extrapolation overshoots (more so with bh1's B(h) = h).
    "dpmpp_2m": (0.03, 0.07),  # [1.6 %, 4.4 %]
    "res_multistep": (0.03, 0.09),  # [1.8 %, 5.8 %]
    "uni_pc_bh2": (0.03, 0.06),  # [1.1 %, 3.4 %]
    "uni_pc": (0.03, 0.11),  # [1.1 %, 7.6 %]
    "dpmpp_2m_sde": (0.04, 0.18),  # [2.0 %, 13.3 %]
    # Ancestral/SDE steps plug in D = E[x0|x] as if x0 were known, ignoring its posterior spread; the
    # missing variance vanishes only as steps → ∞.
    "dpm_2_ancestral": (0.09, 0.09),  # [5.8 %, 5.6 %]
    "dpmpp_2s_ancestral": (0.07, 0.07),  # [4.5 %, 4.4 %]
    "dpmpp_sde": (0.05, 0.05),  # [3.3 %, 2.9 %]
    "euler_ancestral": (0.14, 0.14),  # 1st order *and* ancestral, the worst combination [9.6 %, 8.1 %]
    "lcm": (0.03, 0.03),  # exact given a perfect consistency function: sampling error only [0.4 %]
    # multistep extrapolation across the fresh noise, worst on the big final step [3.1 %, 25.2 %]
    "res_multistep_ancestral": (0.05, 0.38),
    "ddpm": (0.14, 0.14),  # the DDPM posterior is ancestral Euler's step [9.6 %, 8.1 %]
    "ipndm": (0.02, 0.02),  # 4th-order AB with uniform-step weights [1.3 %, 1.2 %]
    "ipndm_v": (0.02, 0.02),  # [1.1 %, 1.1 %]
    "deis": (0.02, 0.02),  # [1.1 %, 1.0 %]
    "gradient_estimation": (0.09, 0.07),  # first order [5.6 %, 4.5 %]
    "dpm_fast": (0.02, 0.02),  # [1.1 %, 1.1 %]
    "dpm_adaptive": (0.06, 0.06),  # its own steps, rtol 0.05 [3.9 %, 3.9 %]
    "seeds_2": (0.06, 0.05),  # 15 steps [3.6 %, 2.8 %]
    "seeds_3": (0.08, 0.03),  # 10 steps [4.8 %, 1.3 %]
    "er_sde": (0.02, 0.02),  # [0.9 %, 1.2 %]
    "sa_solver": (0.02, 0.02),  # [1.0 %, 1.0 %]
    # Multistep SDE solvers extrapolate the noise carried by earlier predictions across the big final
    # step (ratio ≈ 0.2): quadratic ones the most. It vanishes with steps (test below).
    "dpmpp_2m_sde_heun": (0.05, 0.38),  # [3.1 %, 25.2 %]
    "dpmpp_3m_sde": (0.035, 1.2),  # [2.3 %, 80.8 %]
    "sa_solver_pece": (0.06, 0.93),  # 15 steps [3.6 %, 61.6 %]
}


def base_name(sampler: str) -> str:
    """The sampler whose tolerance applies: a *_gpu alias is its CPU sampler, and a CFG++ variant with a
    denoiser that has no unconditional prediction (D_u = D) is exactly its base sampler."""
    return GPU_ALIASES.get(sampler, sampler).removesuffix("_cfg_pp")


def test_cfgpp_variants_without_guidance_are_their_base_samplers() -> None:
    sigmas = sigmas_for(MS, "karras", 8)
    x = start_sample(float(sigmas[0]))
    for name in [n for n in SAMPLERS if n.endswith("_cfg_pp")]:
        a = SAMPLERS[name](ideal_denoiser, x, sigmas, noise=NoiseSource(3))
        b = SAMPLERS[base_name(name)](ideal_denoiser, x, sigmas, noise=NoiseSource(3))
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=name)


def ideal_denoiser(x: Tensor, sigma: Tensor) -> Tensor:
    s2 = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype) ** 2
    return MU + S * S / (S * S + s2) * (x - MU)


def consistency_fn(x: Tensor, sigma: Tensor) -> Tensor:
    """The exact ODE end point: what a perfect consistency model (LCM) predicts instead of E[x0|x]."""
    s2 = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype) ** 2
    return MU + S / torch.sqrt(S * S + s2) * (x - MU)


def start_sample(sigma0: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """Exact marginal at σ0: N(μ, s² + σ0²). (σ0·noise alone would miss the data's mean and variance.)"""
    z = torch.randn(64, 4, 8, 8, generator=torch.Generator().manual_seed(1234), dtype=dtype)
    return MU + z * math.sqrt(S * S + sigma0**2)


#: Mochi's linear_quadratic is a flow-model schedule: on a VE model it spends half the steps between
#: σ_max and 0.975·σ_max and ends with a jump from σ ≈ 1.8 (at 30 steps) straight to 0, which no sampler can make
#: exact (test_sampling_schedules checks its values; the flow tests run it through every sampler).
VE_SCHEDULERS = sorted(set(SCHEDULERS) - {"linear_quadratic"})


@pytest.mark.parametrize("scheduler", VE_SCHEDULERS)
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_recovers_gaussian_data(sampler: str, scheduler: str) -> None:
    steps = 30 // EVALS_PER_STEP[sampler]  # the same budget of 30 model calls
    sigmas = sigmas_for(MS, scheduler, steps)
    x = start_sample(float(sigmas[0]))
    denoiser = consistency_fn if sampler == "lcm" else ideal_denoiser
    out = SAMPLERS[sampler](denoiser, x, sigmas, noise=NoiseSource(7))
    assert torch.isfinite(out).all()
    # Every update is affine in x − μ, so the mean can only drift through a bug; measured ≤0.5 % (noise).
    assert abs(out.mean().item() - MU) < 0.02 * S
    tol = STD_TOL[base_name(sampler)][1 if scheduler in HARD_FINAL_STEP else 0]
    assert abs(out.std().item() / S - 1.0) < tol


def _flow_error(sampler: str, steps: int, **options: float) -> float:
    """Max error vs the exact ODE solution on a log-uniform grid 10 → 0.05 (no σ=0 step)."""
    sigmas = torch.exp(torch.linspace(math.log(10.0), math.log(0.05), steps + 1, dtype=torch.float64))
    x = start_sample(10.0, torch.float64)
    exact = MU + (x - MU) * math.sqrt(S * S + 0.05**2) / math.sqrt(S * S + 100.0)
    if sampler == "uni_pc_full_order":
        out = sample_uni_pc(ideal_denoiser, x, sigmas, order=3, lower_order_final=False)
    else:
        out = SAMPLERS[sampler](ideal_denoiser, x, sigmas, **options)
    return (out - exact).abs().max().item()


@pytest.mark.parametrize(
    ("sampler", "min_order"),
    [
        ("euler", 0.8),
        ("ddim", 0.8),
        ("heun", 1.8),
        # Heun++'s slope weights σ_{i+1}/(3σ₀) do not cancel the h² term: first order, measured 0.99
        # (0.97 at 10 → 20, 0.997 at 80 → 160), with ≈ 0.73× Euler's error at equal steps
        ("heunpp2", 0.8),
        ("dpm_2", 1.8),
        ("dpmpp_2m", 1.8),
        ("res_multistep", 1.8),  # measured 2.02
        # LMS is 4th order but starts with Euler/2nd/3rd-order warm-up steps; measured 3.3 at 20→40.
        ("lms", 3.0),
        # UniPC-3 with its corrector is 4th order once the final steps keep full order; measured 3.5.
        ("uni_pc_full_order", 3.0),
        ("euler_cfg_pp", 0.8),  # without an unconditional prediction: Euler
        # iPNDM's weights assume equal steps, so on this log-uniform grid it keeps only order ≈ 2 (1.95)
        ("ipndm", 1.7),
        ("ipndm_v", 3.0),  # 3.23
        ("deis", 2.4),  # order 3 with two lower-order warm-up steps, 2.64
        ("gradient_estimation", 0.7),  # first order, 0.82
        ("seeds_2", 1.8),  # at η = 0 (test options below): DPM-Solver++(2S), 2.00
        ("seeds_3", 2.6),  # DPM-Solver++(3S), 2.80
        ("dpmpp_2m_sde_heun", 1.8),  # η = 0, 2.02
        ("sa_solver", 2.5),  # τ = 0: Adams predictor 3 / corrector 4 with warm-up, 2.77
        ("sa_solver_pece", 2.8),  # 3.31
    ],
)
def test_deterministic_solvers_converge_at_their_order(sampler: str, min_order: float) -> None:
    """Halving the step must shrink the error by ≥ 2^order: catches a wrong coefficient that the
    moment test above (loose by design) would let through. SDE samplers run with their noise off."""
    options = DETERMINISTIC_OPTIONS.get(sampler, {})
    coarse, fine = _flow_error(sampler, 20, **options), _flow_error(sampler, 40, **options)
    assert math.log2(coarse / fine) > min_order


#: The options that turn an SDE sampler into its ODE solver (η or τ = 0).
DETERMINISTIC_OPTIONS: dict[str, dict[str, float]] = {
    "seeds_2": {"eta": 0.0},
    "seeds_3": {"eta": 0.0},
    "dpmpp_2m_sde_heun": {"eta": 0.0},
    "dpmpp_3m_sde": {"eta": 0.0},
    "sa_solver": {"tau": 0.0},
    "sa_solver_pece": {"tau": 0.0},
}


def test_dpmpp_3m_converges_at_second_order_after_its_first_order_start() -> None:
    """A multistep method that starts with a first-order step is second order overall; the third-order
    steps show as a much smaller error than dpmpp_2m's (measured 2.0 at 40 → 80; 1.4e-3 vs 5.0e-3 at 40)."""
    coarse, fine = _flow_error("dpmpp_3m_sde", 40, eta=0.0), _flow_error("dpmpp_3m_sde", 80, eta=0.0)
    assert math.log2(coarse / fine) > 1.8
    assert coarse < 0.5 * _flow_error("dpmpp_2m", 40)


def test_dpm_fast_is_third_order() -> None:
    """DPM-Solver-fast ends with a step of order nfe mod 3, so compare budgets with the same pattern
    (20 and 80 calls: six/twenty-six third-order steps and a second-order one); measured 3.2."""
    coarse, fine = _flow_error("dpm_fast", 20), _flow_error("dpm_fast", 80)
    assert math.log2(coarse / fine) / 2.0 > 2.7


def test_heunpp2_takes_fewer_stages_at_the_end_of_the_schedule() -> None:
    """Its last step is Euler's and, on a one-step schedule, the whole run is; with two steps the first
    is Heun's trapezoid with d₂ weighted σ₁/(2σ₀) (here checked against that formula, not against heun)."""
    sigmas = torch.tensor([4.0, 1.0])
    x = start_sample(4.0)
    torch.testing.assert_close(
        SAMPLERS["heunpp2"](ideal_denoiser, x, sigmas), SAMPLERS["euler"](ideal_denoiser, x, sigmas)
    )
    sigmas = torch.tensor([4.0, 1.0, 0.0])
    d_1 = (x - ideal_denoiser(x, sigmas[:1])) / 4.0
    x_2 = x - 3.0 * d_1
    d_2 = (x_2 - ideal_denoiser(x_2, sigmas[1:2])) / 1.0
    w_2 = 1.0 / (2 * 4.0)
    x_1 = x - 3.0 * ((1 - w_2) * d_1 + w_2 * d_2)
    want = ideal_denoiser(x_1, sigmas[1:2])  # the Euler step to σ = 0 lands on D
    torch.testing.assert_close(SAMPLERS["heunpp2"](ideal_denoiser, x, sigmas), want)
    assert not torch.allclose(SAMPLERS["heun"](ideal_denoiser, x, sigmas), want, atol=1e-3)


def test_dpm_adaptive_meets_its_tolerance() -> None:
    """The adaptive solver's error follows its tolerance, not the schedule it is given (measured: 5.9e-2
    at the default rtol 0.05, 2.5e-3 at rtol 5e-4, with 6 and 16 steps)."""
    loose = _flow_error("dpm_adaptive", 5)
    tight = _flow_error("dpm_adaptive", 5, rtol=0.0005, atol=0.00005)
    assert tight < loose / 10.0 and loose < 0.1


def test_ddpm_is_ancestral_euler() -> None:
    """DDPM's posterior step with x0 = D is ancestral Euler with η = 1 (as DDIM with η = 1 is DDPM)."""
    sigmas = sigmas_for(MS, "karras", 12)
    x = start_sample(float(sigmas[0]))
    ddpm = SAMPLERS["ddpm"](ideal_denoiser, x, sigmas, noise=NoiseSource(3))
    ancestral = SAMPLERS["euler_ancestral"](ideal_denoiser, x, sigmas, noise=NoiseSource(3))
    torch.testing.assert_close(ddpm, ancestral, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "sampler",
    ["ddpm", "seeds_2", "seeds_3", "er_sde", "sa_solver", "dpmpp_2m_sde_heun", "dpmpp_3m_sde", "sa_solver_pece"],
)
def test_sde_error_on_a_hard_schedule_vanishes_with_steps(sampler: str) -> None:
    """The large HARD_FINAL_STEP bounds above are extrapolation across the last long step, not a wrong
    noise rule: with more steps the std converges (measured 3m: 80.8 % at 30, 1.2 % at 300)."""
    errors = []
    for steps in (30, 300):
        sigmas = sigmas_for(MS, "normal", steps)
        out = SAMPLERS[sampler](ideal_denoiser, start_sample(float(sigmas[0])), sigmas, noise=NoiseSource(7))
        errors.append(abs(out.std().item() / S - 1.0))
    assert errors[1] < 0.03 and errors[1] < errors[0]


def test_ddim_eta0_is_euler_and_eta1_is_ancestral() -> None:
    from nodes.diffusion.sampling.samplers.misc import sample_ddim

    sigmas = sigmas_for(MS, "karras", 12)
    x = start_sample(float(sigmas[0]))
    euler = SAMPLERS["euler"](ideal_denoiser, x, sigmas)
    torch.testing.assert_close(SAMPLERS["ddim"](ideal_denoiser, x, sigmas), euler, atol=1e-5, rtol=1e-5)
    ancestral = SAMPLERS["euler_ancestral"](ideal_denoiser, x, sigmas, noise=NoiseSource(3))
    ddim1 = sample_ddim(ideal_denoiser, x, sigmas, noise=NoiseSource(3), eta=1.0)
    torch.testing.assert_close(ddim1, ancestral, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_stops_at_nonzero_final_sigma(sampler: str) -> None:
    """A schedule cut short (KSamplerAdvanced leftover noise) ends at that noise level, not at x0."""
    sigmas = sigmas_for(MS, "karras", 20)[:11]  # ends at σ ≈ 1.09: target std ≈ 1.48, x0 would be 1.0
    x = start_sample(float(sigmas[0]))
    denoiser = consistency_fn if sampler == "lcm" else ideal_denoiser
    out = SAMPLERS[sampler](denoiser, x, sigmas, noise=NoiseSource(7))
    expected_std = math.sqrt(S * S + float(sigmas[-1]) ** 2)
    assert abs(out.std().item() / expected_std - 1.0) < 0.1  # measured ≤ 6.4 % (euler_ancestral)
