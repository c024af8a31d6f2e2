"""Sampling math for discrete-time Stable Diffusion models, as pure torch (no diffusers at run time).

* :mod:`.model_sampling` — σ table, σ ↔ t, ε/v-prediction → x0, start-noise scaling, ``make_denoiser``.
* :mod:`.schedules` — ``SCHEDULERS`` (name → sigmas), ``sigmas_for`` (denoise < 1), ``karras_sigmas``.
* :mod:`.samplers` — ``SAMPLERS`` (name → sampler with one uniform signature), ``StepInfo``.
* :mod:`.noise` — device-independent seeded noise (``initial_noise``, ``NoiseSource``).
* :mod:`.sample` — ``run_sampler``: noise + sampler + inpainting mask, model-free.
"""

from __future__ import annotations

from .model_sampling import Denoiser, ModelSampling, make_denoiser
from .noise import NoiseSource, initial_noise
from .sample import run_sampler
from .samplers import (
    DISCARD_PENULTIMATE_SIGMA_SAMPLERS,
    SAMPLERS,
    STOCHASTIC_SAMPLERS,
    SamplerFn,
    StepInfo,
)
from .schedules import SCHEDULERS, karras_sigmas, sigmas_for

__all__ = [
    "DISCARD_PENULTIMATE_SIGMA_SAMPLERS",
    "SAMPLERS",
    "SCHEDULERS",
    "STOCHASTIC_SAMPLERS",
    "Denoiser",
    "ModelSampling",
    "NoiseSource",
    "SamplerFn",
    "StepInfo",
    "initial_noise",
    "karras_sigmas",
    "make_denoiser",
    "run_sampler",
    "sigmas_for",
]
