"""Model-free sampling driver: noise the latent, run a registered sampler, honour an inpainting mask.

This is what a KSampler-style node calls once it has a denoiser ``D(x, σ) -> x0`` (model + CFG) and a
schedule. Starting sample: the latent put at the first σ by the model's forward process —
``latent + σ·noise`` (VE) or ``(1 − σ)·latent + σ·noise`` (flow); for txt2img the latent is zeros,
for img2img / denoise < 1 it is the encoded image and the schedule starts lower (see
``schedules.sigmas_for``).

Inpainting follows ComfyUI's KSamplerX0Inpaint semantics (mask 1 = regenerate, 0 = keep): before every
denoiser call the kept region of the sample is replaced by the original latent noised to the current σ
with the *same* initial noise, and the prediction there is replaced by the original latent, so the
sampler sees a consistent picture and the kept region ends exactly at the original.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from .model_sampling import AnyModelSampling, Denoiser
from .noise import NoiseSource, initial_noise
from .noise_process import VE, NoiseProcess
from .samplers import SAMPLERS, Callback

StartScale = Literal["sigma", "sigma_max", "comfyui"]


def _bcast(sigma: Tensor, like: Tensor) -> Tensor:
    return sigma.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def _mask_to(mask: Tensor, latent: Tensor) -> Tensor:
    """Bring a MASK ([H, W], [B, H, W] as ComfyUI passes it, or [B, 1|C, H, W]) onto the latent's grid
    and batch: bilinear resize (pixel-space masks are 8× larger), batch repeated cyclically."""
    m = mask.to(dtype=torch.float32)
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None]
    elif m.ndim != 4:
        raise ValueError(f"noise_mask must have 2 to 4 dimensions, got shape {tuple(mask.shape)}")
    if m.shape[-2:] != latent.shape[-2:]:
        m = torch.nn.functional.interpolate(m, size=tuple(latent.shape[-2:]), mode="bilinear")
    if m.shape[0] != latent.shape[0]:
        reps = -(-latent.shape[0] // m.shape[0])
        m = m.repeat(reps, 1, 1, 1)[: latent.shape[0]]
    return m.to(device=latent.device, dtype=latent.dtype)


class _MaskedDenoiser:
    """KSamplerX0Inpaint semantics around a denoiser; keeps its ``with_uncond`` side channel (CFG++)."""

    def __init__(self, denoiser: Denoiser, latent: Tensor, noise: Tensor, mask: Tensor, process: NoiseProcess) -> None:
        self.denoiser, self.latent, self.noise, self.mask, self.process = denoiser, latent, noise, mask, process
        self.keep = 1.0 - mask

    def _input(self, x: Tensor, sigma: Tensor) -> Tensor:
        renoised = self.process.noised(self.latent, self.noise, _bcast(sigma, x))
        return x * self.mask + renoised * self.keep

    def _blend(self, denoised: Tensor) -> Tensor:
        return denoised * self.mask + self.latent * self.keep

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        return self._blend(self.denoiser(self._input(x, sigma), sigma))

    def with_uncond(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        x_in = self._input(x, sigma)
        with_uncond = getattr(self.denoiser, "with_uncond", None)
        if with_uncond is None:
            denoised = self._blend(self.denoiser(x_in, sigma))
            return denoised, denoised
        guided, uncond = with_uncond(x_in, sigma)
        return self._blend(guided), self._blend(uncond)


def masked_denoiser(
    denoiser: Denoiser, latent: Tensor, noise: Tensor, mask: Tensor, process: NoiseProcess = VE
) -> Denoiser:
    """Wrap ``denoiser`` for inpainting (KSamplerX0Inpaint semantics); ``mask`` already on the latent grid."""
    return _MaskedDenoiser(denoiser, latent, noise, mask, process)


def run_sampler(
    denoise_fn: Denoiser,
    latent: Tensor,
    sigmas: Tensor,
    sampler_name: str,
    seed: int,
    add_noise: bool = True,
    noise_mask: Tensor | None = None,
    callback: Callback | None = None,
    start_scale: StartScale = "sigma",
    *,
    model_sampling: AnyModelSampling | None = None,
    batch_index: list[int] | None = None,
    sampler_options: Mapping[str, Any] | None = None,
) -> Tensor:
    """Sample from ``latent`` along ``sigmas`` with the named sampler; returns the latent at sigmas[-1].

    ``start_scale="sigma"`` (alias ``"sigma_max"``; the default, for diffusers parity) starts at
    ``latent + sigmas[0]·noise``; ``"comfyui"`` uses √(1+σ²) when sigmas[0] is the model's σ_max (needs
    ``model_sampling``). A flow ``model_sampling`` (its ``process``) makes the start, the inpainting
    re-noise and the samplers' fresh noise follow ``(1 − σ)·latent + σ·noise`` instead.
    ``add_noise=False`` uses zero noise (continuing a partly denoised latent).
    Per-step noise comes from ``NoiseSource(seed)``, a stream separate from the initial noise. An empty
    or single-entry schedule returns the latent unchanged (denoise <= 0). ``sampler_options`` are extra
    keyword arguments of the chosen sampler (e.g. ``eta`` for ancestral ones, ``order`` for lms/uni_pc).
    Latents should be float32: the samplers keep the sample in its own dtype.
    """
    try:
        sampler = SAMPLERS[sampler_name]
    except KeyError:
        raise ValueError(f"unknown sampler {sampler_name!r}; known: {sorted(SAMPLERS)}") from None
    if sigmas.numel() < 2:
        return latent
    if add_noise:
        noise = initial_noise(seed, latent.shape, batch_index=batch_index).to(latent.device, latent.dtype)
    else:
        noise = torch.zeros_like(latent)

    process = VE if model_sampling is None else model_sampling.process
    sigma0 = float(sigmas[0])
    if start_scale in ("sigma", "sigma_max"):
        x = process.noised(latent, noise, sigma0)
    elif start_scale == "comfyui":
        if model_sampling is None:
            raise ValueError('start_scale="comfyui" needs model_sampling to know σ_max')
        x = model_sampling.noise_scaling(sigma0, noise, latent, mode="comfyui")
    else:
        raise ValueError(f"unknown start_scale {start_scale!r}")

    denoiser = denoise_fn
    mask: Tensor | None = None
    if noise_mask is not None:
        mask = _mask_to(noise_mask, latent)
        denoiser = masked_denoiser(denoise_fn, latent, noise, mask, process)
        x = x * mask + process.noised(latent, noise, sigma0) * (1.0 - mask)

    run: Callable[..., Tensor] = sampler  # options are sampler-specific, outside the shared protocol
    options = dict(sampler_options or {})
    out = run(denoiser, x, sigmas, noise=NoiseSource(seed), callback=callback, process=process, **options)
    if mask is not None:
        out = out * mask + process.noised(latent, noise, float(sigmas[-1])) * (1.0 - mask)
    return out
