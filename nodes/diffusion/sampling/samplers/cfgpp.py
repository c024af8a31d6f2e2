"""CFG++ variants (Chung et al. 2024, "CFG++: Manifold-constrained Classifier Free Guidance for Diffusion
Models"): each is its base sampler with every step started from x + (D − D_uncond), so the sample is
re-noised along the unconditional noise estimate while the guided x0 prediction is kept (see
``_common.cfgpp_start``). The guider supplies the unconditional prediction through ``with_uncond``
(``nodes.diffusion.guidance``); it computes it even at cfg 1, where the result differs from the base
sampler whenever a negative prompt is given. The guidance scale is the paper's λ: values around 0.5–2 are
typical, far below plain CFG's.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from .dpmpp import sample_dpmpp_2m, sample_dpmpp_2s_ancestral
from .karras import sample_euler, sample_euler_ancestral
from .multistep import sample_gradient_estimation
from .res import sample_res_multistep, sample_res_multistep_ancestral


def cfg_pp(base: Any) -> Any:
    """The CFG++ form of a sampler that takes ``cfg_pp``: the same call with CFG++ re-noising on."""
    return partial(base, cfg_pp=True)


sample_euler_cfg_pp = cfg_pp(sample_euler)
sample_euler_ancestral_cfg_pp = cfg_pp(sample_euler_ancestral)
sample_dpmpp_2s_ancestral_cfg_pp = cfg_pp(sample_dpmpp_2s_ancestral)
sample_dpmpp_2m_cfg_pp = cfg_pp(sample_dpmpp_2m)
sample_res_multistep_cfg_pp = cfg_pp(sample_res_multistep)
sample_res_multistep_ancestral_cfg_pp = cfg_pp(sample_res_multistep_ancestral)
sample_gradient_estimation_cfg_pp = cfg_pp(sample_gradient_estimation)
