"""Sampling math for discrete-time (SD) and flow-matching models, as pure torch (no diffusers at run time).

* :mod:`.model_sampling` — σ table, σ ↔ t, ε/v-prediction → x0, start-noise scaling, ``make_denoiser``.
* :mod:`.flow` — the same for rectified-flow models (SD3, FLUX, Z-Image) with their shift rules.
* :mod:`.noise_process` — VE vs flow forward process; what fresh noise looks like for each.
* :mod:`.schedules` — ``SCHEDULERS`` (name → sigmas), ``sigmas_for`` (denoise < 1), ``karras_sigmas``.
* :mod:`.tabulated` — the published Align Your Steps and GITS schedules (their own nodes).
* :mod:`.samplers` — ``SAMPLERS`` (name → sampler with one uniform signature), ``StepInfo``.
* :mod:`.noise` — device-independent seeded noise (``initial_noise``, ``NoiseSource``).
* :mod:`.sample` — ``run_sampler``: noise + sampler + inpainting mask, model-free.
"""

from __future__ import annotations

from .flow import FlowModelSampling, calculate_mu, flux_mu, time_shift
from .model_sampling import AnyModelSampling, Denoiser, ModelSampling, make_denoiser
from .noise import NoiseSource, initial_noise
from .noise_process import FLOW, VE, NoiseProcess
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
    "FLOW",
    "SAMPLERS",
    "SCHEDULERS",
    "STOCHASTIC_SAMPLERS",
    "VE",
    "AnyModelSampling",
    "Denoiser",
    "FlowModelSampling",
    "ModelSampling",
    "NoiseProcess",
    "NoiseSource",
    "SamplerFn",
    "StepInfo",
    "calculate_mu",
    "flux_mu",
    "initial_noise",
    "karras_sigmas",
    "make_denoiser",
    "run_sampler",
    "sigmas_for",
    "time_shift",
]
