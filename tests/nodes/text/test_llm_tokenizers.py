"""The shipped T5 and Qwen3 tokenizers equal transformers' own tokenizers built from the same files.

The references are built the ordinary way (``from_pretrained`` on a folder of plain files): T5 from the
unpacked ``tokenizer.json``, Qwen3 from ``vocab.json`` + ``merges.txt`` + the shipped config. Where the
project's copy of the original files is present (``../shared/data/tokenizers``), they are compared
against those too, which also proves the vocabulary derived from the merges is the published one.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil

import pytest
from transformers import Qwen2TokenizerFast, T5TokenizerFast

from nodes.diffusion.text.flow_encode import z_image_template
from nodes.diffusion.text.llm_vocab import (
    QWEN3_DIR,
    QWEN_BPE_SIZE,
    T5_DIR,
    T5_VOCAB_SIZE,
    build_qwen3_tokenizer,
    build_t5_tokenizer,
    qwen_bpe,
)
from tests.support.shared import TOKENIZERS

SHARED = TOKENIZERS  # ../shared/data/tokenizers or $SDGRAPH_SHARED
# Digest of the published Qwen2.5 vocab.json as canonical JSON (sorted keys, UTF-8), recorded when vendoring.
QWEN_VOCAB_CANONICAL_SHA256 = "56a81c6cceb149efce8d90a09eeb3ec0f3de5f18a35ea6413ef712da704c09a0"

PROMPTS = [
    "a photo of an astronaut riding a horse on mars",
    "",
    " ",
    "A PHOTO Of An ASTRONAUT, MiXeD CaSe",
    "café naïve résumé Zürich façade",
    "東京の夜景、ネオンサイン",
    "🐱 cat 🚀 rocket 🎨 palette",
    "Привет мир, مرحبا بالعالم",
    "a   lot\t\tof\n\nwhitespace   ",
    "1234567890 3.14159 2024-01-01 1920x1080",
    "(masterpiece:1.2), [blurry], don't you're",
    "ｆｕｌｌ－ｗｉｄｔｈ ﬁ ligature",
    "<extra_id_0> </s> <pad> <|im_start|> <think> literal specials",
    "portrait of a woman, " * 120,  # far beyond 512 tokens: truncation
]


@pytest.fixture(scope="module")
def t5_reference(tmp_path_factory: pytest.TempPathFactory) -> T5TokenizerFast:
    folder = tmp_path_factory.mktemp("t5")
    with gzip.open(T5_DIR / "tokenizer.json.gz", "rb") as src:
        (folder / "tokenizer.json").write_bytes(src.read())
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(T5_DIR / name, folder / name)
    return T5TokenizerFast.from_pretrained(folder)


@pytest.fixture(scope="module")
def qwen_reference(tmp_path_factory: pytest.TempPathFactory) -> Qwen2TokenizerFast:
    folder = tmp_path_factory.mktemp("qwen3")
    vocab, merges = qwen_bpe()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    shutil.copy(QWEN3_DIR / "tokenizer_config.json", folder / "tokenizer_config.json")
    return Qwen2TokenizerFast.from_pretrained(folder)


@pytest.mark.parametrize("length", [256, 512])
def test_t5_ids_equal_transformers_tokenizer(t5_reference, length):
    ours = build_t5_tokenizer()
    assert len(ours) == len(t5_reference) == T5_VOCAB_SIZE
    for prompt in PROMPTS:
        kwargs = dict(padding="max_length", max_length=length, truncation=True)
        a, b = ours(prompt, **kwargs), t5_reference(prompt, **kwargs)
        assert a.input_ids == b.input_ids, prompt
        assert len(a.input_ids) == length


def test_t5_special_tokens_as_t5_v1_1():
    tok = build_t5_tokenizer()
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok("a photo of a cat").input_ids == [3, 9, 1202, 13, 3, 9, 1712, 1]
    assert tok("").input_ids == [1]  # the empty prompt is just </s>
    assert tok.convert_tokens_to_ids("<extra_id_0>") == 32099


def test_qwen3_chat_template_and_ids_equal_transformers_tokenizer(qwen_reference):
    ours = build_qwen3_tokenizer()
    assert len(ours) == len(qwen_reference) == QWEN_BPE_SIZE + 26
    for prompt in PROMPTS:
        text_a, text_b = z_image_template(ours, prompt), z_image_template(qwen_reference, prompt)
        assert text_a == text_b == f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
        kwargs = dict(padding="max_length", max_length=512, truncation=True)
        a, b = ours(text_a, **kwargs), qwen_reference(text_b, **kwargs)
        assert a.input_ids == b.input_ids, prompt
        assert a.attention_mask == b.attention_mask, prompt


def test_qwen3_special_tokens():
    tok = build_qwen3_tokenizer()
    assert tok.pad_token_id == 151643 and tok.eos_token_id == 151645
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<think>", "</think>")}
    assert ids == {"<|im_start|>": 151644, "<|im_end|>": 151645, "<think>": 151667, "</think>": 151668}
    disabled = tok.apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert disabled.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")  # Qwen3's template, not Qwen2.5's


def test_qwen_vocabulary_derived_from_merges_is_the_published_one():
    vocab, merges = qwen_bpe()
    canonical = json.dumps(vocab, sort_keys=True, ensure_ascii=False).encode("utf-8")
    assert hashlib.sha256(canonical).hexdigest() == QWEN_VOCAB_CANONICAL_SHA256
    assert len(merges) == QWEN_BPE_SIZE - 256


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"the original tokenizer files are not here ({SHARED})")
def test_against_the_original_files():
    original = json.loads((SHARED / "qwen25" / "vocab.json").read_text(encoding="utf-8"))
    assert qwen_bpe()[0] == original
    with gzip.open(QWEN3_DIR / "merges.txt.gz", "rb") as fh:
        assert fh.read() == (SHARED / "qwen25" / "merges.txt").read_bytes()
    with gzip.open(T5_DIR / "tokenizer.json.gz", "rb") as fh:
        assert fh.read() == (SHARED / "t5" / "tokenizer.json").read_bytes()
    reference = T5TokenizerFast.from_pretrained(SHARED / "t5")
    ours = build_t5_tokenizer()
    for prompt in PROMPTS:
        assert ours(prompt).input_ids == reference(prompt).input_ids, prompt
