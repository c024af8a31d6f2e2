"""kl_optimal, linear_quadratic and the tabulated Align Your Steps / GITS schedules, against their
definitions, and the two scheduler nodes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from graph_engine import InputError
from nodes import builtin_registry
from nodes.diffusion.sampling import SCHEDULERS, FlowModelSampling, ModelSampling
from nodes.diffusion.sampling.tabulated import AYS_NOISE_LEVELS, GITS_COEFFS, align_your_steps, gits

MS = ModelSampling()


def test_kl_optimal_is_uniform_in_arctan_sigma() -> None:
    sig = SCHEDULERS["kl_optimal"](MS, 12).double()
    assert sig[-1] == 0.0 and len(sig) == 13
    assert float(sig[0]) == pytest.approx(MS.sigma_max, rel=1e-6)
    assert float(sig[-2]) == pytest.approx(MS.sigma_min, rel=1e-6)
    angles = torch.atan(sig[:-1])
    gaps = angles[:-1] - angles[1:]
    torch.testing.assert_close(gaps, torch.full_like(gaps, float(gaps.mean())), atol=1e-6, rtol=0)


@pytest.mark.parametrize("steps", [2, 9, 10, 30])
def test_linear_quadratic_matches_mochis_coefficients(steps: int) -> None:
    """Oracle: Mochi's published form (quadratic_coef·i² + linear_coef·i + const after the linear half)."""
    ms = FlowModelSampling(3.0)
    threshold, lin = 0.025, steps // 2
    diff = lin - threshold * steps
    quad = steps - lin
    q_coef = diff / (lin * quad**2)
    l_coef = threshold / lin - 2 * diff / quad**2
    const = q_coef * lin**2
    s = [i * threshold / lin for i in range(lin)] + [q_coef * i * i + l_coef * i + const for i in range(lin, steps)]
    expected = torch.tensor([1.0 - v for v in s] + [0.0], dtype=torch.float32)
    torch.testing.assert_close(SCHEDULERS["linear_quadratic"](ms, steps), expected, atol=1e-6, rtol=0)
    ve = SCHEDULERS["linear_quadratic"](MS, steps)
    torch.testing.assert_close(ve, expected * MS.sigma_max, atol=1e-5, rtol=1e-6)  # scaled by σ_max


@pytest.mark.parametrize("model_type", ["SD1", "SDXL", "SVD"])
def test_align_your_steps_reproduces_and_interpolates_the_table(model_type: str) -> None:
    table = AYS_NOISE_LEVELS[model_type]
    ten = align_your_steps(model_type, 10)
    torch.testing.assert_close(ten, torch.tensor([*table[:-1], 0.0]))  # the last σ_min becomes 0
    twenty = align_your_steps(model_type, 20).double()
    # 21 points evenly spaced over the table's 11 positions: every other one is a table entry, the ones
    # between are geometric means of their neighbours (log-linear interpolation)
    torch.testing.assert_close(twenty[0:20:2], torch.tensor(table[:-1], dtype=torch.float64), rtol=1e-6, atol=0)
    mids = twenty[1:19:2]
    torch.testing.assert_close(mids, torch.sqrt(twenty[0:18:2] * twenty[2:20:2]), rtol=1e-5, atol=0)
    half = align_your_steps(model_type, 10, denoise=0.5)
    torch.testing.assert_close(half, ten[-6:])
    assert align_your_steps(model_type, 10, denoise=0.0).numel() == 0


def test_gits_tables() -> None:
    for coeff in GITS_COEFFS:
        for steps in (2, 10, 20):
            sig = gits(coeff, steps).double()
            assert len(sig) == steps + 1 and sig[-1] == 0.0
            assert float(sig[0]) == pytest.approx(14.6146, rel=1e-4)
            assert bool((sig[:-1] > sig[1:]).all())
    longer = gits(1.2, 40).double()
    twenty = gits(1.2, 20).double()
    torch.testing.assert_close(longer[0:40:2], twenty[:-1], rtol=1e-6, atol=0)  # interpolates the 20-step one
    with pytest.raises(ValueError, match="coeff"):
        gits(1.23, 10)
    # a larger coefficient spends the steps differently (the tables are not all the same)
    assert not torch.equal(gits(0.8, 10), gits(1.5, 10))


def test_scheduler_nodes_have_comfyuis_inputs() -> None:
    registry = builtin_registry()
    ays, gits_node = registry.get("AlignYourStepsScheduler"), registry.get("GITSScheduler")
    assert ays is not None and gits_node is not None
    assert [i.id for i in ays.inputs] == ["model_type", "steps", "denoise"]
    assert [i.id for i in gits_node.inputs] == ["coeff", "steps", "denoise"]
    (sig,) = ays.execute(None, model_type="SDXL", steps=10, denoise=1.0)
    assert math.isclose(float(sig[1]), 6.3184485287, rel_tol=1e-6)
    (sig,) = gits_node.execute(None, coeff=1.2, steps=10, denoise=1.0)
    torch.testing.assert_close(sig, gits(1.2, 10))
    assert np.isfinite(sig.numpy()).all()
    with pytest.raises(InputError):
        gits_node.execute(None, coeff=0.7, steps=10, denoise=1.0)
