"""Textual-inversion embeddings: `embedding:name` in a prompt encodes exactly as diffusers'
`load_textual_inversion` makes the same tokenizer and encoder encode the embedding's token (SD1 and SDXL,
on the tiny models of tests/support/tiny_sd.py), from the files in models/embeddings."""

from __future__ import annotations

import copy
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
from safetensors.torch import save_file

import nodes.folders
from graph_engine import ExecutionContext, InputError
from nodes.conditioning import clip_text_encode
from nodes.diffusion.clip import ClipModel
from nodes.diffusion.text.embeddings import EmbeddingError
from nodes.diffusion.text.encode import apply_weights
from nodes.diffusion.text.tokenize import FIRST_EMBEDDING_ID, tokenize_prompt
from nodes.diffusion.text.vocab import build_clip_tokenizer
from tests.support.tiny_sd import build_tiny_models

PROMPT = "a photo of {} riding a horse on mars"


@pytest.fixture(scope="module")
def sd1_encoder():
    return build_tiny_models("sd1").text_encoders[0]


@pytest.fixture(scope="module")
def sdxl_encoders():
    return build_tiny_models("sdxl").text_encoders


def _vectors(n: int, width: int, seed: int) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def embeddings_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SDGRAPH_HOME", str(tmp_path / "home"))
    nodes.folders.configure()
    folder = tmp_path / "home" / "models" / "embeddings"
    folder.mkdir(parents=True)
    return folder


