"""Area, mask and strength conditioning change what the sampler's guider computes, by ComfyUI's rule:
each side's prediction is Σ w_e·out_e / Σ w_e per pixel with w = strength × mask (areas fading over 8
cells from inner sides), and area entries are predicted on the cropped latent. Checked against the
formula written out by hand for a toy network whose output is a known function of its prompt."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from graph_engine import ExecutionContext, InputError
from nodes import builtin_registry
from nodes.conditioning_tools import (
    clip_text_encode_sdxl_refiner,
    conditioning_average,
    conditioning_concat,
    conditioning_set_area,
    conditioning_set_area_percentage,
    conditioning_set_area_strength,
    conditioning_set_mask,
    inpaint_model_conditioning,
)
from nodes.diffusion.clip import ClipModel
from nodes.diffusion.conditioning import AESTHETIC_SCORE_KEY, CondEntry
from nodes.diffusion.guidance import Guider, inpaint_concat
from nodes.diffusion.model import DiffusionModel, VAEModel
from nodes.diffusion.sampling import ModelSampling
from tests.support.tiny_sd import build_tiny_models

CTX = ExecutionContext(node_id=1, title="test")
C = 0.1  # the toy network's output: μ(prompt) + C·x, pointwise


class PromptMeanNet(torch.nn.Module):
    """A "UNet" whose ε is μ + C·x per element, μ the mean of the prompt's embeddings; records the
    spatial size and the extra (inpainting) channels of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.shapes: list[tuple[int, int]] = []
        self.extra: list[Tensor] = []

    def forward(self, x: Tensor, t: Tensor, encoder_hidden_states: Tensor, return_dict: bool = False) -> tuple[Tensor]:
        mu = encoder_hidden_states.float().mean(dim=(1, 2)).reshape(-1, 1, 1, 1)
        self.shapes.append(tuple(x.shape[-2:]))
        self.extra.append(x[:, 4:].clone())
        return (mu + C * x[:, :4].float(),)


def toy_model(inpainting: bool = False) -> tuple[DiffusionModel, PromptMeanNet]:
    net = PromptMeanNet()
    model = DiffusionModel(
        unet=net,
        family="sd1",
        prediction_type="epsilon",
        model_sampling=ModelSampling(),
        latent_scale=1.0,
        inpainting=inpainting,
    )
    return model, net


def prompt(mu: float) -> list[CondEntry]:
    return [CondEntry(embeds=torch.full((1, 77, 8), mu))]


SIGMA = 2.0


def eps_of(guider: Guider, x: Tensor, concat: Tensor | None = None) -> Tensor:
    """Run the guider's denoiser at σ and recover the combined ε from x0 = x − σ·ε."""
    denoised = guider.denoiser((x.shape[-2] * 8, x.shape[-1] * 8), concat)(x, torch.tensor([SIGMA]))
    return (x - denoised) / SIGMA


def x_in_of(x: Tensor) -> Tensor:
    return x / math.sqrt(SIGMA**2 + 1)


def fade(n: int, inner_start: bool, inner_end: bool) -> Tensor:
    """ComfyUI's ramp along one side of an area: k/8 for the k-th cell (from 1) from an inner edge."""
    w = torch.ones(n)
    for t in range(min(8, n)):
        if inner_start:
            w[t] *= (t + 1) / 8
        if inner_end:
            w[n - 1 - t] *= (t + 1) / 8
    return w


