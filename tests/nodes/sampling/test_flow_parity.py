"""Flow sampling against diffusers' own denoising loops, with each pipeline's timestep convention.

The "network" is a fixed smooth function of the sample and the timestep it is fed; the reference is
the loop of StableDiffusion3Pipeline / FluxPipeline / ZImagePipeline written out with diffusers'
FlowMatchEulerDiscreteScheduler. sdgraph's side is FlowModelSampling + make_denoiser + run_sampler("euler"),
with the network wrapped exactly as a family module would wrap the real transformer. This pins down
the conventions recorded in ``nodes.diffusion.sampling.flow``.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from diffusers.pipelines.z_image.pipeline_z_image import get_default_z_image_sigmas
from torch import Tensor

from nodes.diffusion.sampling import FlowModelSampling, flux_mu, initial_noise, make_denoiser, run_sampler, sigmas_for

SHAPE = (2, 16, 8, 8)
SEED = 21
W = torch.randn(16, 16, generator=torch.Generator().manual_seed(3)) / 4


def toy_net(x: Tensor, t: Tensor, t_range: float) -> Tensor:
    """Nonlinear in x and in the timestep value it is given (normalised by its range)."""
    tt = (t.float() / t_range).reshape(-1, 1, 1, 1)
    mixed = torch.einsum("bchw,cd->bdhw", x, W)
    return torch.tanh(mixed) * (0.5 + tt) + 0.3 * x * torch.cos(3 * tt) - 0.2


def _diffusers_loop(sched: FlowMatchEulerDiscreteScheduler, call: object) -> Tensor:
    latents = initial_noise(SEED, SHAPE)
    for t in sched.timesteps:
        noise_pred = call(latents, t)  # type: ignore[operator]
        latents = sched.step(noise_pred, t, latents, return_dict=False)[0]
    return latents


def _ours(ms: FlowModelSampling, network: object, scheduler: str, steps: int) -> Tensor:
    denoiser = make_denoiser(ms, network)  # type: ignore[arg-type]
    sigmas = sigmas_for(ms, scheduler, steps)
    return run_sampler(denoiser, torch.zeros(SHAPE), sigmas, "euler", SEED, model_sampling=ms)


def test_sd3_pipeline_loop() -> None:
    """SD3: scheduler default spacing (no sigmas passed), the transformer gets t = σ·1000, returns v."""
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    sched.set_timesteps(12)
    expected = _diffusers_loop(sched, lambda x, t: toy_net(x, t.expand(x.shape[0]), 1000.0))
    got = _ours(FlowModelSampling(3.0, multiplier=1000.0), lambda x, t: toy_net(x, t, 1000.0), "normal", 12)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)


def test_flux_pipeline_loop() -> None:
    """FLUX: sigmas linspace(1, 1/N, N), dynamic shift mu, the transformer gets t/1000 = σ, returns v."""
    w, h, steps = 512, 768, 9
    sched = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15
    )
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=calculate_shift((h // 16) * (w // 16)))
    expected = _diffusers_loop(sched, lambda x, t: toy_net(x, t.expand(x.shape[0]) / 1000, 1.0))
    ms = FlowModelSampling(mu=flux_mu(w, h), multiplier=1.0, num_timesteps=10000)
    got = _ours(ms, lambda x, t: toy_net(x, t, 1.0), "linspace_diffusers", steps)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)


def test_z_image_pipeline_loop() -> None:
    """Z-Image: the transformer gets (1000 − t)/1000 = 1 − σ and predicts −v (the pipeline negates)."""
    steps = 8
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)
    sched.set_timesteps(sigmas=get_default_z_image_sigmas(steps), mu=0.8)

    def z_net(x: Tensor, t_flipped: Tensor) -> Tensor:
        return -toy_net(x, t_flipped, 1.0)  # a network trained on x0 − ε

    expected = _diffusers_loop(sched, lambda x, t: -z_net(x, (1000 - t.expand(x.shape[0])) / 1000))
    ms = FlowModelSampling(3.0, multiplier=1.0)  # ModelSamplingAuraFlow, as ComfyUI's Z-Image workflow
    got = _ours(ms, lambda x, t: -z_net(x, 1.0 - t), "simple", steps)  # simple = diffusers' spacing at 8
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)


def test_img2img_start_is_the_schedulers_scale_noise() -> None:
    """Partial denoise starts at scheduler.scale_noise(latent, t_start, noise) = σ·noise + (1 − σ)·latent."""
    ms = FlowModelSampling(3.0)
    sigmas = sigmas_for(ms, "linspace_diffusers", 10)[4:]
    latent = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    sched.set_timesteps(sigmas=np.linspace(1.0, 0.1, 10))
    sched.set_begin_index(4)
    expected = sched.scale_noise(latent, sched.timesteps[4:5], initial_noise(SEED, SHAPE))
    seen: list[Tensor] = []

    def denoiser(x: Tensor, sigma: Tensor) -> Tensor:
        seen.append(x)
        return x

    run_sampler(denoiser, latent, sigmas, "euler", SEED, model_sampling=ms)
    torch.testing.assert_close(seen[0], expected, atol=1e-6, rtol=1e-6)
