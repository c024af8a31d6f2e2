"""ClipModel.encode against diffusers' own encode_prompt on tiny random text encoders, plus weighting.

The tiny encoders have CLIP's real vocabulary size and context length (so our token ids are valid) but
widths of 32/64 and 3 layers, so building and running them takes milliseconds.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import socket
import types
from collections.abc import Iterator

import pytest
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from nodes.diffusion.clip import ClipModel
from nodes.diffusion.text.tokenize import tokenize_text
from nodes.diffusion.text.vocab import build_clip_tokenizer

PROMPT = "a photo of an astronaut riding a horse on mars, highly detailed"
LAYERS = 3


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to reach the Hub (or anything else) fails the test instead of silently downloading."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield


def _config(width: int, projection_dim: int | None = None) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=49408,
        max_position_embeddings=77,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        projection_dim=projection_dim or width,
        bos_token_id=49406,
        eos_token_id=49407,
        hidden_act="gelu",
    )


def _with_diffusers_text_model_shim(encoder: CLIPTextModel) -> CLIPTextModel:
    """diffusers 0.42.1's SD ``clip_skip`` path reads ``text_encoder.text_model.final_layer_norm``, which
    transformers 5 no longer has on CLIPTextModel. Give it that attribute (outside nn.Module registration,
    so no module cycle) so we compare against diffusers' real code path."""
    object.__setattr__(encoder, "text_model", types.SimpleNamespace(final_layer_norm=encoder.final_layer_norm))
    return encoder


@pytest.fixture(scope="module")
def clip_l() -> CLIPTextModel:
    torch.manual_seed(0)
    return _with_diffusers_text_model_shim(CLIPTextModel(_config(32)).eval())


@pytest.fixture(scope="module")
def clip_g() -> CLIPTextModelWithProjection:
    torch.manual_seed(1)
    return CLIPTextModelWithProjection(_config(64, projection_dim=48)).eval()


def _sd_pipe(encoder: CLIPTextModel, pad_token: str) -> StableDiffusionPipeline:
    return StableDiffusionPipeline(
        vae=None,
        text_encoder=encoder,
        tokenizer=build_clip_tokenizer(pad_token),
        unet=None,
        scheduler=EulerDiscreteScheduler(steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _xl_pipe(clip_l: CLIPTextModel | None, clip_g: CLIPTextModelWithProjection) -> StableDiffusionXLPipeline:
    # diffusers' SDXL tokenizer_2 config pads with "!" (id 0); prompts here contain no "!".
    return StableDiffusionXLPipeline(
        vae=None,
        text_encoder=clip_l,
        text_encoder_2=clip_g,
        tokenizer=None if clip_l is None else build_clip_tokenizer(),
        tokenizer_2=build_clip_tokenizer("!"),
        unet=None,
        scheduler=EulerDiscreteScheduler(),
    )


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a.detach().float() - b.detach().float()).abs().max())


# --- parity with diffusers ---------------------------------------------------------------------------


@pytest.mark.parametrize("clip_skip", [None, 1, 2])
def test_sd1_matches_diffusers(clip_l: CLIPTextModel, clip_skip: int | None) -> None:
    ref, _ = _sd_pipe(clip_l, "<|endoftext|>").encode_prompt(PROMPT, "cpu", 1, False, clip_skip=clip_skip)
    clip = ClipModel("sd1", [clip_l])
    if clip_skip is not None:
        clip = clip.with_last_layer(-clip_skip - 1)
    (entry,) = clip.encode(PROMPT)
    assert entry.embeds.shape == (1, 77, 32)
    assert entry.embeds.dtype == torch.float32 and entry.embeds.device.type == "cpu"
    assert entry.pooled is None
    assert _max_diff(entry.embeds, ref) <= 1e-6


def test_sd2_pads_with_zero_like_diffusers(clip_l: CLIPTextModel) -> None:
    # Same tiny encoder standing in for OpenCLIP-H; the family only changes the padding id.
    ref, _ = _sd_pipe(clip_l, "!").encode_prompt(PROMPT, "cpu", 1, False)
    (sd2,) = ClipModel("sd2", [clip_l]).encode(PROMPT)
    assert _max_diff(sd2.embeds, ref) <= 1e-6
    (sd1,) = ClipModel("sd1", [clip_l]).encode(PROMPT)
    eos = 1 + len(tokenize_text(PROMPT))
    assert torch.equal(sd1.embeds[:, : eos + 1], sd2.embeds[:, : eos + 1])  # causal: padding is after
    assert _max_diff(sd1.embeds[:, eos + 1 :], sd2.embeds[:, eos + 1 :]) > 1e-3


@pytest.mark.parametrize("clip_skip", [None, 1])
def test_sdxl_matches_diffusers_including_pooled(
    clip_l: CLIPTextModel, clip_g: CLIPTextModelWithProjection, clip_skip: int | None
) -> None:
    embeds, _, pooled, _ = _xl_pipe(clip_l, clip_g).encode_prompt(
        PROMPT, device="cpu", do_classifier_free_guidance=False, clip_skip=clip_skip
    )
    clip = ClipModel("sdxl", [clip_l, clip_g])
    if clip_skip is not None:
        clip = clip.with_last_layer(-clip_skip - 2)
    (entry,) = clip.encode(PROMPT)
    assert entry.embeds.shape == (1, 77, 32 + 64)
    assert entry.pooled is not None and entry.pooled.shape == (1, 48)
    assert _max_diff(entry.embeds, embeds) <= 1e-6
    assert _max_diff(entry.pooled, pooled) <= 1e-6