def test_overlapping_area_mask_and_strength_match_the_weighted_average() -> None:
    model, net = toy_model()
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    whole = prompt(1.0)  # weight 1 everywhere
    (area,) = conditioning_set_area.execute(CTX, prompt(3.0), 64, 64, 64, 0, 2.0)  # cells y 0..7, x 8..15
    mask = torch.zeros(1, 128, 128)
    mask[:, 32:96, :] = 0.5  # cells 4..11 after the bilinear resize to the latent
    (masked,) = conditioning_set_mask.execute(CTX, prompt(-2.0), mask, 1.5, "default")
    eps = eps_of(Guider(model, [*whole, *area, *masked]), x)

    w_whole = torch.ones(16, 16)
    w_area = torch.zeros(16, 16)
    # top edge is the image border (no fade), bottom and left are inside the image, right is the border
    w_area[0:8, 8:16] = 2.0 * fade(8, False, True)[:, None] * fade(8, True, False)[None, :]
    w_mask = torch.zeros(16, 16)
    w_mask[4:12, :] = 0.5 * 1.5
    mean_mu = (w_whole * 1.0 + w_area * 3.0 + w_mask * -2.0) / (w_whole + w_area + w_mask)
    expected = mean_mu + C * x_in_of(x)
    torch.testing.assert_close(eps, expected, atol=1e-5, rtol=1e-5)
    # the area entry was predicted on its 8×8 crop, the full-frame entries on the whole latent
    assert sorted(set(net.shapes)) == [(8, 8), (16, 16)]


def test_cfg_mixes_regionally_combined_sides() -> None:
    model, _ = toy_model()
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    (left,) = conditioning_set_area_percentage.execute(CTX, prompt(2.0), 0.5, 1.0, 0.0, 0.0, 1.0)
    (right,) = conditioning_set_area_percentage.execute(CTX, prompt(-1.0), 0.5, 1.0, 0.5, 0.0, 3.0)
    (neg,) = conditioning_set_area_strength.execute(CTX, prompt(0.5), 4.0)
    eps = eps_of(Guider(model, [*left, *right], neg, cfg=5.0), x)
    wl = torch.zeros(16, 16)
    wl[:, :8] = fade(8, False, True)[None, :]
    wr = torch.zeros(16, 16)
    wr[:, 8:] = 3.0 * fade(8, True, False)[None, :]
    cond = (wl * 2.0 + wr * -1.0) / (wl + wr + 1e-37) + C * x_in_of(x)
    uncond = 0.5 + C * x_in_of(x)  # one entry: its strength cancels out
    torch.testing.assert_close(eps, uncond + 5.0 * (cond - uncond), atol=1e-5, rtol=1e-5)


def test_uncovered_pixels_predict_zero_and_mask_bounds_crop() -> None:
    model, net = toy_model()
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(16, 16)
    mask[2:12, 3:13] = 1.0
    (bounded,) = conditioning_set_mask.execute(CTX, prompt(4.0), mask, 1.0, "mask bounds")
    eps = eps_of(Guider(model, bounded), x)
    expected = torch.zeros(1, 4, 16, 16)
    expected[..., 2:12, 3:13] = 4.0 + C * x_in_of(x)[..., 2:12, 3:13]
    torch.testing.assert_close(eps, expected, atol=1e-5, rtol=1e-5)
    assert net.shapes == [(10, 10)]  # the network saw only the mask's bounding box


def test_plain_entries_still_average() -> None:
    model, _ = toy_model()
    x = torch.randn(1, 4, 8, 8)
    eps = eps_of(Guider(model, [*prompt(1.0), *prompt(2.0)]), x)
    torch.testing.assert_close(eps, 1.5 + C * x_in_of(x), atol=1e-5, rtol=1e-5)


def test_set_area_values_are_comfyui_cells() -> None:
    (out,) = conditioning_set_area.execute(CTX, prompt(1.0), 200, 96, 24, 8, 0.7)
    assert out[0].extras["area"] == ("cells", 12, 25, 1, 3)
    assert out[0].extras["strength"] == 0.7
    widgets = [(i.id, i.default) for i in builtin_registry().get("ConditioningSetArea").inputs if i.is_widget]
    assert widgets == [("width", 64), ("height", 64), ("x", 0), ("y", 0), ("strength", 1.0)]
    mask_widgets = [i.id for i in builtin_registry().get("ConditioningSetMask").inputs if i.is_widget]
    assert mask_widgets == ["strength", "set_cond_area"]
    refiner = [(i.id, i.default) for i in builtin_registry().get("CLIPTextEncodeSDXLRefiner").inputs if i.is_widget]
    assert refiner == [("ascore", 6.0), ("width", 1024), ("height", 1024), ("text", "")]
    with pytest.raises(InputError) as err:
        conditioning_set_mask.execute(CTX, prompt(1.0), torch.zeros(1, 1, 1, 4, 4), 1.0, "default")
    assert err.value.input_id == "mask"


