"""Flow-model σ tables, shifts and schedules: values from the published formulas (checked by hand),
ComfyUI's table-walking rules, and diffusers' FlowMatchEulerDiscreteScheduler as the oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from diffusers.pipelines.z_image.pipeline_z_image import get_default_z_image_sigmas

from nodes.diffusion.sampling import SCHEDULERS, FlowModelSampling, ModelSampling, flux_mu, sigmas_for, time_shift

SD3 = FlowModelSampling(3.0)
# The scheduler configs the reference repositories ship (scheduler/scheduler_config.json).
SD3_CONFIG = {"num_train_timesteps": 1000, "shift": 3.0}
FLUX_CONFIG = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}
Z_IMAGE_CONFIG = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False}


def test_sd3_shift_by_hand() -> None:
    # shift·t/(1 + (shift−1)·t) with shift 3: t = 0.5 → 1.5/2, t = 0.95 → 2.85/2.9, t = 1 → 1
    assert time_shift(3.0, 0.5) == pytest.approx(0.75)
    assert time_shift(3.0, 0.95) == pytest.approx(2.85 / 2.9)
    assert time_shift(3.0, 1.0) == 1.0 and time_shift(1.0, 0.37) == 0.37
    assert SD3.sigma_max == 1.0
    assert SD3.sigma_min == pytest.approx(0.003 / 1.002, rel=1e-6)  # table entry 1/1000
    assert len(SD3.sigmas) == 1000 and bool((SD3.sigmas[1:] > SD3.sigmas[:-1]).all())


def test_flux_shift_is_the_sd3_curve_with_shift_e_mu() -> None:
    mu = flux_mu(1024, 1024)
    assert mu == pytest.approx(1.15)  # 4096 tokens is the max_shift end of the line
    assert flux_mu(512, 512) == pytest.approx(0.5 + 0.65 * (1024 - 256) / 3840)
    for w, h in [(1024, 1024), (512, 768), (256, 256), (2048, 1024)]:
        assert flux_mu(w, h) == calculate_shift(w * h // 256)  # the FLUX pipeline's own function
    flux = FlowModelSampling(mu=mu, multiplier=1.0, num_timesteps=10000)
    t = np.linspace(0.01, 1.0, 50)
    np.testing.assert_allclose(flux.shifted(t), time_shift(math.exp(mu), t), rtol=1e-12)
    # by hand: e^mu/(e^mu + (1/t − 1)) at t = 0.5 is e^mu/(e^mu + 1)
    assert flux.percent_to_sigma(0.5) == pytest.approx(math.exp(mu) / (math.exp(mu) + 1.0))
    assert len(flux.sigmas) == 10000 and flux.sigma_min == pytest.approx(float(flux.shifted(1e-4)), rel=1e-6)


def test_timestep_and_sigma_are_inverse_and_scaled_by_the_multiplier() -> None:
    sig = torch.tensor([1.0, 0.7, 0.01])
    torch.testing.assert_close(SD3.timestep(sig), sig * 1000)
    aura = FlowModelSampling(3.0, multiplier=1.0)
    torch.testing.assert_close(aura.timestep(sig), sig)
    # ComfyUI's sigma(t) applies the shift to t/multiplier
    torch.testing.assert_close(SD3.sigma(torch.tensor(500.0)), torch.tensor(0.75))
    torch.testing.assert_close(aura.sigma(torch.tensor(0.5)), torch.tensor(0.75))


def test_simple_walks_the_table_as_comfyui() -> None:
    got = SCHEDULERS["simple"](SD3, 20)
    expected = [time_shift(3.0, 1 - k / 20) for k in range(20)] + [0.0]
    np.testing.assert_allclose(got.numpy(), np.array(expected, dtype=np.float32), rtol=1e-6)
    assert float(got[1]) == pytest.approx(2.85 / 2.9, rel=1e-6)
    # 7 steps: stride 1000/7, entries −(1 + ⌊i·142.857⌋): i = 1 → index 857 → shift(858/1000)
    seven = SCHEDULERS["simple"](SD3, 7)
    assert float(seven[1]) == pytest.approx(time_shift(3.0, 0.858), rel=1e-6)
    assert len(seven) == 8 and float(seven[0]) == 1.0


def test_normal_is_comfyui_flow_normal_and_the_sd3_pipeline_default() -> None:
    """ComfyUI: timesteps linspace(t(σ_max), t(σ_min), steps), σ = shift(t/multiplier). t(σ_min) is
    already shifted, so the last σ is shift(shift(1/1000)); diffusers' scheduler default (what
    StableDiffusion3Pipeline uses when given no sigmas) does exactly the same."""
    got = SCHEDULERS["normal"](SD3, 28)
    t = np.linspace(1.0, time_shift(3.0, 0.001), 28)
    expected = np.append(time_shift(3.0, t), 0.0)
    np.testing.assert_allclose(got.numpy(), expected, rtol=2e-6)
    assert float(got[-2]) == pytest.approx(time_shift(3.0, time_shift(3.0, 0.001)), rel=1e-5)
    for steps in (4, 28, 50):
        sched = FlowMatchEulerDiscreteScheduler(**SD3_CONFIG)
        sched.set_timesteps(steps)
        torch.testing.assert_close(SCHEDULERS["normal"](SD3, steps), sched.sigmas, atol=2e-7, rtol=1e-6)


def test_beta_reads_the_flow_table() -> None:
    from scipy import stats

    got = SCHEDULERS["beta"](SD3, 10)
    ts = np.rint(stats.beta.ppf(1 - np.linspace(0, 1, 10, endpoint=False), 0.6, 0.6) * 999).astype(int)
    expected = [time_shift(3.0, (t + 1) / 1000) for t in ts] + [0.0]
    np.testing.assert_allclose(got.numpy(), np.array(expected), rtol=1e-6)
    assert float(got[0]) == 1.0


@pytest.mark.parametrize("steps", [1, 4, 8, 9, 20, 28, 50])
def test_linspace_diffusers_is_flow_match_euler_for_sd3_shift(steps: int) -> None:
    sched = FlowMatchEulerDiscreteScheduler(**SD3_CONFIG)
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps))
    assert torch.equal(SCHEDULERS["linspace_diffusers"](SD3, steps), sched.sigmas)


@pytest.mark.parametrize("size", [(1024, 1024), (512, 512), (768, 1360), (256, 256)])
@pytest.mark.parametrize("steps", [4, 20, 28])
def test_linspace_diffusers_is_the_flux_pipeline_schedule(size: tuple[int, int], steps: int) -> None:
    """FluxPipeline: sigmas linspace(1, 1/N, N), mu = calculate_shift(image tokens), dynamic shifting."""
    w, h = size
    mu = calculate_shift((h // 16) * (w // 16))
    sched = FlowMatchEulerDiscreteScheduler(**FLUX_CONFIG)
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    flux = FlowModelSampling(mu=flux_mu(w, h), multiplier=1.0, num_timesteps=10000)
    assert torch.equal(SCHEDULERS["linspace_diffusers"](flux, steps), sched.sigmas)


@pytest.mark.parametrize("steps", [8, 9, 20, 50])
def test_linspace_diffusers_is_the_z_image_pipeline_schedule(steps: int) -> None:
    """ZImagePipeline builds its sigmas with torch.linspace (float32), numpy's linspace rounds to the
    same float32 values up to one ulp; static shift 3 from the Turbo scheduler config."""
    sched = FlowMatchEulerDiscreteScheduler(**Z_IMAGE_CONFIG)
    sched.set_timesteps(sigmas=get_default_z_image_sigmas(steps), mu=0.7)
    got = SCHEDULERS["linspace_diffusers"](FlowModelSampling(3.0, multiplier=1.0), steps)
    torch.testing.assert_close(got, sched.sigmas, atol=1.2e-7, rtol=0)


def test_comfyui_simple_equals_diffusers_flux_default_when_steps_divide_the_table() -> None:
    """ComfyUI's reference FLUX workflow (simple, 20 steps, ModelSamplingFlux 1024²) visits the same
    noise levels as FluxPipeline's default, so either parity target works there."""
    flux = FlowModelSampling(mu=flux_mu(1024, 1024), multiplier=1.0, num_timesteps=10000)
    torch.testing.assert_close(SCHEDULERS["simple"](flux, 20), SCHEDULERS["linspace_diffusers"](flux, 20))


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_flow_schedule_invariants(name: str) -> None:
    for ms in (SD3, FlowModelSampling(mu=0.8, multiplier=1.0, num_timesteps=10000)):
        sigmas = sigmas_for(ms, name, 12)
        assert sigmas.dtype == torch.float32 and sigmas[-1] == 0.0
        assert float(sigmas[0]) <= 1.0 + 1e-6
        assert bool((sigmas[1:] < sigmas[:-1]).all())


