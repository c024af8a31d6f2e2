"""The T5 and Qwen3 tokenizers, built offline from the vocabularies shipped in ``resources/tokenizers``.

The flow-matching families condition on large language-model encoders whose tokenizers no package on
the registries ships: FLUX.1 and SD3/3.5 on Google's T5 v1.1 (a 32,100-piece SentencePiece Unigram model),
Z-Image on Qwen3-4B (a 151,643-entry byte-level BPE, the vocabulary Qwen2.5 already used). Both come
from the public tokenizer files (Apache-2.0, see ``resources/tokenizers/README.md``) in the smallest
form that rebuilds them exactly:

* T5: the ``tokenizers`` JSON (normaliser, Metaspace pre-tokeniser, Unigram scores, ``</s>`` post-
  processor), gzip-compressed; loaded as it is.
* Qwen3: only ``merges.txt`` is shipped (gzip). A byte-level BPE vocabulary is the 256 byte symbols in
  GPT-2's order followed by one entry per merge, in merge order — the same construction as CLIP's
  vocabulary in :mod:`.vocab` — so ``vocab.json`` (the larger file) is derived, and a test checks the
  derived table against the digest of the original file. The special tokens and the chat template are
  Qwen3's (``tokenizer_config.json``); ids 151665–151668 are ``<tool_response>``, ``</tool_response>``,
  ``<think>``, ``</think>`` there, where Qwen2.5 had vision tokens.

Both are transformers tokenizers (``T5TokenizerFast``/``Qwen2TokenizerFast``; the Rust backend), so
padding, truncation and ``apply_chat_template`` behave exactly as in diffusers' pipelines. Each call to a
``build_*`` function returns a new object: transformers keeps padding/truncation state on the shared
Rust tokenizer, so a cached instance handed to a pipeline would be racy.
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodes.shipped import resource_path

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TOKENIZER_ROOT: Path = resource_path("tokenizers")
T5_DIR = TOKENIZER_ROOT / "t5"
QWEN3_DIR = TOKENIZER_ROOT / "qwen3"

T5_VOCAB_SIZE = 32100
"""Pieces in T5 v1.1's SentencePiece model plus its 100 ``<extra_id_N>`` sentinels (the encoder's
embedding table has 32,128 rows: padded up to a multiple of 128)."""
QWEN_BPE_SIZE = 151643
"""Regular (non-added) entries of the Qwen2.5/Qwen3 byte-level BPE vocabulary."""


def _read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@functools.cache
def _t5_tokenizer_json() -> str:
    with gzip.open(T5_DIR / "tokenizer.json.gz", "rt", encoding="utf-8") as fh:
        return fh.read()


def build_t5_tokenizer() -> PreTrainedTokenizerBase:
    """T5 v1.1's tokenizer (``</s>`` appended, ``<pad>`` = 0), as ``T5TokenizerFast.from_pretrained`` builds it."""
    from tokenizers import Tokenizer
    from transformers import T5TokenizerFast

    config = _read_json(T5_DIR / "tokenizer_config.json")
    special = _read_json(T5_DIR / "special_tokens_map.json")
    return T5TokenizerFast(
        tokenizer_object=Tokenizer.from_str(_t5_tokenizer_json()),
        eos_token=config["eos_token"],
        unk_token=config["unk_token"],
        pad_token=config["pad_token"],
        extra_ids=config.get("extra_ids", 100),
        additional_special_tokens=special["additional_special_tokens"],
        model_max_length=config["model_max_length"],
        legacy=config.get("legacy", False),
    )


def _gpt2_byte_symbols() -> list[str]:
    """The 256 printable stand-ins for raw bytes, in the order that fixes byte-level BPE ids 0–255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [256 + i for i in range(256 - len(printable))]
    return [chr(c) for c in printable + extra]


@functools.cache
def qwen_bpe() -> tuple[dict[str, int], tuple[str, ...]]:
    """``(vocab, merges)`` of the Qwen byte-level BPE, derived from the shipped merge list.

    Cached: 151,387 merges take a moment to read. Callers must not mutate the returned dict.
    """
    with gzip.open(QWEN3_DIR / "merges.txt.gz", "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    merges = tuple(line for line in lines[1:] if line)  # line 0 is the "#version" header
    tokens = _gpt2_byte_symbols() + [m.replace(" ", "") for m in merges]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != QWEN_BPE_SIZE or len(tokens) != QWEN_BPE_SIZE:
        raise ValueError(f"{QWEN3_DIR / 'merges.txt.gz'} produced {len(vocab)} vocabulary entries, not {QWEN_BPE_SIZE}")
    return vocab, merges


def qwen3_tokenizer_config() -> dict[str, Any]:
    """Qwen3's ``tokenizer_config.json`` (special tokens, chat template), as shipped."""
    return _read_json(QWEN3_DIR / "tokenizer_config.json")


def build_qwen3_tokenizer() -> PreTrainedTokenizerBase:
    """Qwen3's tokenizer with its chat template, as ``Qwen2TokenizerFast.from_pretrained`` builds it."""
    from transformers import AddedToken, Qwen2TokenizerFast

    config = qwen3_tokenizer_config()
    vocab, merges = qwen_bpe()
    tokenizer = Qwen2TokenizerFast(
        vocab=dict(vocab),
        merges=[tuple(m.split(" ")) for m in merges],
        # Special tokens are registered below in id order; naming <|im_end|> here would give it id 151643.
        unk_token=config["unk_token"],
        bos_token=config["bos_token"],
        eos_token=config["pad_token"],
        pad_token=config["pad_token"],
        add_prefix_space=config["add_prefix_space"],
        model_max_length=config["model_max_length"],
        errors=config["errors"],
        clean_up_tokenization_spaces=config["clean_up_tokenization_spaces"],
        split_special_tokens=config["split_special_tokens"],
    )
    added = sorted(config["added_tokens_decoder"].items(), key=lambda kv: int(kv[0]))
    for token_id, entry in added:
        token = AddedToken(
            entry["content"],
            lstrip=entry["lstrip"],
            rstrip=entry["rstrip"],
            single_word=entry["single_word"],
            normalized=entry["normalized"],
            special=entry["special"],
        )
        tokenizer.add_tokens([token], special_tokens=entry["special"])
        if tokenizer.convert_tokens_to_ids(entry["content"]) != int(token_id):
            raise ValueError(f"Qwen3 token {entry['content']!r} got an unexpected id (expected {token_id})")
    tokenizer.add_special_tokens({"additional_special_tokens": config["additional_special_tokens"]})
    tokenizer.eos_token = config["eos_token"]
    tokenizer.chat_template = config["chat_template"]
    return tokenizer
