"""What the sampling nodes do: schedule, noise, guide, sample, report.

KSampler, KSamplerAdvanced and SamplerCustomAdvanced all end in `sample()`: a guider's denoiser, a
sigma list, a sampler name and a noise seed. Progress goes to the node's context once per step (which
is also where a cancel request stops the run) and, when someone is watching, a preview of the
predicted image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor

from graph_engine import ExecutionContext
from nodes.diffusion import host_memory
from nodes.diffusion.conditioning import CondEntry
from nodes.diffusion.guidance import Guider, inpaint_concat
from nodes.diffusion.model import DiffusionModel
from nodes.diffusion.previews import latent_to_rgb, preview_source
from nodes.diffusion.sampling import (
    DISCARD_PENULTIMATE_SIGMA_SAMPLERS,
    AnyModelSampling,
    StepInfo,
    initial_noise,
    run_sampler,
    sigmas_for,
)
from nodes.diffusion.timeline import make_frame


class SamplingError(Exception):
    user_facing = True


@dataclass(frozen=True)
class SamplerChoice:
    """The SAMPLER socket's value."""

    name: str


@dataclass(frozen=True)
class Noise:
    """The NOISE socket's value: a seed, or None for no noise (continuing a partly denoised latent)."""

    seed: int | None


def schedule(model: DiffusionModel, scheduler: str, steps: int, denoise: float, sampler_name: str = "") -> Tensor:
    return sigmas_for(
        model.model_sampling,
        scheduler,
        steps,
        denoise,
        discard_penultimate=sampler_name in DISCARD_PENULTIMATE_SIGMA_SAMPLERS,
    )


def step_reporter(
    ctx: ExecutionContext,
    family: str,
    n: int,
    timeline: list[dict[str, Any]] | None = None,
    model_sampling: AnyModelSampling | None = None,
) -> Callable[[StepInfo], None]:
    def on_step(info: StepInfo) -> None:
        if timeline is not None and model_sampling is not None:
            timeline.append(make_frame(info.i + 1, info.sigma_next, info.x, info.denoised, model_sampling, family))
        if ctx.on_preview is not None:
            # Rendered on the preview thread (graph_engine.previews) from a numpy copy of the first item,
            # made here: see `preview_source` for why that thread must not run torch.
            ctx.preview(partial(latent_to_rgb, preview_source(info.denoised), family))
        ctx.progress(info.i + 1, n)

    return on_step


def sample(
    ctx: ExecutionContext,
    guider: Guider,
    latent: Mapping[str, Any],
    sigmas: Tensor,
    sampler_name: str,
    noise: Noise,
) -> tuple[dict[str, Any], Tensor]:
    """Run one sampling job; returns the new LATENT dict and the last x0 prediction."""
    model = guider.model
    samples: Tensor = latent["samples"]
    if samples.shape[1] != model.latent_channels:
        raise SamplingError(
            f"the latent has {samples.shape[1]} channels but this {model.family} model expects {model.latent_channels}"
        )
    device = model.device
    scale = model.latent_scale
    hw = (samples.shape[-2] * 8, samples.shape[-1] * 8)
    n = max(int(sigmas.numel()) - 1, 0)
    timeline: list[dict[str, Any]] | None = [] if ctx.settings.get("record_timeline") else None
    if timeline is not None and n:
        # Frame 0 is the starting point: the latent put at the first sigma with the seed's noise.
        start = model.to_model_space(samples.float())
        if noise.seed is not None:
            eps = initial_noise(noise.seed, samples.shape)
            start = model.model_sampling.process.noised(start, eps, float(sigmas[0]))
        timeline.append(make_frame(0, float(sigmas[0]), start, None, model.model_sampling, model.family))
    last_denoised: list[Tensor] = []
    reporter = step_reporter(ctx, model.family, n, timeline, model.model_sampling)

    def on_step(info: StepInfo) -> None:
        last_denoised[:] = [info.denoised]
        reporter(info)

    x0 = model.to_model_space(samples.to(device=device, dtype=torch.float32))
    mask = latent.get("noise_mask")
    concat = inpaint_concat(model.to_model_space(samples), mask).to(device) if model.inpainting else None
    # Each step allocates and frees the same blocks: kept in the heap between steps, not faulted in anew.
    with torch.inference_mode(), model.active(), host_memory.reusing_freed_memory():
        out = run_sampler(
            guider.denoiser(hw, concat),
            x0,
            sigmas.to(device),
            sampler_name,
            noise.seed if noise.seed is not None else 0,
            add_noise=noise.seed is not None,
            noise_mask=None if mask is None else mask.to(device),
            callback=on_step,
            start_scale="sigma",
            model_sampling=model.model_sampling,
            batch_index=_batch_index(latent, samples.shape[0]),
        )
    host_memory.trim()  # the steps' activations, before the decode allocates its own
    if not torch.isfinite(out).all():
        raise SamplingError(
            "sampling produced NaN or infinite values; try the exact precision mode, fewer steps or a lower cfg"
        )
    if timeline is not None:
        for frame in timeline:  # so a frame alone decodes right (16-channel VAEs are centred)
            frame["latent_shift"] = model.latent_shift
        # Frames (see nodes.diffusion.timeline) are in the model's (scaled) space, where latent previews are
        # defined; divide by `latent_scale` before decoding one with the VAE (`decode_frame` does).
        ctx.records["timeline"] = {
            "frames": timeline,
            "family": model.family,
            "sigmas": sigmas.tolist(),
            "latent_scale": scale,
            "latent_shift": model.latent_shift,
            "image_size": [hw[1], hw[0]],  # (width, height) the VAE decodes to: the exported GIF's size
        }
    result = {k: v for k, v in latent.items() if k != "samples"}
    result["samples"] = model.from_model_space(out.float().cpu())
    denoised = model.from_model_space(last_denoised[0].float().cpu()) if last_denoised else result["samples"]
    return result, denoised