def _sd_pipe(encoder) -> StableDiffusionPipeline:
    return StableDiffusionPipeline(
        vae=None,
        text_encoder=encoder,
        tokenizer=build_clip_tokenizer(),
        unet=None,
        scheduler=EulerDiscreteScheduler(steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _diffusers_sd1(encoder, state_dict: dict[str, object], token: str) -> torch.Tensor:
    """diffusers on copies (load_textual_inversion grows the encoder and tokenizer it is given)."""
    pipe = _sd_pipe(copy.deepcopy(encoder))
    pipe.load_textual_inversion(state_dict, token=token)
    embeds, _ = pipe.encode_prompt(PROMPT.format(token), "cpu", 1, False)
    return embeds


@pytest.mark.parametrize("layout", ["emb_params.safetensors", "string_to_param.pt", "diffusers_single_key"])
def test_sd1_embedding_equals_diffusers_load_textual_inversion(sd1_encoder, embeddings_dir: Path, layout: str):
    vectors = _vectors(3, 32, seed=1)
    if layout == "emb_params.safetensors":
        save_file({"emb_params": vectors}, embeddings_dir / "emb.safetensors")
        state: dict[str, object] = {"emb_params": vectors}
    elif layout == "string_to_param.pt":  # A1111's .pt, with the plain values it carries beside the tensor
        state = {"string_to_param": {"*": vectors}, "name": "emb", "step": 3000}
        torch.save({**state, "string_to_token": {"*": 265}}, embeddings_dir / "emb.pt")
    else:
        vectors = vectors[:1]
        save_file({"<emb>": vectors[0].contiguous()}, embeddings_dir / "emb.safetensors")
        state = {"<emb>": vectors[0]}
    ref = _diffusers_sd1(sd1_encoder, state, "<emb>")  # a token the vocabulary lacks
    (entry,) = ClipModel("sd1", [sd1_encoder]).encode(PROMPT.format("embedding:emb"))
    assert entry.embeds.shape == ref.shape
    torch.testing.assert_close(entry.embeds, ref, rtol=0, atol=1e-6)
    (plain,) = ClipModel("sd1", [sd1_encoder]).encode(PROMPT.format("emb"))
    assert (entry.embeds - plain.embeds).abs().max() > 1e-3  # the embedding did change the prompt


def test_sdxl_embedding_equals_diffusers_on_both_encoders(sdxl_encoders, embeddings_dir: Path):
    clip_l, clip_g = sdxl_encoders
    state = {"clip_l": _vectors(2, 32, seed=2), "clip_g": _vectors(2, 64, seed=3)}
    save_file(state, embeddings_dir / "xl_style.safetensors")
    pipe = StableDiffusionXLPipeline(
        vae=None,
        text_encoder=copy.deepcopy(clip_l),
        text_encoder_2=copy.deepcopy(clip_g),
        tokenizer=build_clip_tokenizer(),
        tokenizer_2=build_clip_tokenizer("!"),
        unet=None,
        scheduler=EulerDiscreteScheduler(),
    )
    pipe.load_textual_inversion(
        state["clip_g"], token="<xl_style>", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2
    )
    pipe.load_textual_inversion(
        state["clip_l"], token="<xl_style>", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer
    )
    embeds, _, pooled, _ = pipe.encode_prompt(
        PROMPT.format("<xl_style>"), device="cpu", do_classifier_free_guidance=False
    )
    (entry,) = ClipModel("sdxl", [clip_l, clip_g]).encode(PROMPT.format("embedding:xl_style"))
    torch.testing.assert_close(entry.embeds, embeds, rtol=0, atol=1e-6)
    assert entry.pooled is not None
    torch.testing.assert_close(entry.pooled, pooled, rtol=0, atol=1e-6)
    # An SD1 embedding has no bigG vectors: one message saying so, not a silent half-embedding.
    save_file({"emb_params": _vectors(1, 32, seed=4)}, embeddings_dir / "sd1_only.safetensors")
    with pytest.raises(EmbeddingError, match=r"sd1_only.*OpenCLIP-bigG.*another model family"):
        ClipModel("sdxl", [clip_l, clip_g]).encode("embedding:sd1_only")


def test_weighted_embedding_as_comfyui_writes_it(sd1_encoder, embeddings_dir: Path):
    """`embedding:emb:1.2` and `(embedding:emb:1.2)` weight the embedding's tokens alone, by ComfyUI's rule."""
    save_file({"emb_params": _vectors(2, 32, seed=5)}, embeddings_dir / "emb.safetensors")
    clip = ClipModel("sd1", [sd1_encoder])
    (plain,) = clip.encode("a cat, embedding:emb, at night")
    (bare,) = clip.encode("a cat, embedding:emb:1.2, at night")
    (bracketed,) = clip.encode("a cat, (embedding:emb:1.2), at night")
    torch.testing.assert_close(bare.embeds, bracketed.embeds, rtol=0, atol=0)
    (empty,) = clip.encode("")
    positions = [1 + 3, 1 + 4]  # BOS, "a", "cat", ",", then the two vectors
    weights = torch.ones(1, 77)
    weights[0, positions] = 1.2
    expected = apply_weights(plain.embeds, weights, empty.embeds[0])
    torch.testing.assert_close(bare.embeds, expected, rtol=0, atol=1e-6)
    assert (bare.embeds - plain.embeds)[0, positions].abs().max() > 1e-4


def test_safetensors_wins_over_pt_and_names_may_carry_suffix_or_punctuation(sd1_encoder, embeddings_dir: Path):
    st, pt = _vectors(1, 32, seed=6), _vectors(1, 32, seed=7)
    save_file({"emb_params": st}, embeddings_dir / "both.safetensors")
    torch.save({"string_to_param": {"*": pt}}, embeddings_dir / "both.pt")
    clip = ClipModel("sd1", [sd1_encoder])
    (bare,) = clip.encode("a embedding:both")
    (suffixed,) = clip.encode("a embedding:both.safetensors")
    (pt_named,) = clip.encode("a embedding:both.pt")
    torch.testing.assert_close(bare.embeds, suffixed.embeds, rtol=0, atol=0)
    assert (bare.embeds - pt_named.embeds).abs().max() > 1e-4
    (sentence,) = clip.encode("a embedding:both.")
    (spaced,) = clip.encode("a embedding:both .")
    torch.testing.assert_close(sentence.embeds, spaced.embeds, rtol=0, atol=0)


def test_a_pickle_needing_code_is_refused(sd1_encoder, embeddings_dir: Path):
    """.pt files are read with weights_only=True: one carrying an arbitrary object does not load."""
    torch.save({"string_to_param": {"*": _vectors(1, 32, seed=8)}, "extra": Path("x")}, embeddings_dir / "evil.pt")
    with pytest.raises(EmbeddingError, match=r"evil.*cannot be read"):
        ClipModel("sd1", [sd1_encoder]).encode("embedding:evil")


def test_unknown_name_names_the_node_input_and_closest_embeddings(sd1_encoder, embeddings_dir: Path, tmp_path):
    save_file({"emb_params": _vectors(1, 32, seed=9)}, embeddings_dir / "watercolor_v2.safetensors")
    save_file({"emb_params": _vectors(1, 32, seed=9)}, embeddings_dir / "bad_hands.safetensors")
    ctx = ExecutionContext(node_id=6, title="Positive", temp_dir=tmp_path)
    with pytest.raises(InputError) as info:
        clip_text_encode.execute(ctx, text="a barn, embedding:watercolor", clip=ClipModel("sd1", [sd1_encoder]))
    assert info.value.input_id == "text"
    assert "no embedding named 'watercolor'" in info.value.message
    assert "closest: embedding:watercolor_v2" in info.value.message
    for name in ("../home/models/embeddings/bad_hands", "/etc/passwd"):  # names only match listed files
        with pytest.raises(EmbeddingError, match="no embedding named"):
            ClipModel("sd1", [sd1_encoder]).encode(f"embedding:{name}")


def test_without_a_lookup_references_stay_text_and_ids_stay_in_vocabulary():
    """Token counters and the flow families' prompts tokenize `embedding:name` as the text it is."""
    ids = [i for chunk in tokenize_prompt("a embedding:emb cat") for i in chunk.ids]
    assert max(ids) < FIRST_EMBEDDING_ID
