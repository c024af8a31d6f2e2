"""Sampler registry: name → function with one uniform signature (see :class:`SamplerFn`).

Names follow ComfyUI's ``SAMPLER_NAMES`` so saved workflows map across. Each sampler takes a denoiser
``D(x, σ) -> x0``, the starting sample (already at ``sigmas[0]``) and the schedule, and returns the
sample at ``sigmas[-1]``. Samplers in :data:`STOCHASTIC_SAMPLERS` need ``noise=NoiseSource(...)``.
"""

from __future__ import annotations

from ._common import Callback, SamplerFn, StepInfo, StepNoise, ancestral_split
from .dpmpp import sample_dpmpp_2m, sample_dpmpp_2m_sde, sample_dpmpp_2s_ancestral, sample_dpmpp_sde
from .karras import (
    sample_dpm_2,
    sample_dpm_2_ancestral,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
)
from .lms import sample_lms
from .misc import sample_ddim, sample_lcm
from .res import sample_res_multistep, sample_res_multistep_ancestral
from .unipc import sample_uni_pc, sample_uni_pc_bh2

SAMPLERS: dict[str, SamplerFn] = {
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "dpm_2": sample_dpm_2,
    "dpm_2_ancestral": sample_dpm_2_ancestral,
    "lms": sample_lms,
    "dpmpp_2s_ancestral": sample_dpmpp_2s_ancestral,
    "dpmpp_sde": sample_dpmpp_sde,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "ddim": sample_ddim,
    "uni_pc": sample_uni_pc,
    "uni_pc_bh2": sample_uni_pc_bh2,
    "lcm": sample_lcm,
    "res_multistep": sample_res_multistep,
    "res_multistep_ancestral": sample_res_multistep_ancestral,
}

#: Samplers that draw per-step noise (need a NoiseSource; results depend on the seed beyond x_T).
STOCHASTIC_SAMPLERS: frozenset[str] = frozenset(
    {
        "euler_ancestral",
        "dpm_2_ancestral",
        "dpmpp_2s_ancestral",
        "dpmpp_sde",
        "dpmpp_2m_sde",
        "lcm",
        "res_multistep_ancestral",
    }
)

#: ComfyUI schedules these one step longer and drops the penultimate sigma
#: (``schedules.sigmas_for(..., discard_penultimate=True)``): their last σ_min → 0 step is plain
#: first order, so spending it on the tiny σ_min interval wastes a (double) model call.
DISCARD_PENULTIMATE_SIGMA_SAMPLERS: frozenset[str] = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})

#: Model evaluations per step, for progress estimates (UniPC's corrector reuses the next evaluation).
EVALS_PER_STEP: dict[str, int] = {name: 1 for name in SAMPLERS} | {
    "heun": 2,
    "dpm_2": 2,
    "dpm_2_ancestral": 2,
    "dpmpp_2s_ancestral": 2,
    "dpmpp_sde": 2,
}

__all__ = [
    "DISCARD_PENULTIMATE_SIGMA_SAMPLERS",
    "EVALS_PER_STEP",
    "SAMPLERS",
    "STOCHASTIC_SAMPLERS",
    "Callback",
    "SamplerFn",
    "StepInfo",
    "StepNoise",
    "ancestral_split",
]
