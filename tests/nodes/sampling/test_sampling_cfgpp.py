"""CFG++ (Chung et al. 2024): the guider's unconditional side channel and the samplers' closed form.

With point-mass data the conditional and unconditional denoisers are constants μ_c and μ_u, and the
guided prediction at scale λ is D = μ_u + λ·(μ_c − μ_u). CFG++'s DDIM step x' = D + σ'·(x − D_u)/σ then
moves e = (x − μ_u)/σ by exactly λ·(μ_c − μ_u)/σ' per step, so after the steps to σ_1 … σ_N
x_N = μ_u + σ_N·(e_0 + λ·(μ_c − μ_u)·Σ 1/σ_k). Every CFG++ sampler whose higher-order terms vanish for a
constant prediction must land there; plain CFG would instead give μ_u + λδ + σ_N·e_0.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from nodes.diffusion.conditioning import CondEntry
from nodes.diffusion.guidance import Guider
from nodes.diffusion.sampling import FLOW, SAMPLERS, VE, FlowModelSampling, ModelSampling, NoiseSource, sigmas_for
from nodes.diffusion.sampling.sample import masked_denoiser

MU_C, MU_U, LAM = 0.8, -0.2, 1.5


class PointMasses:
    """A guided denoiser for two point masses: the GuidedDenoiser protocol without a network."""

    def __init__(self) -> None:
        self.uncond_calls = 0

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        return torch.full_like(x, MU_U + LAM * (MU_C - MU_U))

    def with_uncond(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        self.uncond_calls += 1
        return self(x, sigma), torch.full_like(x, MU_U)


CLOSED_FORM = [
    ("euler_cfg_pp", {}),
    ("dpmpp_2m_cfg_pp", {}),
    ("res_multistep_cfg_pp", {}),
    ("euler_ancestral_cfg_pp", {"eta": 0.0}),
    ("dpmpp_2s_ancestral_cfg_pp", {"eta": 0.0}),
    ("res_multistep_ancestral_cfg_pp", {"eta": 0.0}),
]


@pytest.mark.parametrize("process", [VE, FLOW], ids=["ve", "flow"])
@pytest.mark.parametrize(("sampler", "options"), CLOSED_FORM)
def test_cfgpp_follows_the_unconditional_noise_estimate(sampler: str, options: dict[str, float], process) -> None:
    ms = ModelSampling() if process is VE else FlowModelSampling(3.0)
    sigmas = sigmas_for(ms, "karras", 12, 1.0)[:9].double()  # stop with noise left: σ_N > 0
    s = sigmas.tolist()
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x0 = MU_U + z * s[0]
    denoiser = PointMasses()
    out = SAMPLERS[sampler](denoiser, x0, sigmas, noise=NoiseSource(1), process=process, **options)
    e = z + LAM * (MU_C - MU_U) * sum(1.0 / sk for sk in s[1:])
    torch.testing.assert_close(out, MU_U + s[-1] * e, atol=1e-9, rtol=1e-9)
    assert denoiser.uncond_calls >= len(s) - 1
    plain = SAMPLERS[sampler.removesuffix("_cfg_pp")](denoiser, x0, sigmas, noise=NoiseSource(1), process=process)
    assert not torch.allclose(plain, out)  # control: the side channel changes the result


def test_ancestral_cfgpp_lands_on_the_guided_prediction_with_fresh_noise() -> None:
    """η = 1 on point masses: each step is D + σ_down·ε̂_u + σ_up·z, and the last step to 0 lands on D."""
    sigmas = sigmas_for(ModelSampling(), "karras", 10)
    x = MU_U + torch.randn(64, 4, 8, 8, generator=torch.Generator().manual_seed(5)) * float(sigmas[0])
    out = SAMPLERS["euler_ancestral_cfg_pp"](PointMasses(), x, sigmas, noise=NoiseSource(2))
    torch.testing.assert_close(out, torch.full_like(out, MU_U + LAM * (MU_C - MU_U)))


def test_masked_denoiser_keeps_the_side_channel() -> None:
    """Inpainting wraps the denoiser; the wrapper must pass the unconditional prediction through."""
    latent = torch.zeros(1, 4, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1.0
    wrapped = masked_denoiser(PointMasses(), latent, torch.zeros_like(latent), mask)
    guided, uncond = wrapped.with_uncond(torch.ones_like(latent), torch.tensor([1.0]))  # type: ignore[attr-defined]
    assert float(uncond[0, 0, 0, 0]) == pytest.approx(MU_U) and float(uncond[0, 0, 0, 7]) == 0.0
    assert float(guided[0, 0, 0, 0]) == pytest.approx(MU_U + LAM * (MU_C - MU_U))


@pytest.fixture(scope="module")
def tiny_unet_model():
    from tests.nodes.lora.lora_support import diffusion_model
    from tests.support.tiny_sd import build_tiny_models

    return diffusion_model(build_tiny_models("sd1").unet)


@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_guider_reports_the_unconditional_prediction(tiny_unet_model, cfg: float) -> None:
    """``with_uncond`` gives the guided prediction and, beside it, exactly what the negative prompt alone
    predicts: even at cfg 1, where the plain call skips the negative half."""
    gen = torch.Generator().manual_seed(11)
    pos, neg = CondEntry(torch.randn(1, 5, 32, generator=gen)), CondEntry(torch.randn(1, 5, 32, generator=gen))
    x = torch.randn(1, 4, 8, 8, generator=gen) * 3.0
    sigma = torch.tensor([3.0])
    with torch.inference_mode(), tiny_unet_model.active():
        denoiser = Guider(tiny_unet_model, [pos], [neg], cfg).denoiser((64, 64))
        guided, uncond = denoiser.with_uncond(x, sigma)
        only_neg = Guider(tiny_unet_model, [neg], None, 1.0).denoiser((64, 64))(x, sigma)
        only_pos = Guider(tiny_unet_model, [pos], None, 1.0).denoiser((64, 64))(x, sigma)
        plain = denoiser(x, sigma)
    torch.testing.assert_close(uncond, only_neg, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(guided, plain, atol=1e-5, rtol=1e-5)
    expected = only_neg + cfg * (only_pos - only_neg)  # mixing x0 equals mixing ε (both linear)
    torch.testing.assert_close(guided, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(uncond, guided)
    assert math.isfinite(float(guided.abs().max()))
