"""CLIP tokenizer built in memory from the vendored BPE file, padding per encoder, 77-token chunking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import CLIPTokenizer

from nodes.diffusion.text.tokenize import (
    CHUNK_LENGTH,
    PAD_CLIP_L,
    PAD_OPEN_CLIP,
    chunk_tokens,
    tokenize_prompt,
    tokenize_text,
    weighted_tokens,
)
from nodes.diffusion.text.vocab import BOS_ID, EOS_ID, VOCAB_SIZE, build_clip_tokenizer, clean_text, load_vocab
from nodes.diffusion.text.weights import parse_prompt

PROMPTS = [
    "a photo of an astronaut riding a horse on mars",
    "A PHOTO Of An ASTRONAUT, MiXeD CaSe",
    "masterpiece, best quality, ultra-detailed; 8k uhd, dslr",
    "don't you're we'll I'm they've she'd it's",
    "café naïve résumé Zürich façade",
    "東京の夜景、ネオンサイン",
    "🐱 cat 🚀 rocket 🎨 palette",
    "1234567890 3.14159 2024-01-01 1920x1080",
    "a   lot\t\tof\n\nwhitespace   ",
    "https://example.com/path?x=1&y=2#frag",
    "Привет мир, съешь же ещё этих мягких булок",
    "مرحبا بالعالم",
    "!!!???...,,,;;; @#$%^&*~`|",
    "portrait of a woman, " * 16,  # 80 tokens: longer than one chunk
    "x",
    "under_score snake_case CamelCase kebab-case",
    "emoji+text🙂mixed with no spaces",
]


@pytest.fixture(scope="module")
def file_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> CLIPTokenizer:
    """transformers' own CLIPTokenizer loaded from vocab.json/merges.txt written from our vocabulary."""
    vocab, merges = load_vocab()
    d: Path = tmp_path_factory.mktemp("clip_vocab")
    (d / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", "utf-8")
    return CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))


def test_vocabulary_layout() -> None:
    vocab, merges = load_vocab()
    assert len(vocab) == VOCAB_SIZE == 49408
    assert vocab["<|startoftext|>"] == BOS_ID == 49406
    assert vocab["<|endoftext|>"] == EOS_ID == 49407
    assert len(merges) == 48894
    assert vocab["!"] == 0 and vocab["a</w>"] == 256 + ord("a") - ord("!")
    assert vocab["".join(merges[0])] == 512


@pytest.mark.parametrize("prompt", PROMPTS)
def test_ids_equal_file_based_transformers_tokenizer(prompt: str, file_tokenizer: CLIPTokenizer) -> None:
    ref = file_tokenizer(clean_text(prompt), add_special_tokens=False, verbose=False).input_ids
    assert tokenize_text(prompt) == ref
    first = tokenize_prompt(prompt)[0]
    if len(ref) <= 75:
        padded = file_tokenizer(clean_text(prompt), padding="max_length", max_length=77, truncation=True)
        assert list(first.ids) == padded.input_ids


def test_pre_cleaning_matches_open_clip_conventions() -> None:
    # Double-escaped entity, full-width letters and a ligature fold to what CLIP was trained on.
    assert tokenize_text("salt &amp;amp; pepper") == tokenize_text("salt & pepper")
    assert tokenize_text("ＦＵＬＬ ｗｉｄｔｈ") == tokenize_text("full width")
    assert tokenize_text("ﬁne") == tokenize_text("fine")


def test_literal_special_token_text_is_not_a_special_token() -> None:
    ids = tokenize_text("x <|endoftext|> y <|startoftext|>")
    assert EOS_ID not in ids and BOS_ID not in ids


def test_open_clip_padding_is_zero_but_exclamation_keeps_its_id() -> None:
    prompt = "HORSE!!! wow!"
    clip_l = tokenize_prompt(prompt, PAD_CLIP_L)[0]
    open_clip = tokenize_prompt(prompt, PAD_OPEN_CLIP)[0]
    eos = open_clip.eos_index
    assert eos == clip_l.eos_index == 1 + len(tokenize_text(prompt))
    assert open_clip.ids[: eos + 1] == clip_l.ids[: eos + 1]
    assert 0 not in open_clip.ids[: eos + 1]
    assert set(open_clip.ids[eos + 1 :]) == {0}
    assert set(clip_l.ids[eos + 1 :]) == {EOS_ID}
    # The trap we avoid: a tokenizer configured with pad "!" (diffusers' SD2/SDXL-G config) maps every
    # "!" in the prompt to 0 as well.
    bang = build_clip_tokenizer(pad_token="!")
    bang_ids = bang(prompt, padding="max_length", max_length=77).input_ids
    assert 0 in bang_ids[: bang_ids.index(EOS_ID)]


def test_chunking_of_a_200_token_prompt() -> None:
    (word,) = tokenize_text("cat")
    chunks = tokenize_prompt("cat " * 200)
    assert len(chunks) == 3  # 75 + 75 + 50
    for c in chunks:
        assert len(c.ids) == len(c.weights) == CHUNK_LENGTH
        assert c.ids[0] == BOS_ID
    assert [c.eos_index for c in chunks] == [76, 76, 51]
    assert chunks[2].ids[52:] == (PAD_CLIP_L,) * 25
    assert [t for c in chunks for t in c.ids[1 : c.eos_index]] == [word] * 200


def test_chunk_boundaries() -> None:
    (word,) = tokenize_text("cat")
    assert len(chunk_tokens([(word, 1.0)] * 75, PAD_CLIP_L)) == 1
    assert len(chunk_tokens([(word, 1.0)] * 76, PAD_CLIP_L)) == 2
    assert len(chunk_tokens([(word, 1.0)] * 150, PAD_CLIP_L)) == 2


@pytest.mark.parametrize("prompt", ["", "   ", "()", "[]"])
def test_empty_prompt_is_one_chunk(prompt: str) -> None:
    (chunk,) = tokenize_prompt(prompt, PAD_OPEN_CLIP)
    assert chunk.ids == (BOS_ID, EOS_ID) + (0,) * 75
    assert chunk.weights == (1.0,) * 77


def test_tokens_carry_their_segment_weight() -> None:
    tokens = weighted_tokens(parse_prompt("a (red:1.5) [cat]"))
    assert [t for t, _ in tokens] == tokenize_text("a red cat")
    assert [w for _, w in tokens] == [1.0, 1.5, pytest.approx(1 / 1.1)]
    chunk = tokenize_prompt("a (red:1.5) [cat]")[0]
    assert chunk.weights[:5] == (1.0, 1.0, 1.5, pytest.approx(1 / 1.1), 1.0)
