"""Sampler registry: name → function with one uniform signature (see :class:`SamplerFn`).

Names follow ComfyUI's ``SAMPLER_NAMES`` so saved workflows map across. Each sampler takes a denoiser
``D(x, σ) -> x0``, the starting sample (already at ``sigmas[0]``) and the schedule, and returns the
sample at ``sigmas[-1]``. Samplers in :data:`STOCHASTIC_SAMPLERS` need ``noise=NoiseSource(...)``.

Modules: ``karras`` (Euler, Heun, Heun++, DPM-2 and ancestral forms), ``lms``, ``dpmpp`` (DPM-Solver++ 2S/2M/SDE),
``exponential`` (exact exponential-integrator weights: 2M-SDE-heun, 3M-SDE, SEEDS, SA-Solver),
``dpm_solver`` (DPM-Solver fast/adaptive), ``multistep`` (iPNDM, DEIS, gradient estimation), ``res``,
``er_sde``, ``unipc``, ``misc`` (DDIM, DDPM, LCM) and ``cfgpp`` (the CFG++ variants).
"""

from __future__ import annotations

from ._common import Callback, SamplerFn, StepInfo, StepNoise, ancestral_split
from .cfgpp import (
    sample_dpmpp_2m_cfg_pp,
    sample_dpmpp_2s_ancestral_cfg_pp,
    sample_euler_ancestral_cfg_pp,
    sample_euler_cfg_pp,
    sample_gradient_estimation_cfg_pp,
    sample_res_multistep_ancestral_cfg_pp,
    sample_res_multistep_cfg_pp,
)
from .dpm_solver import sample_dpm_adaptive, sample_dpm_fast
from .dpmpp import sample_dpmpp_2m, sample_dpmpp_2m_sde, sample_dpmpp_2s_ancestral, sample_dpmpp_sde
from .er_sde import sample_er_sde
from .exponential import (
    sample_dpmpp_2m_sde_heun,
    sample_dpmpp_3m_sde,
    sample_sa_solver,
    sample_sa_solver_pece,
    sample_seeds_2,
    sample_seeds_3,
)
from .karras import (
    sample_dpm_2,
    sample_dpm_2_ancestral,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
    sample_heunpp2,
)
from .lms import sample_lms
from .misc import sample_ddim, sample_ddpm, sample_lcm
from .multistep import sample_deis, sample_gradient_estimation, sample_ipndm, sample_ipndm_v
from .res import sample_res_multistep, sample_res_multistep_ancestral
from .unipc import sample_uni_pc, sample_uni_pc_bh2

#: In ComfyUI's KSampler order (its ``SAMPLER_NAMES``), so the combo lists read the same.
_CPU_SAMPLERS: dict[str, SamplerFn] = {
    "euler": sample_euler,
    "euler_cfg_pp": sample_euler_cfg_pp,
    "euler_ancestral": sample_euler_ancestral,
    "euler_ancestral_cfg_pp": sample_euler_ancestral_cfg_pp,
    "heun": sample_heun,
    "heunpp2": sample_heunpp2,
    "dpm_2": sample_dpm_2,
    "dpm_2_ancestral": sample_dpm_2_ancestral,
    "lms": sample_lms,
    "dpm_fast": sample_dpm_fast,
    "dpm_adaptive": sample_dpm_adaptive,
    "dpmpp_2s_ancestral": sample_dpmpp_2s_ancestral,
    "dpmpp_2s_ancestral_cfg_pp": sample_dpmpp_2s_ancestral_cfg_pp,
    "dpmpp_sde": sample_dpmpp_sde,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_cfg_pp": sample_dpmpp_2m_cfg_pp,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "dpmpp_2m_sde_heun": sample_dpmpp_2m_sde_heun,
    "dpmpp_3m_sde": sample_dpmpp_3m_sde,
    "ddpm": sample_ddpm,
    "lcm": sample_lcm,
    "ipndm": sample_ipndm,
    "ipndm_v": sample_ipndm_v,
    "deis": sample_deis,
    "res_multistep": sample_res_multistep,
    "res_multistep_cfg_pp": sample_res_multistep_cfg_pp,
    "res_multistep_ancestral": sample_res_multistep_ancestral,
    "res_multistep_ancestral_cfg_pp": sample_res_multistep_ancestral_cfg_pp,
    "gradient_estimation": sample_gradient_estimation,
    "gradient_estimation_cfg_pp": sample_gradient_estimation_cfg_pp,
    "er_sde": sample_er_sde,
    "seeds_2": sample_seeds_2,
    "seeds_3": sample_seeds_3,
    "sa_solver": sample_sa_solver,
    "sa_solver_pece": sample_sa_solver_pece,
    "ddim": sample_ddim,
    "uni_pc": sample_uni_pc,
    "uni_pc_bh2": sample_uni_pc_bh2,
}