def test_sdxl_refiner_matches_diffusers(clip_g: CLIPTextModelWithProjection) -> None:
    embeds, _, pooled, _ = _xl_pipe(None, clip_g).encode_prompt(PROMPT, device="cpu", do_classifier_free_guidance=False)
    (entry,) = ClipModel("sdxl_refiner", [clip_g]).encode(PROMPT)
    assert entry.embeds.shape == (1, 77, 64)
    assert _max_diff(entry.embeds, embeds) <= 1e-6
    assert entry.pooled is not None and _max_diff(entry.pooled, pooled) <= 1e-6


def test_long_prompt_first_chunk_equals_diffusers_truncation(
    clip_l: CLIPTextModel, clip_g: CLIPTextModelWithProjection
) -> None:
    long_prompt = "a red cat on a blue chair, " * 20  # 160 tokens → 3 chunks
    embeds, _, pooled, _ = _xl_pipe(clip_l, clip_g).encode_prompt(
        long_prompt, device="cpu", do_classifier_free_guidance=False
    )
    (entry,) = ClipModel("sdxl", [clip_l, clip_g]).encode(long_prompt)
    assert entry.embeds.shape == (1, 3 * 77, 96)
    assert _max_diff(entry.embeds[:, :77], embeds) <= 1e-6  # diffusers keeps the first 75 tokens only
    assert entry.pooled is not None and _max_diff(entry.pooled, pooled) <= 1e-6


# --- weighting ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_unit_weights_equal_unweighted_exactly(
    family: str, clip_l: CLIPTextModel, clip_g: CLIPTextModelWithProjection
) -> None:
    clip = ClipModel(family, [clip_l] if family == "sd1" else [clip_l, clip_g])
    (plain,) = clip.encode("a red cat on a chair")
    (unit,) = clip.encode("a (red:1.0) cat (on a chair:1)")
    assert torch.equal(plain.embeds, unit.embeds)
    assert (plain.pooled is None and unit.pooled is None) or torch.equal(plain.pooled, unit.pooled)


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_weight_moves_only_that_token_away_from_empty(
    family: str, clip_l: CLIPTextModel, clip_g: CLIPTextModelWithProjection
) -> None:
    clip = ClipModel(family, [clip_l] if family == "sd1" else [clip_l, clip_g])
    (plain,) = clip.encode("a red cat")
    (weighted,) = clip.encode("a (red:1.5) cat")
    (empty,) = clip.encode("")
    red = 2  # BOS, "a", "red", ...
    assert len(tokenize_text("a red cat")) == 3
    others = [i for i in range(77) if i != red]
    assert torch.equal(weighted.embeds[:, others], plain.embeds[:, others])
    z, z_empty = plain.embeds[:, red], empty.embeds[:, red]
    expected = (z - z_empty) * 1.5 + z_empty
    assert _max_diff(weighted.embeds[:, red], expected) <= 1e-6
    assert _max_diff(weighted.embeds[:, red], z) > 1e-3
    if family == "sdxl":
        assert torch.equal(weighted.pooled, plain.pooled)  # pooled output is never weighted


def test_zero_weight_gives_the_empty_prompt_embedding(clip_l: CLIPTextModel) -> None:
    clip = ClipModel("sd1", [clip_l])
    (weighted,) = clip.encode("a (red:0) cat")
    (empty,) = clip.encode("")
    assert _max_diff(weighted.embeds[:, 2], empty.embeds[:, 2]) <= 1e-6


# --- ClipModel handle --------------------------------------------------------------------------------


def test_with_last_layer_shares_encoders_and_validates(clip_l: CLIPTextModel) -> None:
    base = ClipModel("sd1", [clip_l])
    skipped = base.with_last_layer(-2)
    assert skipped.text_encoders[0] is clip_l
    assert (base.layer_idx, base.effective_layer) == (None, -1)
    assert (skipped.layer_idx, skipped.effective_layer) == (-2, -2)
    assert skipped.with_last_layer(-1).effective_layer == -1  # absolute, not relative
    for bad in (0, 1, -LAYERS - 1):
        with pytest.raises(ValueError, match="CLIP layer"):
            base.with_last_layer(bad)
    assert ClipModel("sdxl", [clip_l, _g()]).effective_layer == -2


def _g() -> CLIPTextModelWithProjection:
    return CLIPTextModelWithProjection(_config(64, projection_dim=48))


def test_constructor_rejects_wrong_encoders(clip_l: CLIPTextModel) -> None:
    with pytest.raises(ValueError, match="unknown CLIP family"):
        ClipModel("sd3", [clip_l])
    with pytest.raises(ValueError, match="needs 2 text encoder"):
        ClipModel("sdxl", [clip_l])
    with pytest.raises(ValueError, match="CLIPTextModelWithProjection"):
        ClipModel("sdxl", [clip_l, clip_l])


def test_half_precision_encoder_runs_in_its_dtype_and_returns_float32(clip_l: CLIPTextModel) -> None:
    torch.manual_seed(0)
    bf16 = CLIPTextModel(_config(32)).eval()
    bf16.load_state_dict(clip_l.state_dict())
    bf16.to(torch.bfloat16)
    (low,) = ClipModel("sd1", [bf16]).encode("a (red:1.2) cat")
    (full,) = ClipModel("sd1", [clip_l]).encode("a (red:1.2) cat")
    assert low.embeds.dtype == torch.float32
    assert _max_diff(low.embeds, full.embeds) < 0.1
    assert next(bf16.parameters()).dtype == torch.bfloat16  # the encoder itself is left alone
