"""Noise reproducibility, the ε/v parameterisations, and the run_sampler driver (start scaling,
img2img, inpainting masks, callbacks and cancellation)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from nodes.diffusion.sampling import (
    SAMPLERS,
    STOCHASTIC_SAMPLERS,
    Denoiser,
    ModelSampling,
    NoiseSource,
    StepInfo,
    initial_noise,
    make_denoiser,
    run_sampler,
    sigmas_for,
)

MS = ModelSampling()


def shrink(x: Tensor, sigma: Tensor) -> Tensor:
    """Ideal denoiser for N(0.2, 1) data (see test_sampling_gaussian.py)."""
    s2 = sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2
    return 0.2 + (x - 0.2) / (1.0 + s2)


# --- noise -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 123456789, 2**32 + 5, 2**63, 2**64 - 1])
def test_initial_noise_is_one_cpu_stream(seed: int) -> None:
    batch2 = initial_noise(seed, (2, 4, 8, 8))
    assert batch2.dtype == torch.float32 and batch2.device.type == "cpu"
    assert torch.equal(batch2[0], initial_noise(seed, (1, 4, 8, 8))[0])
    assert torch.equal(batch2, initial_noise(seed, (2, 4, 8, 8)))
    reference = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(batch2, reference)


def test_noise_seed_range_and_dtype() -> None:
    assert torch.equal(initial_noise(-1, (3,)), initial_noise(2**64 - 1, (3,)))
    assert not torch.equal(initial_noise(1, (8,)), initial_noise(2, (8,)))
    # drawn in float32 then cast: a half-precision request is the float32 draw rounded
    half = initial_noise(5, (2, 4, 4, 4), dtype=torch.float16)
    assert half.dtype == torch.float16
    assert torch.equal(half, initial_noise(5, (2, 4, 4, 4)).half())


def test_batch_index_reproduces_the_noise_inside_the_batch() -> None:
    batch = initial_noise(9, (4, 4, 8, 8))
    picked = initial_noise(9, (2, 4, 8, 8), batch_index=[3, 1])
    # per-index draws: item k of a [1,...]-draw sequence, which for randn equals slicing the batch draw
    assert torch.equal(picked[0], batch[3]) and torch.equal(picked[1], batch[1])


def test_step_noise_is_a_separate_reproducible_stream() -> None:
    a, b = NoiseSource(11), NoiseSource(11)
    x = torch.zeros(2, 4, 8, 8, dtype=torch.float64)
    first = a.like(x)
    assert first.dtype == torch.float64
    assert torch.equal(first, b.like(x))
    assert not torch.equal(first.float(), initial_noise(11, x.shape))
    assert not torch.equal(a.like(x), first)  # the stream advances


# --- parameterisations -------------------------------------------------------------------------------
def test_v_prediction_roundtrip() -> None:
    """With x = x0 + σ·ε (VE) and the VP view x_vp = x/√(σ²+1) = α·x0 + σ_vp·ε, the v target is
    v = α·ε − σ_vp·x0; calculate_denoised must give x0 back exactly."""
    ms = ModelSampling(prediction_type="v_prediction")
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 4, 4, generator=g), torch.randn(3, 4, 4, 4, generator=g)
    sigma = torch.tensor([0.1, 1.0, 14.6])
    s = sigma.reshape(-1, 1, 1, 1)
    x = x0 + s * eps
    alpha, sigma_vp = 1 / torch.sqrt(s**2 + 1), s / torch.sqrt(s**2 + 1)
    v = alpha * eps - sigma_vp * x0
    torch.testing.assert_close(ms.calculate_denoised(sigma, v, x), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ms.calculate_input(sigma, x), alpha * x0 + sigma_vp * eps, atol=1e-5, rtol=1e-5)
    # through make_denoiser: a network that returns the true v (from the scaled input it is given)
    denoiser = make_denoiser(ms, lambda x_in, t: v)
    torch.testing.assert_close(denoiser(x, sigma), x0, atol=1e-5, rtol=1e-5)


def test_epsilon_roundtrip_and_timesteps_passed_to_network() -> None:
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    sigma = torch.tensor([MS.sigma_max, 0.5])
    x = x0 + sigma.reshape(-1, 1, 1, 1) * eps
    seen: list[Tensor] = []

    def network(x_in: Tensor, t: Tensor) -> Tensor:
        seen.append(t)
        return eps

    torch.testing.assert_close(make_denoiser(MS, network)(x, sigma), x0, atol=1e-5, rtol=1e-5)
    make_denoiser(MS, network, timestep_mode="nearest")(x, sigma)
    assert seen[0][0] == pytest.approx(999.0, abs=1e-3) and seen[0][1] % 1 != 0
    assert seen[1].tolist() == [999.0, round(float(seen[0][1]))]


def test_noise_scaling_modes() -> None:
    noise, latent = torch.ones(1, 4, 2, 2), torch.zeros(1, 4, 2, 2)
    smax = MS.sigma_max
    assert float(MS.noise_scaling(smax, noise, latent).max()) == pytest.approx(smax)
    assert float(MS.noise_scaling(smax, noise, latent, mode="comfyui").max()) == pytest.approx(math.sqrt(1 + smax**2))
    assert float(MS.noise_scaling(3.0, noise, latent, mode="comfyui").max()) == pytest.approx(3.0)


# --- run_sampler -------------------------------------------------------------------------------------
def first_input_recorder() -> tuple[list[Tensor], Denoiser]:
    calls: list[Tensor] = []

    def denoiser(x: Tensor, sigma: Tensor) -> Tensor:
        calls.append(x.clone())
        return shrink(x, sigma)

    return calls, denoiser


def test_txt2img_start_is_sigma_max_times_noise() -> None:
    latent = torch.zeros(2, 4, 8, 8)
    sigmas = sigmas_for(MS, "linspace_diffusers", 8)
    calls, denoiser = first_input_recorder()
    out = run_sampler(denoiser, latent, sigmas, "euler", seed=42)
    noise = initial_noise(42, latent.shape)
    assert torch.equal(calls[0], noise * float(sigmas[0]))
    assert torch.equal(out, SAMPLERS["euler"](shrink, noise * float(sigmas[0]), sigmas))
    run_sampler(denoiser, latent, sigmas, "euler", seed=42, start_scale="comfyui", model_sampling=MS)
    torch.testing.assert_close(calls[len(sigmas) - 1], noise * math.sqrt(1 + float(sigmas[0]) ** 2))


def test_img2img_starts_from_noised_latent_partway_down() -> None:
    latent = torch.full((1, 4, 8, 8), 0.7)
    sigmas = sigmas_for(MS, "karras", 10, denoise=0.4)
    assert float(sigmas[0]) < MS.sigma_max / 2
    calls, denoiser = first_input_recorder()
    run_sampler(denoiser, latent, sigmas, "dpmpp_2m", seed=3)
    assert len(calls) == 10
    torch.testing.assert_close(calls[0], latent + initial_noise(3, latent.shape) * float(sigmas[0]))


def test_zero_denoise_and_disabled_noise() -> None:
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(run_sampler(shrink, latent, sigmas_for(MS, "karras", 10, 0.0), "euler", seed=1), latent)
    calls, denoiser = first_input_recorder()
    run_sampler(denoiser, latent, sigmas_for(MS, "karras", 10, 0.5), "euler", seed=1, add_noise=False)
    assert torch.equal(calls[0], latent)


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc", "heun", "lcm"])
def test_inpaint_keeps_unmasked_region_exactly(sampler: str) -> None:
    latent = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1.0  # regenerate the centre only
    sigmas = sigmas_for(MS, "karras", 8)
    noise = initial_noise(8, latent.shape)
    keep = (mask == 0).expand_as(latent)
    inputs: list[tuple[Tensor, float]] = []

    def denoiser(x: Tensor, sigma: Tensor) -> Tensor:
        inputs.append((x.clone(), float(sigma[0])))
        return shrink(x, sigma)

    out = run_sampler(denoiser, latent, sigmas, sampler, seed=8, noise_mask=mask)
    assert torch.equal(out[keep], latent[keep])
    assert not torch.allclose(out[~keep], latent[~keep])
    for x, sigma in inputs:  # the model always sees the original, noised to the current level, outside
        torch.testing.assert_close(x[keep], (latent + noise * sigma)[keep], atol=1e-5, rtol=1e-5)


def test_mask_is_resized_to_the_latent_grid() -> None:
    latent = torch.zeros(1, 4, 8, 8)
    mask = torch.zeros(64, 64)
    mask[:32] = 1.0  # pixel-space mask: top half
    out = run_sampler(shrink, latent, sigmas_for(MS, "karras", 4), "euler", seed=0, noise_mask=mask)
    assert torch.equal(out[..., 5:, :], latent[..., 5:, :])
    assert not torch.equal(out[..., :3, :], latent[..., :3, :])


def test_per_image_masks_in_comfyui_layout() -> None:
    """A MASK socket value is [B, H, W]; each image gets its own mask."""
    latent = torch.zeros(2, 4, 8, 8)
    mask = torch.zeros(2, 8, 8)
    mask[0, :, :4] = 1.0  # image 0: regenerate left half
    mask[1, :, 4:] = 1.0  # image 1: regenerate right half
    out = run_sampler(shrink, latent, sigmas_for(MS, "karras", 4), "euler", seed=0, noise_mask=mask)
    assert torch.equal(out[0, :, :, 4:], latent[0, :, :, 4:]) and torch.equal(out[1, :, :, :4], latent[1, :, :, :4])
    assert not torch.equal(out[0, :, :, :4], latent[0, :, :, :4])
    assert not torch.equal(out[1, :, :, 4:], latent[1, :, :, 4:])


def test_callback_reports_every_step_and_can_cancel() -> None:
    sigmas = sigmas_for(MS, "karras", 6)
    infos: list[StepInfo] = []
    run_sampler(shrink, torch.zeros(1, 4, 4, 4), sigmas, "heun", seed=0, callback=infos.append)
    assert [i.i for i in infos] == list(range(6)) and {i.n for i in infos} == {6}
    assert [i.sigma for i in infos] == pytest.approx(sigmas[:-1].tolist())
    assert infos[-1].sigma_next == 0.0
    assert torch.equal(infos[-1].x, infos[-1].denoised)  # Heun's last step to σ = 0 lands on D

    class Cancelled(Exception):
        pass

    def cancel_at_3(info: StepInfo) -> None:
        if info.i == 3:
            raise Cancelled

    calls, denoiser = first_input_recorder()
    with pytest.raises(Cancelled):
        run_sampler(denoiser, torch.zeros(1, 4, 4, 4), sigmas, "dpmpp_2m", seed=0, callback=cancel_at_3)
    assert len(calls) == 4


@pytest.mark.parametrize("sampler", sorted(STOCHASTIC_SAMPLERS))
def test_stochastic_samplers_are_seeded(sampler: str) -> None:
    sigmas = sigmas_for(MS, "karras", 5)
    latent = torch.zeros(1, 4, 4, 4)
    a = run_sampler(shrink, latent, sigmas, sampler, seed=17)
    assert torch.equal(a, run_sampler(shrink, latent, sigmas, sampler, seed=17))
    assert not torch.equal(a, run_sampler(shrink, latent, sigmas, sampler, seed=18))
    x = torch.zeros(1, 4, 4, 4)
    with pytest.raises(ValueError, match="NoiseSource"):
        SAMPLERS[sampler](shrink, x, sigmas)


def test_sampler_options_reach_the_sampler() -> None:
    sigmas = sigmas_for(MS, "karras", 6)
    latent = torch.zeros(1, 4, 4, 4)
    deterministic = run_sampler(shrink, latent, sigmas, "euler", seed=2)
    eta0 = run_sampler(shrink, latent, sigmas, "euler_ancestral", seed=2, sampler_options={"eta": 0.0})
    torch.testing.assert_close(eta0, deterministic)  # η = 0 ancestral is plain Euler


def test_unknown_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown sampler"):
        run_sampler(shrink, torch.zeros(1, 4, 4, 4), sigmas_for(MS, "karras", 3), "nope", seed=0)
