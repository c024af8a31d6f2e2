"""Our samplers against diffusers' scheduler step loops on identical sigmas and a fixed nonlinear model.

The "model" is a small random ε-predictor; diffusers runs its own loop (scale_model_input → model →
step), we run the registered sampler through ``make_denoiser``. Any difference beyond float32 rounding
means a different update rule. Tolerance: 5e-5 absolute on latents of magnitude ≈25, i.e. ≈2e-6
relative — a few float32 ulps accumulated over ≤25 steps (the notes measured up to 1.3e-5 for these
pairs); a wrong coefficient shows up at 1e-2 or more.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LMSDiscreteScheduler,
    UniPCMultistepScheduler,
)
from torch import Tensor

from nodes.diffusion.sampling import SAMPLERS, SCHEDULERS, ModelSampling, StepInfo, make_denoiser
from nodes.diffusion.sampling.samplers.unipc import Variant, sample_uni_pc

CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
}
MS = ModelSampling()
ATOL = 5e-5
_gen = torch.Generator().manual_seed(0)
W = torch.randn(4, 4, generator=_gen) * 0.5
X_T = torch.randn(2, 4, 8, 8, generator=_gen)


def network(x_in: Tensor, t: Tensor) -> Tensor:
    """Nonlinear in x so that multistep/extra-evaluation differences matter; t-independent so the
    comparison isolates the update rule from each scheduler's timestep rounding."""
    return torch.tanh(torch.einsum("ij,bjhw->bihw", W, x_in)) + 0.3 * x_in


DENOISER = make_denoiser(MS, network)


class ReplayNoise:
    """Hands our sampler the same per-step noise tensors diffusers was given."""

    def __init__(self, noises: list[Tensor]) -> None:
        self.noises = list(noises)

    def like(self, x: Tensor) -> Tensor:
        return self.noises.pop(0)


def test_euler_matches_euler_discrete_linspace() -> None:
    sched = EulerDiscreteScheduler(**CONFIG)
    sched.set_timesteps(20)
    x = X_T * sched.init_noise_sigma
    for t in sched.timesteps:
        x = sched.step(network(sched.scale_model_input(x, t), t), t, x).prev_sample
    sigmas = SCHEDULERS["linspace_diffusers"](MS, 20)
    ours = SAMPLERS["euler"](DENOISER, X_T * float(sigmas[0]), sigmas)
    assert x.abs().max() > 10  # the comparison is on full-size latents, not on something ~0
    torch.testing.assert_close(ours, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("cls", "name"),
    [(HeunDiscreteScheduler, "heun"), (LMSDiscreteScheduler, "lms"), (KDPM2DiscreteScheduler, "dpm_2")],
)
def test_k_schedulers(cls: type, name: str) -> None:
    """Heun / LMS / KDPM2 interleave their extra evaluations into their own timestep list, but their base
    sigmas equal linspace_diffusers. LMS integrates its coefficients by quadrature (epsrel 1e-4) where we
    integrate the polynomials exactly; the coefficient error is below the tolerance here."""
    sched = cls(**CONFIG)
    sched.set_timesteps(10)
    x = X_T * sched.init_noise_sigma
    for t in sched.timesteps:
        x = sched.step(network(sched.scale_model_input(x, t), t), t, x).prev_sample
    sigmas = SCHEDULERS["linspace_diffusers"](MS, 10)
    ours = SAMPLERS[name](DENOISER, X_T * float(sigmas[0]), sigmas)
    torch.testing.assert_close(ours, x, atol=ATOL, rtol=0)


@pytest.mark.parametrize("karras", [False, True])
@pytest.mark.parametrize(("algorithm", "name"), [("dpmsolver++", "dpmpp_2m"), ("sde-dpmsolver++", "dpmpp_2m_sde")])
def test_dpmpp_2m_matches_dpm_solver_multistep(algorithm: str, name: str, karras: bool) -> None:
    """DPMSolverMultistep works on VP samples x/√(1+σ²) and rounds its own timesteps; we take its sigma
    list as our schedule and replay its SDE noise, so only the update rule is compared."""
    sched = DPMSolverMultistepScheduler(
        **CONFIG,
        solver_order=2,
        algorithm_type=algorithm,
        use_karras_sigmas=karras,
    )
    sched.set_timesteps(20)
    sigmas = sched.sigmas.clone()
    noises = [torch.randn(X_T.shape, generator=torch.Generator().manual_seed(100 + i)) for i in range(20)]
    x = X_T * float(sigmas[0]) / math.sqrt(1 + float(sigmas[0]) ** 2)
    for i, t in enumerate(sched.timesteps):
        x = sched.step(network(x, t), t, x, variance_noise=noises[i]).prev_sample
    ours = SAMPLERS[name](DENOISER, X_T * float(sigmas[0]), sigmas, noise=ReplayNoise(noises))
    torch.testing.assert_close(ours, x, atol=ATOL, rtol=0)


@pytest.mark.parametrize(("order", "variant"), [(2, "bh2"), (3, "bh2"), (2, "bh1"), (3, "bh1")])
def test_uni_pc_matches_unipc_multistep(order: int, variant: Variant) -> None:
    """Compared after every step (the predictor output, before the next step's corrector). diffusers'
    bh1 returns NaN on a final step to σ = 0 (B(h) = −h with h = ∞), so the last step is only checked
    for bh2; ours takes the exact x' = D step there."""
    sched = UniPCMultistepScheduler(
        **CONFIG,
        solver_order=order,
        solver_type=variant,
        use_karras_sigmas=True,
    )
    sched.set_timesteps(12)
    sigmas = sched.sigmas.clone()
    x = X_T * float(sigmas[0]) / math.sqrt(1 + float(sigmas[0]) ** 2)
    theirs: list[Tensor] = []
    for t in sched.timesteps:
        x = sched.step(network(x, t), t, x).prev_sample
        theirs.append(x * math.sqrt(1 + float(sched.sigmas[sched.step_index]) ** 2))  # back to VE units
    ours: list[Tensor] = []

    def collect(info: StepInfo) -> None:
        ours.append(info.x)

    final = sample_uni_pc(
        DENOISER,
        X_T * float(sigmas[0]),
        sigmas,
        order=order,
        variant=variant,
        callback=collect,
    )
    checked = len(theirs) if variant == "bh2" else len(theirs) - 1
    for a, b in zip(ours[:checked], theirs[:checked], strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    assert torch.isfinite(final).all()
