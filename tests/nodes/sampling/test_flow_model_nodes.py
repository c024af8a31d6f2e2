"""The flow nodes on real MODEL handles: ModelSampling* turn a DiffusionModel into a flow model whose
network is called with the right timestep, KSampler then samples the flow closed form end to end,
timestep ranges decide which prompt guides which steps, and the driver starts/inpaints on the flow path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from graph_engine import ExecutionContext, InputError
from nodes.conditioning import conditioning_set_timestep_range, flux_guidance
from nodes.diffusion.conditioning import CondEntry
from nodes.diffusion.ksampler import ksampler
from nodes.diffusion.model import DiffusionModel
from nodes.diffusion.sampling import (
    SAMPLERS,
    FlowModelSampling,
    ModelSampling,
    initial_noise,
    run_sampler,
    sigmas_for,
)
from nodes.latent import empty_sd3_latent
from nodes.model_sampling import model_sampling_aura_flow, model_sampling_flux, model_sampling_sd3

S = 0.5  # data std; the data mean of a prompt is the value its embeddings are filled with


class GaussianFlowNet(torch.nn.Module):
    """A "transformer" that knows its data exactly: N(μ, S²) per element with μ read from the prompt
    embeddings; returns the ideal velocity (x − E[x0|x])/σ for the σ it infers from the timestep.
    Records every call as (σ, [μ of each prompt in the batch])."""

    def __init__(self, multiplier: float) -> None:
        super().__init__()
        self.multiplier = multiplier
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.calls: list[tuple[float, list[float]]] = []

    def forward(self, x: Tensor, t: Tensor, encoder_hidden_states: Tensor, return_dict: bool = False) -> tuple[Tensor]:
        sigma = (t.float() / self.multiplier).reshape(-1, 1, 1, 1)
        mu = encoder_hidden_states.float().mean(dim=(1, 2)).reshape(-1, 1, 1, 1)
        self.calls.append((float(sigma.flatten()[0]), [float(m) for m in mu.flatten()]))
        a = 1.0 - sigma
        x0 = mu + a * S * S / (a * a * S * S + sigma * sigma) * (x.float() - a * mu)
        return ((x.float() - x0) / sigma,)


def flow_x0(x: Tensor, sigma: Tensor, mu: float) -> Tensor:
    """E[x0 | x] for N(μ, S²) data on the flow path (see test_sampling_flow.py)."""
    sg = sigma.reshape(-1, 1, 1, 1)
    a = 1.0 - sg
    return mu + a * S * S / (a * a * S * S + sg * sg) * (x - a * mu)


def sd_model(net: torch.nn.Module) -> DiffusionModel:
    """A 16-channel model handle that starts out as a discrete (SD-style) model called the UNet way, so
    the toy network sees plain (x, t, context); the flow transformers' own calls are tested against the
    pipelines in tests/nodes/dit/test_flow_pipeline_parity.py."""
    return DiffusionModel(
        unet=net,
        family="sd1",
        prediction_type="epsilon",
        model_sampling=ModelSampling(),
        latent_channels=16,
        latent_scale=1.0,
    )


def prompt(mu: float) -> list[CondEntry]:
    return [CondEntry(embeds=torch.full((1, 77, 8), mu))]


CTX = ExecutionContext(node_id=1, title="test")


def test_model_sampling_sd3_returns_a_new_flow_handle() -> None:
    base = sd_model(GaussianFlowNet(1000.0))
    (flow,) = model_sampling_sd3.execute(CTX, base, 3.0)
    assert isinstance(flow.model_sampling, FlowModelSampling) and flow.prediction_type == "flow"
    assert flow.model_sampling.shift == 3.0 and flow.model_sampling.multiplier == 1000.0
    assert flow.unet is base.unet
    assert isinstance(base.model_sampling, ModelSampling) and base.prediction_type == "epsilon"
    (aura,) = model_sampling_aura_flow.execute(CTX, base, 3.0)
    assert aura.model_sampling.multiplier == 1.0 and aura.model_sampling.num_train_timesteps == 1000
    with pytest.raises(InputError):
        model_sampling_sd3.execute(CTX, base, 0.0)


def test_model_sampling_flux_takes_mu_from_the_image_size() -> None:
    (flux,) = model_sampling_flux.execute(CTX, sd_model(GaussianFlowNet(1.0)), 1.15, 0.5, 1024, 1024)
    ms = flux.model_sampling
    assert ms.mu == pytest.approx(1.15) and ms.multiplier == 1.0 and len(ms.sigmas) == 10000
    (small,) = model_sampling_flux.execute(CTX, sd_model(GaussianFlowNet(1.0)), 1.15, 0.5, 256, 256)
    assert small.model_sampling.mu == pytest.approx(0.5)  # 256 tokens: the base_shift end


@pytest.mark.parametrize(("node", "multiplier"), [("sd3", 1000.0), ("aura", 1.0)])
def test_ksampler_on_a_flow_model_samples_the_closed_form(node: str, multiplier: float) -> None:
    net = GaussianFlowNet(multiplier)
    base = sd_model(net)
    patch = model_sampling_sd3 if node == "sd3" else model_sampling_aura_flow
    (flow,) = patch.execute(CTX, base, 3.0)
    (latent,) = empty_sd3_latent.execute(CTX, 256, 256, 2)
    assert latent["samples"].shape == (2, 16, 32, 32)
    out = ksampler(CTX, flow, 42, 20, 1.0, "heun", "simple", prompt(0.4), prompt(0.0), latent)
    samples = out["samples"]
    # The node path must be exactly Heun on the closed-form flow denoiser from pure noise z ...
    z = initial_noise(42, samples.shape)
    sigmas = sigmas_for(flow.model_sampling, "simple", 20)
    reference = SAMPLERS["heun"](lambda x, s: flow_x0(x, s, 0.4), z, sigmas)
    torch.testing.assert_close(samples, reference, atol=1e-5, rtol=1e-5)
    # ... which follows the ODE to near its exact end point μ + S·z (the last step to 0 is Euler).
    assert (samples - (0.4 + S * z)).abs().mean().item() < 0.03
    # the network was fed timestep = σ·multiplier, starting from pure noise σ = 1
    assert net.calls[0][0] == pytest.approx(1.0)
    assert min(c[0] for c in net.calls) > 0.0


def test_ancestral_ksampler_on_a_flow_model() -> None:
    (flow,) = model_sampling_sd3.execute(CTX, sd_model(GaussianFlowNet(1000.0)), 3.0)
    (latent,) = empty_sd3_latent.execute(CTX, 256, 256, 2)
    out = ksampler(CTX, flow, 7, 60, 1.0, "dpmpp_2m_sde", "simple", prompt(-0.3), prompt(0.0), latent)
    assert abs(out["samples"].mean().item() + 0.3) < 0.02
    assert abs(out["samples"].std().item() / S - 1.0) < 0.05


def test_timestep_range_decides_which_prompt_guides_each_step() -> None:
    net = GaussianFlowNet(1000.0)
    (flow,) = model_sampling_sd3.execute(CTX, sd_model(net), 3.0)
    (early,) = conditioning_set_timestep_range.execute(CTX, prompt(1.0), 0.0, 0.5)
    (late,) = conditioning_set_timestep_range.execute(CTX, prompt(-1.0), 0.5, 1.0)
    (latent,) = empty_sd3_latent.execute(CTX, 64, 64, 1)
    out = ksampler(CTX, flow, 1, 10, 1.0, "euler", "simple", [*early, *late], prompt(0.0), latent)
    boundary = flow.model_sampling.percent_to_sigma(0.5)  # shift(0.5) = 0.75
    assert boundary == pytest.approx(0.75)
    assert net.calls
    for sigma, mus in net.calls:
        expected = ([1.0] if sigma >= boundary else []) + ([-1.0] if sigma <= boundary else [])
        assert mus == pytest.approx(expected), sigma
    # the late prompt had the last word: the image is pulled to its mean
    assert out["samples"].mean().item() < -0.5


def test_a_gap_between_timestep_ranges_is_reported() -> None:
    (flow,) = model_sampling_sd3.execute(CTX, sd_model(GaussianFlowNet(1000.0)), 3.0)
    (early,) = conditioning_set_timestep_range.execute(CTX, prompt(1.0), 0.0, 0.3)
    (latent,) = empty_sd3_latent.execute(CTX, 64, 64, 1)
    with pytest.raises(Exception, match="timestep ranges"):
        ksampler(CTX, flow, 1, 10, 1.0, "euler", "simple", early, prompt(0.0), latent)
    with pytest.raises(InputError):
        conditioning_set_timestep_range.execute(CTX, prompt(1.0), 0.6, 0.2)


def test_negative_outside_its_range_is_skipped() -> None:
    """cfg > 1 with a negative active only early: later steps are unguided (one prompt in the batch)."""
    net = GaussianFlowNet(1000.0)
    (flow,) = model_sampling_sd3.execute(CTX, sd_model(net), 3.0)
    (neg,) = conditioning_set_timestep_range.execute(CTX, prompt(0.0), 0.0, 0.2)
    (latent,) = empty_sd3_latent.execute(CTX, 64, 64, 1)
    ksampler(CTX, flow, 1, 10, 3.0, "euler", "simple", prompt(0.5), neg, latent)
    cut = flow.model_sampling.percent_to_sigma(0.2)
    for sigma, mus in net.calls:
        assert len(mus) == (2 if sigma >= cut else 1)


def test_flux_guidance_is_stored_on_every_entry() -> None:
    cond = [*prompt(0.1), *prompt(0.2)]
    (out,) = flux_guidance.execute(CTX, cond, 3.5)
    assert [e.extras["guidance"] for e in out] == [3.5, 3.5]
    assert all("guidance" not in e.extras for e in cond)  # inputs are never changed in place


def test_run_sampler_starts_img2img_on_the_flow_path() -> None:
    ms = FlowModelSampling(3.0)
    latent = torch.full((1, 16, 8, 8), 0.7)
    sigmas = sigmas_for(ms, "simple", 10, denoise=0.5)
    seen: list[Tensor] = []

    def denoiser(x: Tensor, sigma: Tensor) -> Tensor:
        seen.append(x.clone())
        return torch.full_like(x, 0.7)

    out = run_sampler(denoiser, latent, sigmas, "euler", 3, model_sampling=ms)
    s0 = float(sigmas[0])
    assert s0 < 1.0
    torch.testing.assert_close(seen[0], (1 - s0) * latent + s0 * initial_noise(3, latent.shape))
    torch.testing.assert_close(out, latent)


def test_inpainting_keeps_the_unmasked_region_on_the_flow_path() -> None:
    ms = FlowModelSampling(3.0)
    latent = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1.0
    noise = initial_noise(5, latent.shape)
    checks: list[float] = []

    def denoiser(x: Tensor, sigma: Tensor) -> Tensor:
        s = float(sigma[0])
        kept = ((1 - s) * latent + s * noise)[..., 4:]
        checks.append(float((x[..., 4:] - kept).abs().max()))
        return torch.zeros_like(x)

    out = run_sampler(
        denoiser, latent, sigmas_for(ms, "simple", 6), "euler_ancestral", 5, noise_mask=mask, model_sampling=ms
    )
    assert max(checks) < 1e-6
    torch.testing.assert_close(out[..., 4:], latent[..., 4:])
    assert out[..., :4].abs().max() < 1e-5  # regenerated region went to the denoiser's x0 = 0
    assert math.isfinite(float(out.sum()))


def test_timeline_of_a_flow_run_shows_the_flow_path() -> None:
    """Frame 0 is pure noise (σ = 1, nothing scaled), t = σ·1000, and the x preview is x itself."""
    from nodes.diffusion.previews import latent_to_rgb

    (flow,) = model_sampling_sd3.execute(CTX, sd_model(GaussianFlowNet(1000.0)), 3.0)
    (latent,) = empty_sd3_latent.execute(CTX, 64, 64, 1)
    ctx = ExecutionContext(node_id=2, title="KSampler", settings={"record_timeline": True})
    out = ksampler(ctx, flow, 5, 6, 1.0, "euler", "simple", prompt(0.2), prompt(0.0), latent)
    frames = ctx.records["timeline"]["frames"]
    assert len(frames) == 7
    torch.testing.assert_close(frames[0]["x"], initial_noise(5, latent["samples"].shape))
    assert [f["t"] for f in frames[:-1]] == pytest.approx([1000 * s for s in ctx.records["timeline"]["sigmas"][:-1]])
    for f in frames:
        assert f["x_scale"] == 1.0
        assert np.array_equal(f["preview_x"], latent_to_rgb(f["x"], "sd1"))
    torch.testing.assert_close(frames[-1]["x"], out["samples"])