def test_denoise_below_one_starts_part_way_down_a_flow_schedule() -> None:
    full = sigmas_for(SD3, "simple", 20)
    half = sigmas_for(SD3, "simple", 10, denoise=0.5)
    torch.testing.assert_close(half, full[10:])


def test_percent_to_sigma() -> None:
    assert SD3.percent_to_sigma(0.0) == 1.0 and SD3.percent_to_sigma(1.0) == 0.0
    assert SD3.percent_to_sigma(0.5) == pytest.approx(0.75)
    ms = ModelSampling()
    assert ms.percent_to_sigma(0.0) > 1e8 and ms.percent_to_sigma(1.0) == 0.0
    assert ms.percent_to_sigma(0.5) == pytest.approx(float(ms.sigma(499.5)))


def test_node_combo_names_match_the_registries() -> None:
    """nodes/sampling.py lists the names without importing torch; they must be exactly the registries'."""
    from nodes.diffusion.sampling import SAMPLERS
    from nodes.sampling import SAMPLER_NAMES, SCHEDULER_NAMES

    assert sorted(SAMPLER_NAMES) == sorted(SAMPLERS)
    assert sorted(SCHEDULER_NAMES) == sorted(SCHEDULERS)
    assert {"res_multistep", "res_multistep_ancestral"} <= set(SAMPLER_NAMES)
