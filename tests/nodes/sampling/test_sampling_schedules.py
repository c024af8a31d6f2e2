"""Schedules: shape invariants, agreement with diffusers' EulerDiscreteScheduler options and with the
ComfyUI values recorded in the project notes, and the denoise < 1 tail rule."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler

from nodes.diffusion.sampling import SCHEDULERS, ModelSampling, karras_sigmas, sigmas_for

CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
}
MS = ModelSampling()
# Schedules whose first sigma is the model's σ_max (ddim_uniform starts at table index 1+(steps−1)·c).
STARTS_AT_MAX = {"normal", "karras", "exponential", "sgm_uniform", "simple", "beta", "linspace_diffusers"}


def diffusers_sigmas(steps: int, **options: object) -> torch.Tensor:
    sched = EulerDiscreteScheduler(**CONFIG, **options)
    sched.set_timesteps(steps)
    return sched.sigmas


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float(((a.double() - b.double()).abs() / b.double().clamp(min=1e-12))[:-1].max())


def test_table_matches_diffusers_and_known_range() -> None:
    sched = EulerDiscreteScheduler(**CONFIG)
    assert torch.equal(MS.alphas_cumprod, sched.alphas_cumprod)
    assert MS.sigma_min == pytest.approx(0.0291675, rel=1e-5)
    assert MS.sigma_max == pytest.approx(14.614642, rel=1e-5)


@pytest.mark.parametrize("steps", [1, 2, 7, 20, 37, 150])
@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_schedule_invariants(name: str, steps: int) -> None:
    sigmas = SCHEDULERS[name](MS, steps)
    assert sigmas.dtype == torch.float32 and sigmas.ndim == 1
    if name == "beta":  # duplicate beta-quantile timesteps are merged (only at large step counts)
        assert steps // 2 < len(sigmas) - 1 <= steps
    else:
        assert len(sigmas) == steps + 1
    assert sigmas[-1] == 0.0
    assert bool((sigmas[:-1] > 0).all()) and bool((sigmas[1:] < sigmas[:-1]).all())
    assert float(sigmas[0]) <= MS.sigma_max * (1 + 1e-6)
    if name in STARTS_AT_MAX and not (name == "linspace_diffusers" and steps == 1):
        # (diffusers' linspace(0, 999, 1) is [0], so its 1-step schedule starts at σ_min; kept for parity)
        assert float(sigmas[0]) == pytest.approx(MS.sigma_max, rel=1e-5)


def test_beta_keeps_all_steps_at_usual_counts() -> None:
    for steps in range(1, 61):
        assert len(SCHEDULERS["beta"](MS, steps)) == steps + 1


@pytest.mark.parametrize("steps", [4, 20, 33])
def test_linspace_diffusers_is_bit_identical(steps: int) -> None:
    assert torch.equal(SCHEDULERS["linspace_diffusers"](MS, steps), diffusers_sigmas(steps))


# (our name, diffusers options, max relative difference). The notes measured ComfyUI vs diffusers; ours
# share diffusers' float32 table, so karras/exponential/simple/ddim_uniform agree to float32 rounding.
DIFFUSERS_EQUIVALENTS = [
    ("karras", {"use_karras_sigmas": True}, 1e-6),
    ("exponential", {"use_exponential_sigmas": True}, 1e-6),
    # equal when steps divides 1000; otherwise trailing rounds the stride where ComfyUI floors it
    ("simple", {"timestep_spacing": "trailing"}, 1e-6),
    ("ddim_uniform", {"timestep_spacing": "leading", "steps_offset": 1}, 1e-6),
    # log-linear vs linear interpolation of σ between table entries (notes: 1.7e-5 at 20 steps)
    ("normal", {}, 1e-4),
    # what diffusers' docs map sgm_uniform to; close, not equal (notes: 1.1 %)
    ("sgm_uniform", {"timestep_spacing": "trailing"}, 0.03),
]


@pytest.mark.parametrize("steps", [10, 20, 25, 40])
@pytest.mark.parametrize(("name", "options", "tol"), DIFFUSERS_EQUIVALENTS)
def test_matches_diffusers(name: str, options: dict[str, object], tol: float, steps: int) -> None:
    assert max_rel(SCHEDULERS[name](MS, steps), diffusers_sigmas(steps, **options)) < tol


def test_simple_vs_trailing_when_stride_is_fractional() -> None:
    """At 30 steps the two pick table indices at most one apart (933 vs 932, …)."""
    ours, theirs = SCHEDULERS["simple"](MS, 30), diffusers_sigmas(30, timestep_spacing="trailing")
    assert max_rel(ours, theirs) < 0.02
    table = MS.sigmas.tolist()
    for a, b in zip(ours[:-1].tolist(), theirs[:-1].tolist(), strict=True):
        ia, ib = min(range(1000), key=lambda k: abs(table[k] - a)), min(range(1000), key=lambda k: abs(table[k] - b))
        assert ia - ib in (0, 1)


def test_values_recorded_from_comfyui() -> None:
    """First sigmas at 20 steps as quoted in the notes (ComfyUI 0.3.64, SD1.5)."""
    simple = SCHEDULERS["simple"](MS, 20)[:5]
    torch.testing.assert_close(simple, torch.tensor([14.6146, 10.9042, 8.3028, 6.4430, 5.0878]), rtol=2e-5, atol=0)
    beta = SCHEDULERS["beta"](MS, 20)[:3]
    torch.testing.assert_close(beta, torch.tensor([14.61, 13.52, 11.54]), rtol=1e-3, atol=0)


def test_karras_sigmas_is_model_independent_karras() -> None:
    direct = karras_sigmas(20, MS.sigma_min, MS.sigma_max, 7.0)
    assert torch.equal(direct, SCHEDULERS["karras"](MS, 20))
    custom = karras_sigmas(5, 0.1, 10.0, rho=3.0)
    expected = (10.0 ** (1 / 3) + np.linspace(0, 1, 5) * (0.1 ** (1 / 3) - 10.0 ** (1 / 3))) ** 3
    torch.testing.assert_close(custom[:-1].double(), torch.from_numpy(expected), rtol=1e-6, atol=0)
    assert custom[-1] == 0.0


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
@pytest.mark.parametrize(("steps", "denoise"), [(20, 0.5), (10, 0.3), (7, 0.75)])
def test_denoise_takes_tail_of_longer_schedule(name: str, steps: int, denoise: float) -> None:
    sigmas = sigmas_for(MS, name, steps, denoise)
    longer = SCHEDULERS[name](MS, int(steps / denoise))
    assert torch.equal(sigmas, longer[-(steps + 1) :])
    assert len(sigmas) == steps + 1 or name == "beta"


def test_denoise_edge_cases() -> None:
    assert torch.equal(sigmas_for(MS, "karras", 20, 1.0), SCHEDULERS["karras"](MS, 20))
    assert torch.equal(sigmas_for(MS, "karras", 20, 0.99995), SCHEDULERS["karras"](MS, 20))
    assert sigmas_for(MS, "karras", 20, 0.0).numel() == 0
    assert sigmas_for(MS, "karras", 20, -1.0).numel() == 0
    # 20 steps at 0.5 starts at the 21st sigma of a 40-step schedule, not at 0.5·σ_max
    assert float(sigmas_for(MS, "normal", 20, 0.5)[0]) == float(SCHEDULERS["normal"](MS, 40)[20])
    with pytest.raises(ValueError, match="unknown scheduler"):
        sigmas_for(MS, "nope", 20)


def test_discard_penultimate() -> None:
    full = SCHEDULERS["karras"](MS, 21)
    got = sigmas_for(MS, "karras", 20, discard_penultimate=True)
    assert len(got) == 21
    assert torch.equal(got, torch.cat([full[:-2], full[-1:]]))
    partial = sigmas_for(MS, "karras", 10, 0.5, discard_penultimate=True)
    longer = SCHEDULERS["karras"](MS, 21)
    assert torch.equal(partial, torch.cat([longer[:-2], longer[-1:]])[-11:])


def test_timestep_roundtrip_and_diffusers_interpolation() -> None:
    sched = EulerDiscreteScheduler(**CONFIG)
    log_sigmas = np.log(MS.sigmas.numpy())
    probe = np.array([0.0291675, 0.05, 0.3, 1.0, 3.3, 14.6, 14.614642], dtype=np.float32)
    want = np.array([sched._sigma_to_t(np.array(s), log_sigmas) for s in probe])
    torch.testing.assert_close(MS.timestep(torch.from_numpy(probe)).double(), torch.from_numpy(want), atol=1e-3, rtol=0)
    t = torch.tensor([0.0, 0.5, 17.25, 500.0, 998.9, 999.0])
    torch.testing.assert_close(MS.timestep(MS.sigma(t)), t, atol=2e-3, rtol=0)
    assert MS.timestep_nearest(torch.tensor([MS.sigma_max, MS.sigma_min])).tolist() == [999.0, 0.0]
    assert float(MS.timestep_nearest(MS.sigma(torch.tensor(41.4)))) == 41.0