#: ComfyUI's ``*_gpu`` names build their Brownian-tree noise on the GPU; here step noise is always drawn on
#: the CPU (a seed gives the same image on any device), so each is the same sampler as its CPU name.
GPU_ALIASES: dict[str, str] = {
    "dpmpp_sde_gpu": "dpmpp_sde",
    "dpmpp_2m_sde_gpu": "dpmpp_2m_sde",
    "dpmpp_2m_sde_heun_gpu": "dpmpp_2m_sde_heun",
    "dpmpp_3m_sde_gpu": "dpmpp_3m_sde",
}


def _with_aliases() -> dict[str, SamplerFn]:
    out: dict[str, SamplerFn] = {}
    for name, fn in _CPU_SAMPLERS.items():
        out[name] = fn
        out.update({alias: fn for alias, target in GPU_ALIASES.items() if target == name})
    return out


SAMPLERS: dict[str, SamplerFn] = _with_aliases()

#: Samplers that draw per-step noise (need a NoiseSource; results depend on the seed beyond x_T).
STOCHASTIC_SAMPLERS: frozenset[str] = frozenset(
    name
    for name in SAMPLERS
    if name.split("_gpu")[0]
    in {
        "euler_ancestral",
        "euler_ancestral_cfg_pp",
        "dpm_2_ancestral",
        "dpmpp_2s_ancestral",
        "dpmpp_2s_ancestral_cfg_pp",
        "dpmpp_sde",
        "dpmpp_2m_sde",
        "dpmpp_2m_sde_heun",
        "dpmpp_3m_sde",
        "ddpm",
        "lcm",
        "res_multistep_ancestral",
        "res_multistep_ancestral_cfg_pp",
        "er_sde",
        "seeds_2",
        "seeds_3",
        "sa_solver",
        "sa_solver_pece",
    }
)

#: ComfyUI schedules these one step longer and drops the penultimate sigma
#: (``schedules.sigmas_for(..., discard_penultimate=True)``): their last σ_min → 0 step is plain
#: first order, so spending it on the tiny σ_min interval wastes a (double) model call.
DISCARD_PENULTIMATE_SIGMA_SAMPLERS: frozenset[str] = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})

#: Model evaluations per step, for progress estimates (UniPC's corrector reuses the next evaluation).
#: dpm_adaptive chooses its own steps (3 calls per attempted step); 3 is its cost per accepted step.
EVALS_PER_STEP: dict[str, int] = {name: 1 for name in SAMPLERS} | {
    "heun": 2,
    "heunpp2": 3,  # 2 on the step before the last, 1 on the last
    "dpm_2": 2,
    "dpm_2_ancestral": 2,
    "dpm_adaptive": 3,
    "dpmpp_2s_ancestral": 2,
    "dpmpp_2s_ancestral_cfg_pp": 2,
    "dpmpp_sde": 2,
    "dpmpp_sde_gpu": 2,
    "seeds_2": 2,
    "seeds_3": 3,
    "sa_solver_pece": 2,
}

__all__ = [
    "DISCARD_PENULTIMATE_SIGMA_SAMPLERS",
    "EVALS_PER_STEP",
    "GPU_ALIASES",
    "SAMPLERS",
    "STOCHASTIC_SAMPLERS",
    "Callback",
    "SamplerFn",
    "StepInfo",
    "StepNoise",
    "ancestral_split",
]
