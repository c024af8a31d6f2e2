"""Add Noise: ᾱ tables against their closed forms, x_t statistics, the node's figures and preview."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from graph_engine import ExecutionContext, InputError
from nodes.diffusion.forward import SCHEDULES, VP_SCHEDULES, T, add_noise, alphas_cumprod, noise_level
from nodes.diffusion.sampling import ModelSampling
from nodes.noise_lab import SCHEDULES as NODE_SCHEDULES
from nodes.noise_lab import add_noise as add_noise_node


def _closed_form_linear_in(start: float, end: float, power: float) -> list[float]:
    """ᾱ_t = ∏_{i≤t}(1−β_i), β_i linear in β^(1/power), written out without numpy."""
    a, b = start ** (1 / power), end ** (1 / power)
    abar, out = 1.0, []
    for i in range(T):
        beta = (a + (b - a) * i / (T - 1)) ** power
        abar *= 1.0 - beta
        out.append(abar)
    return out


def test_node_lists_the_same_schedules_without_importing_torch():
    assert tuple(NODE_SCHEDULES) == SCHEDULES


def test_scaled_linear_is_the_product_of_one_minus_beta():
    expected = _closed_form_linear_in(0.00085, 0.012, 2.0)
    np.testing.assert_allclose(alphas_cumprod("scaled_linear"), expected, rtol=1e-12)
    # ... and the same table (to float32 precision) as the samplers' ModelSampling.
    np.testing.assert_allclose(alphas_cumprod("scaled_linear"), ModelSampling().alphas_cumprod.numpy(), rtol=2e-5)
    assert alphas_cumprod("scaled_linear")[-1] == pytest.approx(0.0046, abs=2e-4)


def test_linear_is_ddpm():
    expected = _closed_form_linear_in(1e-4, 0.02, 1.0)
    np.testing.assert_allclose(alphas_cumprod("linear"), expected, rtol=1e-12)


def test_cosine_is_f_t_over_f_0():
    s = 0.008

    def f(t: float) -> float:
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    expected = [f(t) / f(0) for t in range(1, T + 1)]
    np.testing.assert_allclose(alphas_cumprod("cosine"), expected, atol=1e-6)
    # β is clipped at 0.999 only at the very end, so ᾱ_T is tiny but not exactly the closed form's 0.
    assert 0 < alphas_cumprod("cosine")[-1] < 1e-6


@pytest.mark.parametrize("schedule", VP_SCHEDULES)
def test_t_maps_zero_to_clean_and_1000_to_the_last_entry(schedule):
    table = alphas_cumprod(schedule)
    assert noise_level(schedule, 0).alpha_bar == 1.0
    assert noise_level(schedule, 1).alpha_bar == table[0]
    assert noise_level(schedule, 1000).alpha_bar == table[-1]
    level = noise_level(schedule, 250)
    assert level.signal**2 + level.noise**2 == pytest.approx(1.0)
    assert level.snr == pytest.approx(level.alpha_bar / (1 - level.alpha_bar))
    assert level.sigma == pytest.approx(1 / math.sqrt(level.snr))
    assert math.isinf(noise_level(schedule, 0).snr)
    with pytest.raises(ValueError):
        noise_level(schedule, 1001)


def _structured_latent() -> torch.Tensor:
    """A unit-variance, zero-mean, very non-Gaussian 'image' latent: stripes and a ramp."""
    h = w = 64
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    chans = [torch.sign(torch.sin(x / 3)), x / w - 0.5, torch.cos(y / 5), (x + y) % 7 - 3]
    z = torch.stack(chans)[None]
    z = z - z.mean()
    return z / z.std()


def test_t0_is_x0_exactly():
    x0 = _structured_latent()
    xt, _ = add_noise(x0, noise_level("scaled_linear", 0), seed=3)
    assert torch.equal(xt, x0)


def test_t1000_is_standard_normal_per_element():
    """Tolerances: 16384 elements, so the standard error of a mean/correlation is ≈ 1/√n ≈ 0.008;
    we allow about 4 standard errors (0.03) and 0.02 for the std and the 1σ fraction."""
    x0 = _structured_latent()
    level = noise_level("scaled_linear", 1000)
    xt, eps = add_noise(x0, level, seed=11)
    v = xt.flatten()
    assert abs(float(v.mean())) < 0.03
    assert abs(float(v.std()) - 1.0) < 0.02
    assert abs(float((v.abs() < 1).float().mean()) - 0.6827) < 0.02
    corr = float(torch.corrcoef(torch.stack([v, x0.flatten()]))[0, 1])
    assert corr == pytest.approx(level.signal, abs=0.03)  # √ᾱ_T ≈ 0.068: SD never quite reaches pure noise
    assert level.signal == pytest.approx(0.068, abs=0.002)
    assert torch.allclose(xt, level.signal * x0 + level.noise * eps)


@pytest.mark.parametrize("t", [100, 500, 900])
def test_correlation_with_x0_follows_sqrt_alpha_bar(t):
    x0 = _structured_latent()
    level = noise_level("cosine", t)
    xt, _ = add_noise(x0, level, seed=5)
    corr = float(torch.corrcoef(torch.stack([xt.flatten(), x0.flatten()]))[0, 1])
    assert corr == pytest.approx(level.signal, abs=0.03)


def test_the_noise_is_the_samplers_start_noise():
    from nodes.diffusion.sampling import initial_noise

    x0 = _structured_latent()
    _, eps = add_noise(x0, noise_level("linear", 10), seed=1234)
    assert torch.equal(eps, initial_noise(1234, x0.shape))


def _ctx(tmp_path) -> ExecutionContext:
    return ExecutionContext(node_id=7, title="Add Noise", temp_dir=tmp_path)


def test_node_reports_figures_text_and_a_preview(tmp_path):
    latent = {"samples": _structured_latent() / 0.18215}
    out = add_noise_node.execute(_ctx(tmp_path), t=400, schedule="scaled_linear", seed=2, latent=latent)
    level = noise_level("scaled_linear", 400)
    figures = out.ui["figures"]
    assert figures["alpha_bar"] == pytest.approx(level.alpha_bar)
    assert figures["sqrt_alpha_bar"] == pytest.approx(level.signal)
    assert figures["sqrt_one_minus_alpha_bar"] == pytest.approx(level.noise)
    assert figures["snr"] == pytest.approx(level.snr)
    assert any(line.startswith("ᾱ = ") for line in out.ui["text"])
    assert any(line.startswith("SNR = ") for line in out.ui["text"])
    (preview,) = out.ui["images"]
    from PIL import Image

    assert Image.open(preview["path"]).size == (512, 512)
    (noisy,) = out.values
    expected, _ = add_noise(latent["samples"] * 0.18215, level, seed=2)
    torch.testing.assert_close(noisy["samples"], expected / 0.18215)


def test_node_explains_missing_inputs(tmp_path):
    with pytest.raises(InputError) as err:
        add_noise_node.execute(_ctx(tmp_path), t=400, schedule="linear", seed=2)
    assert "connect an image" in err.value.message
    with pytest.raises(InputError) as err:
        add_noise_node.execute(_ctx(tmp_path), t=400, schedule="linear", seed=2, image=torch.zeros(1, 64, 64, 3))
    assert err.value.input_id == "vae"


def test_declaration_is_live_with_a_slider():
    assert add_noise_node.live
    t = add_noise_node.input("t")
    assert t is not None and t.display == "slider" and (t.min, t.max) == (0, 1000)
    assert add_noise_node.describe()["inputs"][3]["display"] == "slider"


def test_moving_t_reruns_only_the_noise_and_what_follows(tiny_models, tmp_path):
    """The shipped forward-noise workflow: the image load and VAE encode are cached across t changes."""
    from pathlib import Path

    from graph_engine import Executor
    from graph_engine.serialization import load
    from nodes import builtin_registry
    from nodes.folders import input_dir
    from tests.support.model_root import TINY_NAMES, write_test_image

    write_test_image(input_dir() / "example.png")
    graph = load(Path(__file__).parents[3] / "workflows" / "forward_noise.json")
    for n in graph.nodes.values():
        if "ckpt_name" in n.values:
            n.values["ckpt_name"] = TINY_NAMES["sd1"]
    (noise_id,) = [i for i, n in graph.nodes.items() if n.type == "ForwardNoise"]
    ex = Executor(builtin_registry(), output_dir=tmp_path)
    first = ex.run(graph)
    assert first.status == "done", first.error
    graph.set_value(noise_id, "t", 900)
    second = ex.run(graph)
    assert second.status == "done", second.error
    assert {graph.nodes[i].type for i in second.executed} == {"ForwardNoise", "VAEDecode", "PreviewImage"}
    assert second.ui[noise_id]["figures"]["t"] == 900.0
    assert second.ui[noise_id]["figures"]["alpha_bar"] < first.ui[noise_id]["figures"]["alpha_bar"]


# --- the flow path (SD3, FLUX, Z-Image) ----------------------------------------------------------------
def test_flow_level_follows_the_shifted_straight_path():
    level = noise_level("flow", 500, shift=3.0)
    assert level.flow_sigma == pytest.approx(0.75)  # 3·0.5/(1 + 2·0.5)
    assert (level.signal, level.noise) == pytest.approx((0.25, 0.75))
    assert level.snr == pytest.approx((0.25 / 0.75) ** 2)
    assert level.sigma == pytest.approx(0.75 / 0.25)  # the same level in VE units
    assert level.alpha_bar == pytest.approx(0.25**2 / (0.25**2 + 0.75**2))  # VP ᾱ with that SNR
    assert noise_level("flow", 250).flow_sigma == pytest.approx(0.25)  # shift 1: σ = t/1000
    assert noise_level("flow", 0).snr == math.inf and noise_level("flow", 1000).flow_sigma == 1.0
    assert "flow_sigma" in level.figures() and any(line.startswith("σ = ") for line in level.lines())


def test_flow_path_is_x0_at_t0_pure_noise_at_t1000_and_linear_between():
    x0 = _structured_latent()
    xt, _ = add_noise(x0, noise_level("flow", 0), seed=4)
    assert torch.equal(xt, x0)
    xt, eps = add_noise(x0, noise_level("flow", 1000, shift=3.0), seed=4)
    torch.testing.assert_close(xt, eps)  # unlike SD's √ᾱ_T ≈ 0.068, nothing of x₀ is left
    level = noise_level("flow", 300, shift=3.0)
    xt, eps = add_noise(x0, level, seed=4)
    sigma = 3 * 0.3 / (1 + 2 * 0.3)
    torch.testing.assert_close(xt, (1 - sigma) * x0 + sigma * eps)
    corr = float(torch.corrcoef(torch.stack([xt.flatten(), x0.flatten()]))[0, 1])
    assert corr == pytest.approx((1 - sigma) / math.hypot(1 - sigma, sigma), abs=0.03)


def test_node_noises_a_16_channel_latent_on_the_flow_path(tmp_path):
    raw = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    out = add_noise_node.execute(_ctx(tmp_path), t=600, schedule="flow", seed=9, shift=3.0, latent={"samples": raw})
    level = noise_level("flow", 600, shift=3.0)
    assert out.ui["figures"]["flow_sigma"] == pytest.approx(level.flow_sigma)
    (noisy,) = out.values
    expected, _ = add_noise(raw * 0.18215, level, seed=9)
    torch.testing.assert_close(noisy["samples"], expected / 0.18215)
