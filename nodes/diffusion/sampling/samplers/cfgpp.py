"""CFG++ variants (Chung et al. 2024, "CFG++: Manifold-constrained Classifier Free Guidance for Diffusion
Models"): each is its base sampler with every step started from x + (D − D_uncond), so the sample is
re-noised along the unconditional noise estimate while the guided x0 prediction is kept (see
``_common.cfgpp_start``). The guider supplies the unconditional prediction through ``with_uncond``
(``nodes.diffusion.guidance``); it computes it even at cfg 1, where the result differs from the base
sampler whenever a negative prompt is given. The guidance scale is the paper's λ: values around 0.5–2 are
typical, far below plain CFG's.
"""

from __future__ import annotations

from torch import Tensor

from ..model_sampling import Denoiser
from ..noise_process import VE, NoiseProcess
from ._common import Callback, StepNoise
from .dpmpp import sample_dpmpp_2m, sample_dpmpp_2s_ancestral
from .karras import sample_euler, sample_euler_ancestral
from .multistep import sample_gradient_estimation
from .res import sample_res_multistep, sample_res_multistep_ancestral


def sample_euler_cfg_pp(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
) -> Tensor:
    """euler with CFG++ re-noising."""
    return sample_euler(denoiser, x, sigmas, noise=noise, callback=callback, process=process, cfg_pp=True)


def sample_euler_ancestral_cfg_pp(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    eta: float = 1.0,
) -> Tensor:
    """euler_ancestral with CFG++ re-noising."""
    return sample_euler_ancestral(
        denoiser, x, sigmas, noise=noise, callback=callback, process=process, eta=eta, cfg_pp=True
    )


def sample_dpmpp_2s_ancestral_cfg_pp(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    eta: float = 1.0,
) -> Tensor:
    """dpmpp_2s_ancestral with CFG++ re-noising."""
    return sample_dpmpp_2s_ancestral(
        denoiser, x, sigmas, noise=noise, callback=callback, process=process, eta=eta, cfg_pp=True
    )


def sample_dpmpp_2m_cfg_pp(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
) -> Tensor:
    """dpmpp_2m with CFG++ re-noising."""
    return sample_dpmpp_2m(denoiser, x, sigmas, noise=noise, callback=callback, process=process, cfg_pp=True)


def sample_res_multistep_cfg_pp(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
) -> Tensor:
    """res_multistep with CFG++ re-noising."""
    return sample_res_multistep(denoiser, x, sigmas, noise=noise, callback=callback, process=process, cfg_pp=True)


def sample_res_multistep_ancestral_cfg_pp(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
    eta: float = 1.0,
) -> Tensor:
    """res_multistep_ancestral with CFG++ re-noising."""
    return sample_res_multistep_ancestral(
        denoiser, x, sigmas, noise=noise, callback=callback, process=process, eta=eta, cfg_pp=True
    )


def sample_gradient_estimation_cfg_pp(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    noise: StepNoise | None = None,
    callback: Callback | None = None,
    process: NoiseProcess = VE,
) -> Tensor:
    """gradient_estimation with CFG++ re-noising."""
    return sample_gradient_estimation(denoiser, x, sigmas, noise=noise, callback=callback, process=process, cfg_pp=True)