def test_concat_and_average_by_hand() -> None:
    a = [CondEntry(torch.full((1, 77, 8), 1.0), torch.full((1, 4), 1.0), {"k": 1})]
    b = [CondEntry(torch.full((1, 154, 8), 3.0), torch.full((1, 4), 5.0)), *prompt(9.0)]
    (cat,) = conditioning_concat.execute(CTX, a, b)
    assert cat[0].embeds.shape == (1, 231, 8) and cat[0].embeds[:, 77:].eq(3.0).all()
    assert cat[0].pooled.eq(1.0).all() and cat[0].extras == {"k": 1}
    (avg,) = conditioning_average.execute(CTX, a, b, 0.25)
    torch.testing.assert_close(avg[0].embeds, torch.full((1, 77, 8), 0.25 * 1 + 0.75 * 3))
    torch.testing.assert_close(avg[0].pooled, torch.full((1, 4), 0.25 * 1 + 0.75 * 5))
    (padded,) = conditioning_average.execute(CTX, [CondEntry(torch.full((1, 154, 8), 1.0))], prompt(3.0), 0.5)
    assert padded[0].embeds[:, :77].eq(2.0).all() and padded[0].embeds[:, 77:].eq(0.5).all()


def test_sdxl_refiner_encode_carries_the_aesthetic_score() -> None:
    clip = ClipModel("sd1", build_tiny_models("sd1").text_encoders)
    (out,) = clip_text_encode_sdxl_refiner.execute(CTX, 2.5, 768, 512, "a cat", clip)
    assert out[0].extras[AESTHETIC_SCORE_KEY] == 2.5
    assert (out[0].extras["width"], out[0].extras["height"]) == (768, 512)
    torch.testing.assert_close(out[0].embeds, clip.encode("a cat")[0].embeds)


def test_inpaint_model_conditioning_feeds_the_masked_image_to_an_inpainting_model() -> None:
    vae = VAEModel(build_tiny_models("sd1").vae)
    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    pixels = torch.stack([x, y, x * y], dim=-1)[None]
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1.0
    pos, neg, latent = inpaint_model_conditioning.execute(CTX, prompt(1.0), prompt(0.0), vae, pixels, mask, True)
    from nodes.diffusion.checkpoint.vae_ops import encode

    torch.testing.assert_close(latent["samples"], encode(vae.vae, pixels, scaling_factor=1.0))
    assert latent["noise_mask"].shape == (1, 1, 64, 64)
    grey = pixels.clone()
    grey[:, 16:48, 16:48] = 0.5
    masked_latent = encode(vae.vae, grey, scaling_factor=1.0)
    torch.testing.assert_close(pos[0].extras["concat_latent_image"], masked_latent)

    model, net = toy_model(inpainting=True)
    model = DiffusionModel(**{**model.__dict__, "latent_scale": 0.5})
    default = inpaint_concat(model.to_model_space(latent["samples"]), latent["noise_mask"])
    eps_of(Guider(model, pos, neg, cfg=2.0), torch.randn(1, 4, 8, 8), default)
    expected = inpaint_concat(model.to_model_space(masked_latent), mask[:, None])
    torch.testing.assert_close(net.extra[-1], torch.cat([expected, expected]))
    assert expected[:, 0].sum() == 16  # the 4×4 cells of the hole

    _, _, unmasked = inpaint_model_conditioning.execute(CTX, prompt(1.0), prompt(0.0), vae, pixels, mask, False)
    assert "noise_mask" not in unmasked
    with pytest.raises(InputError) as err:
        inpaint_model_conditioning.execute(CTX, prompt(1.0), prompt(0.0), vae, pixels, torch.zeros(1, 32, 64), True)
    assert err.value.input_id == "mask" and "same shape" in err.value.message
