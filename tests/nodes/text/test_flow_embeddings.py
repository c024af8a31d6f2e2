"""Textual-inversion embeddings in the flow families' prompts: on SD3's CLIP-L/CLIP-G and FLUX's CLIP-L an
`embedding:name` encodes exactly as diffusers' `load_textual_inversion` makes the same tokenizers and
encoders encode the embedding's tokens; T5-XXL and Qwen3 (no such embeddings exist) read the prompt with the
reference left out, as ComfyUI does, and say so in the log.

Oracles: StableDiffusion3Pipeline has no textual-inversion loader, so the embedding is loaded into copies of
the CLIP encoders and tokenizers through a StableDiffusionXLPipeline (its loader is the one SDXL files are
made for), and an SD3 pipeline built on those grown encoders encodes the prompt with the new tokens
(``prompt_3`` = the T5 text without the reference). FluxPipeline loads it itself, into its CLIP-L.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from diffusers import EulerDiscreteScheduler, FluxPipeline, StableDiffusion3Pipeline, StableDiffusionXLPipeline
from safetensors.torch import save_file

import nodes.folders
from graph_engine import ExecutionContext, InputError
from nodes.diffusion.text.embeddings import EmbeddingError
from nodes.diffusion.text.encoder_files import CLIP_G, CLIP_L, QWEN3, T5XXL, load_text_encoder, read_encoders
from nodes.diffusion.text.flow_encode import FlowEncoders
from nodes.diffusion.text.llm_vocab import build_t5_tokenizer
from nodes.diffusion.text.vocab import build_clip_tokenizer
from nodes.diffusion.text_encoders import FlowClip
from nodes.text_encoders import clip_text_encode_sd3
from tests.support.tiny_text import save_encoder, tiny_encoder

CPU = torch.device("cpu")
TOL = 1e-5  # as the flow prompt parity tests (the loaded encoders are rebuilt from files)
PROMPT = "a photo of {} riding a horse on mars"
WITHOUT = "a photo of riding a horse on mars"  # the prompt as T5 reads it: the reference left out


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[object, object]]:
    """role -> (reference module, module loaded from its single file)."""
    folder = tmp_path_factory.mktemp("text_encoders")
    out = {}
    for seed, role in enumerate((CLIP_L, CLIP_G, T5XXL, QWEN3)):
        reference = tiny_encoder(role, seed=seed)
        path = save_encoder(reference, role, folder / f"{role}.safetensors")
        (found,) = read_encoders(path)
        out[role] = (reference, load_text_encoder(path, prefix=found.prefix, role=role))
    return out


@pytest.fixture
def embeddings_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SDGRAPH_HOME", str(tmp_path / "home"))
    nodes.folders.configure()
    folder = tmp_path / "home" / "models" / "embeddings"
    folder.mkdir(parents=True)
    return folder


def _vectors(n: int, width: int, seed: int) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


def _sdxl_style(encoders, folder: Path, name: str = "xl_style") -> dict[str, torch.Tensor]:
    width_l = encoders[CLIP_L][0].config.hidden_size
    width_g = encoders[CLIP_G][0].config.hidden_size
    state = {"clip_l": _vectors(2, width_l, seed=2), "clip_g": _vectors(2, width_g, seed=3)}
    save_file(state, folder / f"{name}.safetensors")
    return state


def _loaded(encoders, *roles):
    return FlowEncoders(**{role: encoders[role][1] for role in roles})


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    assert (a.float() - b.float()).abs().max().item() <= TOL


def test_sd3_clip_parts_equal_diffusers_textual_inversion(encoders, embeddings_dir: Path) -> None:
    state = _sdxl_style(encoders, embeddings_dir)
    xl = StableDiffusionXLPipeline(
        vae=None,
        text_encoder=copy.deepcopy(encoders[CLIP_L][0]),
        text_encoder_2=copy.deepcopy(encoders[CLIP_G][0]),
        tokenizer=build_clip_tokenizer(),
        tokenizer_2=build_clip_tokenizer("!"),
        unet=None,
        scheduler=EulerDiscreteScheduler(),
    )
    xl.load_textual_inversion(
        state["clip_g"], token="<xl_style>", text_encoder=xl.text_encoder_2, tokenizer=xl.tokenizer_2
    )
    xl.load_textual_inversion(state["clip_l"], token="<xl_style>", text_encoder=xl.text_encoder, tokenizer=xl.tokenizer)
    tokens = xl.maybe_convert_prompt(PROMPT.format("<xl_style>"), xl.tokenizer)  # "<xl_style> <xl_style>_1"
    sd3 = StableDiffusion3Pipeline(
        transformer=None, scheduler=None, vae=None,
        text_encoder=xl.text_encoder, tokenizer=xl.tokenizer,
        text_encoder_2=xl.text_encoder_2, tokenizer_2=xl.tokenizer_2,
        text_encoder_3=encoders[T5XXL][0], tokenizer_3=build_t5_tokenizer(),
    )  # fmt: skip
    embeds, _, pooled, _ = sd3.encode_prompt(tokens, tokens, WITHOUT, device=CPU, do_classifier_free_guidance=False)

    clip = FlowClip("sd3", _loaded(encoders, CLIP_L, CLIP_G, T5XXL))
    (entry,) = clip.encode(PROMPT.format("embedding:xl_style"))
    _close(entry.embeds, embeds)  # CLIP-L ‖ CLIP-G rows 0-76 and the T5 rows after them
    _close(entry.pooled, pooled)
    (plain,) = clip.encode(PROMPT.format("xl_style"))
    width_l = encoders[CLIP_L][0].config.hidden_size
    width_g = encoders[CLIP_G][0].config.hidden_size
    for part in (slice(0, width_l), slice(width_l, width_l + width_g)):  # each CLIP's features changed
        assert (entry.embeds[:, :77, part] - plain.embeds[:, :77, part]).abs().max() > 1e-3
    # Per-encoder texts (CLIPTextEncodeSD3): an embedding only in clip_g's text changes only the CLIP-G part.
    (only_g,) = clip.encode_sd3(WITHOUT, PROMPT.format("embedding:xl_style"), WITHOUT)
    (none,) = clip.encode_sd3(WITHOUT, WITHOUT, WITHOUT)
    assert torch.equal(only_g.embeds[:, :77, :width_l], none.embeds[:, :77, :width_l])
    assert (
        only_g.embeds[:, :77, width_l : width_l + width_g] - none.embeds[:, :77, width_l : width_l + width_g]
    ).abs().max() > 1e-3


def test_flux_pooled_clip_l_equals_diffusers_textual_inversion(encoders, embeddings_dir: Path) -> None:
    from transformers import CLIPTextModel

    state = _sdxl_style(encoders, embeddings_dir)
    reference = encoders[CLIP_L][0]
    plain_clip = CLIPTextModel(reference.config)  # FluxPipeline's CLIP-L is a CLIPTextModel; same weights
    weights = {k.removeprefix("text_model."): v for k, v in reference.state_dict().items() if "projection" not in k}
    plain_clip.load_state_dict(weights if "embeddings.token_embedding.weight" in plain_clip.state_dict() else
                               {f"text_model.{k}": v for k, v in weights.items()})  # fmt: skip
    pipe = FluxPipeline(
        scheduler=None, vae=None, text_encoder=plain_clip, tokenizer=build_clip_tokenizer(),
        text_encoder_2=encoders[T5XXL][0], tokenizer_2=build_t5_tokenizer(), transformer=None,
    )  # fmt: skip
    pipe.load_textual_inversion(state["clip_l"], token="<xl_style>")
    embeds, pooled, _ = pipe.encode_prompt(PROMPT.format("<xl_style>"), WITHOUT, device=CPU)

    clip = FlowClip("flux", _loaded(encoders, CLIP_L, T5XXL))
    (entry,) = clip.encode(PROMPT.format("embedding:xl_style"))
    _close(entry.pooled, pooled)
    _close(entry.embeds, embeds)  # T5 read the prompt without the reference
    (plain,) = clip.encode(PROMPT.format("xl_style"))
    assert (entry.pooled - plain.pooled).abs().max() > 1e-3


def test_t5_and_qwen3_leave_the_reference_out_and_say_so(encoders, embeddings_dir, caplog) -> None:
    """No T5/Qwen3 embeddings exist: the text is read without the reference (ComfyUI's handling), the log
    names it, and no name is looked up (none is installed here)."""
    for clip, encode in (
        (FlowClip("z_image", _loaded(encoders, QWEN3)), lambda c, t: c.encode(t)),
        (FlowClip("flux", _loaded(encoders, T5XXL)), lambda c, t: c.encode_flux("", t)),
    ):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            (entry,) = encode(clip, "a cat at night embedding:missing_one. (embedding:other:1.2) in snow")
        (want,) = encode(clip, "a cat at night. in snow")
        assert torch.equal(entry.embeds, want.embeds)
        assert "embedding:missing_one, embedding:other left out of the" in caplog.text
        (unchanged,) = encode(clip, "a cat at night, in snow")
        assert not torch.equal(entry.embeds, unchanged.embeds)  # control: the text does reach the encoder


def test_sd3_node_names_the_prompt_input_of_an_unknown_or_unfit_embedding(encoders, embeddings_dir, tmp_path) -> None:
    _sdxl_style(encoders, embeddings_dir, "watercolor_v2")
    width_l = encoders[CLIP_L][0].config.hidden_size
    save_file({"emb_params": _vectors(1, width_l, seed=4)}, embeddings_dir / "sd1_only.safetensors")
    clip = FlowClip("sd3", _loaded(encoders, CLIP_L, CLIP_G, T5XXL))
    ctx = ExecutionContext(node_id=3, title="SD3 prompt", temp_dir=tmp_path)
    with pytest.raises(InputError) as info:
        clip_text_encode_sd3.execute(ctx, clip, "a barn", "a barn, embedding:watercolor", "a barn", "none")
    assert info.value.input_id == "clip_g"
    assert "no embedding named 'watercolor'" in info.value.message and "embedding:watercolor_v2" in info.value.message
    # An SD1-width file fits CLIP-L but has nothing for CLIP-G: refused, naming the encoder and the input.
    (entry,) = clip.encode_sd3("embedding:sd1_only", "", "", empty_padding="none")
    assert entry.embeds.shape[1] == 77
    with pytest.raises(EmbeddingError, match=r"sd1_only.*CLIP-G.*another model family") as err:
        clip.encode_sd3("", "embedding:sd1_only", "")
    assert err.value.field == "clip_g"


@pytest.mark.parametrize(
    ("prompt", "t5_reads"),
    [
        ("a cat embedding:x. At night", "a cat. At night"),
        ("embedding:x a cat", "a cat"),
        ("a, (embedding:x:1.3), b", "a,, b"),
        ("a  cat,  no reference", "a  cat,  no reference"),  # untouched without one
    ],
)
def test_what_t5_reads_around_a_left_out_reference(prompt: str, t5_reads: str) -> None:
    from nodes.diffusion.text.flow_encode import llm_text

    assert llm_text(prompt, "T5-XXL") == t5_reads
