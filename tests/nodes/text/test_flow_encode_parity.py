"""SD3, FLUX and Z-Image prompt encoding equals the diffusers pipelines' ``encode_prompt`` on the same weights.

Tiny seeded encoders are written as the single files users download (bare ``clip_l``/``clip_g``, T5 under
the all-in-one prefix, Qwen3 under ``model.``), loaded with sdgraph's loader and encoded through the
``FlowClip`` the loader nodes build; the pipelines get the original transformers modules and tokenizers
built the way their repositories configure them.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline, ZImagePipeline

from nodes.diffusion.text.encoder_files import CLIP_G, CLIP_L, QWEN3, T5XXL, load_text_encoder, read_encoders
from nodes.diffusion.text.flow_encode import FlowEncoders
from nodes.diffusion.text.llm_vocab import build_qwen3_tokenizer, build_t5_tokenizer
from nodes.diffusion.text.vocab import build_clip_tokenizer
from nodes.diffusion.text_encoders import TEXT_RECIPE_KEY, FlowClip
from tests.support.tiny_text import save_encoder, tiny_encoder

CPU = torch.device("cpu")
TOL = 1e-5
PROMPTS = [
    "a photo of an astronaut riding a horse on mars",
    "",
    "café naïve, 東京の夜景 🐱 — a very detailed illustration, 8k",
    "portrait of a woman, " * 60,  # > 77 CLIP tokens (pipelines truncate) and > 256 T5 tokens
]
SHORT = PROMPTS[:3]


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[object, object]]:
    """role -> (reference module, module loaded from its single file)."""
    folder = tmp_path_factory.mktemp("text_encoders")
    layouts = {
        CLIP_L: {},
        CLIP_G: {},
        T5XXL: {"prefix": "text_encoders.t5xxl.transformer."},
        QWEN3: {},
    }
    out = {}
    for seed, (role, kwargs) in enumerate(layouts.items()):
        reference = tiny_encoder(role, seed=seed)
        path = save_encoder(reference, role, folder / f"{role}.safetensors", **kwargs)
        (found,) = read_encoders(path)
        out[role] = (reference, load_text_encoder(path, prefix=found.prefix, role=role))
    return out


def _loaded(encoders, *roles):
    return FlowEncoders(**{role: encoders[role][1] for role in roles})


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    assert (a.float() - b.float()).abs().max().item() <= TOL


def test_sd3_equals_pipeline(encoders):
    pipe = StableDiffusion3Pipeline(
        transformer=None,
        scheduler=None,
        vae=None,
        text_encoder=encoders[CLIP_L][0],
        tokenizer=build_clip_tokenizer(),
        text_encoder_2=encoders[CLIP_G][0],
        tokenizer_2=build_clip_tokenizer(pad_token="!"),  # SD3's tokenizer_2 pads with "!" (id 0), like SDXL's
        text_encoder_3=encoders[T5XXL][0],
        tokenizer_3=build_t5_tokenizer(),
    )
    clip = FlowClip("sd3", _loaded(encoders, CLIP_L, CLIP_G, T5XXL))
    for prompt in SHORT:
        embeds, _, pooled, _ = pipe.encode_prompt(prompt, None, None, device=CPU, do_classifier_free_guidance=False)
        (entry,) = clip.encode(prompt)
        assert entry.embeds.shape == (1, 77 + 256, 256)
        _close(entry.embeds, embeds)
        _close(entry.pooled, pooled)
        assert entry.extras[TEXT_RECIPE_KEY] == "sd3"
    # Per-encoder texts (CLIPTextEncodeSD3), and CLIP skip through the pipeline's clip_skip.
    embeds, _, pooled, _ = pipe.encode_prompt(
        "a red car", "a blue sky", "a long t5 prompt", device=CPU, do_classifier_free_guidance=False, clip_skip=1
    )
    (entry,) = clip.with_last_layer(-3).encode_sd3("a red car", "a blue sky", "a long t5 prompt")
    _close(entry.embeds, embeds)
    _close(entry.pooled, pooled)


def test_sd3_long_prompt_keeps_clip_chunks_and_truncates_t5(encoders):
    """Beyond 75 tokens CLIP is chunked (ComfyUI) where the pipeline truncates; the first chunk and T5 agree."""
    pipe = StableDiffusion3Pipeline(
        transformer=None, scheduler=None, vae=None,
        text_encoder=encoders[CLIP_L][0], tokenizer=build_clip_tokenizer(),
        text_encoder_2=encoders[CLIP_G][0], tokenizer_2=build_clip_tokenizer(pad_token="!"),
        text_encoder_3=encoders[T5XXL][0], tokenizer_3=build_t5_tokenizer(),
    )  # fmt: skip
    prompt = PROMPTS[3]
    embeds, _, pooled, _ = pipe.encode_prompt(prompt, None, None, device=CPU, do_classifier_free_guidance=False)
    (entry,) = FlowClip("sd3", _loaded(encoders, CLIP_L, CLIP_G, T5XXL)).encode(prompt)
    chunks = (entry.embeds.shape[1] - 256) // 77
    assert chunks >= 2
    _close(entry.embeds[:, :77], embeds[:, :77])
    _close(entry.embeds[:, -256:], embeds[:, -256:])
    _close(entry.pooled, pooled)


def test_sd3_without_t5_uses_zeros_like_the_pipeline(encoders):
    pipe = StableDiffusion3Pipeline(
        transformer=None, scheduler=None, vae=None,
        text_encoder=encoders[CLIP_L][0], tokenizer=build_clip_tokenizer(),
        text_encoder_2=encoders[CLIP_G][0], tokenizer_2=build_clip_tokenizer(pad_token="!"),
        text_encoder_3=None, tokenizer_3=None,
    )  # fmt: skip
    # The pipeline sizes the zeros from the transformer's config: SD3's joint_attention_dim is 4096.
    object.__setattr__(pipe, "transformer", SimpleNamespace(config=SimpleNamespace(joint_attention_dim=4096)))
    embeds, _, pooled, _ = pipe.encode_prompt("a cat", None, None, device=CPU, do_classifier_free_guidance=False)
    (entry,) = FlowClip("sd3", _loaded(encoders, CLIP_L, CLIP_G)).encode("a cat")
    assert entry.embeds.shape == (1, 77 + 256, 4096)
    _close(entry.embeds, embeds)
    _close(entry.pooled, pooled)


def test_sd3_empty_padding_none_switches_encoders_off(encoders):
    clip = FlowClip("sd3", _loaded(encoders, CLIP_L, CLIP_G, T5XXL))
    (full,) = clip.encode_sd3("a cat", "", "", empty_padding="empty_prompt")
    (off,) = clip.encode_sd3("a cat", "", "", empty_padding="none")
    assert full.embeds.shape == (1, 77 + 256, 256)
    assert off.embeds.shape == (1, 77, 256)  # T5 left out
    assert torch.equal(off.embeds[..., :64], full.embeds[:, :77, :64])  # CLIP-L part unchanged
    assert torch.count_nonzero(off.embeds[..., 64:]) == 0  # CLIP-G zeros (and the padding)
    assert torch.count_nonzero(off.pooled[:, 64:]) == 0 and torch.equal(off.pooled[:, :64], full.pooled[:, :64])


@pytest.mark.parametrize("t5_length", [512, 256])
def test_flux_equals_pipeline(encoders, t5_length):
    pipe = FluxPipeline(
        scheduler=None,
        vae=None,
        text_encoder=encoders[CLIP_L][0].text_model,  # FLUX's CLIP-L is a plain CLIPTextModel
        tokenizer=build_clip_tokenizer(),
        text_encoder_2=encoders[T5XXL][0],
        tokenizer_2=build_t5_tokenizer(),
        transformer=None,
    )
    clip = FlowClip("flux", _loaded(encoders, CLIP_L, T5XXL))
    if t5_length != 512:
        clip = clip.with_t5_length(t5_length)
    for prompt in PROMPTS:
        embeds, pooled, _ = pipe.encode_prompt(prompt, None, device=CPU, max_sequence_length=t5_length)
        (entry,) = clip.encode_flux(prompt, prompt, guidance=3.5)
        assert entry.embeds.shape == (1, t5_length, 256)
        _close(entry.embeds, embeds)
        _close(entry.pooled, pooled)
        assert entry.extras["guidance"] == 3.5 and entry.extras[TEXT_RECIPE_KEY] == "flux"
    embeds, pooled, _ = pipe.encode_prompt("summary", "the long t5 prompt", device=CPU, max_sequence_length=t5_length)
    (entry,) = clip.encode_flux("summary", "the long t5 prompt")
    _close(entry.embeds, embeds)
    _close(entry.pooled, pooled)
    assert "guidance" not in entry.extras


def test_z_image_equals_pipeline(encoders):
    pipe = ZImagePipeline(
        scheduler=None, vae=None, text_encoder=encoders[QWEN3][0], tokenizer=build_qwen3_tokenizer(), transformer=None
    )
    clip = FlowClip("z_image", _loaded(encoders, QWEN3))
    for prompt in [*PROMPTS, "word " * 600]:  # the last one is truncated at 512 template tokens
        (embeds,), _ = pipe.encode_prompt(prompt, device=CPU, do_classifier_free_guidance=False)
        (entry,) = clip.encode(prompt)
        assert entry.pooled is None and entry.embeds.shape[-1] == 64
        _close(entry.embeds[0], embeds)
        assert entry.extras[TEXT_RECIPE_KEY] == "z_image"


def test_recipes_refuse_encoders_they_do_not_use(encoders):
    with pytest.raises(ValueError, match="Qwen3"):
        FlowClip("z_image", _loaded(encoders, T5XXL))
    with pytest.raises(ValueError, match="CLIP-G"):
        FlowClip("flux", _loaded(encoders, CLIP_L, CLIP_G))


def test_loaded_file_keeps_bf16_and_encodes(tmp_path: Path, encoders):
    reference = encoders[T5XXL][0]
    path = save_encoder(reference, T5XXL, tmp_path / "t5xxl_bf16.safetensors", dtype=torch.bfloat16)
    t5 = load_text_encoder(path, prefix="", role=T5XXL)
    (entry,) = FlowClip("flux", FlowEncoders(t5xxl=t5)).encode("a cat")
    assert t5.dtype == torch.bfloat16 and entry.embeds.dtype == torch.float32
    assert torch.count_nonzero(entry.pooled) == 0  # no CLIP-L: zero pooled vector