def add_noise_for_sigmas(
    model: DiffusionModel, noise: Noise, sigmas: Tensor, latent: Mapping[str, Any]
) -> dict[str, Any]:
    """ComfyUI's AddNoise: the latent put at noise level σ = |σ₀ − σ_last| (σ₀ for a one-entry list) by the
    model's own process (x + σ·ε for ε/v models, (1 − σ)·x + σ·ε for flow), with the seed's initial noise.

    An all-zero latent (an empty image) is not shifted into model space first, as ComfyUI does, so a
    16-channel empty latent stays centred. No noise (DisableNoise) or an empty schedule returns the latent
    as it is; non-finite values become 0, so a bad schedule cannot poison what follows."""
    if sigmas.numel() == 0 or noise.seed is None:
        return dict(latent)
    samples: Tensor = latent["samples"].float()
    sigma = float((sigmas[0] - sigmas[-1]).abs()) if sigmas.numel() > 1 else float(sigmas[0])
    eps = initial_noise(noise.seed, samples.shape, batch_index=_batch_index(latent, samples.shape[0]))
    x0 = model.to_model_space(samples) if bool(samples.count_nonzero()) else samples
    noisy = model.from_model_space(model.model_sampling.process.noised(x0, eps, sigma))
    result = {k: v for k, v in latent.items() if k != "samples"}
    result["samples"] = torch.nan_to_num(noisy, nan=0.0, posinf=0.0, neginf=0.0)
    return result


def _batch_index(latent: Mapping[str, Any], batch: int) -> list[int] | None:
    """Latent From Batch / Repeat Latent Batch record each latent's place in its seed's batch, so it
    gets the noise it had there; an index list that does not fit the batch is ignored."""
    index = latent.get("batch_index")
    if index is None or len(index) != batch:
        return None
    return [int(i) for i in index]


def ksampler(
    ctx: ExecutionContext,
    model: DiffusionModel,
    seed: int,
    steps: int,
    cfg: float,
    sampler_name: str,
    scheduler: str,
    positive: Sequence[CondEntry],
    negative: Sequence[CondEntry],
    latent: Mapping[str, Any],
    denoise: float = 1.0,
    *,
    add_noise: bool = True,
    start_step: int | None = None,
    last_step: int | None = None,
    force_full_denoise: bool = False,
) -> dict[str, Any]:
    """KSampler and KSamplerAdvanced: a schedule for `steps`, optionally cut to [start_step, last_step]."""
    sigmas = schedule(model, scheduler, steps, denoise, sampler_name)
    if last_step is not None and last_step < len(sigmas) - 1:
        sigmas = sigmas[: last_step + 1].clone()
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step is not None:
        if start_step >= len(sigmas) - 1:
            return dict(latent)
        sigmas = sigmas[start_step:]
    guider = Guider(model, positive, negative, cfg)
    out, _ = sample(ctx, guider, latent, sigmas, sampler_name, Noise(seed if add_noise else None))
    return out
