"""Weighted prompt → fixed-size CLIP token chunks.

CLIP text encoders read exactly 77 positions: ``<|startoftext|>``, up to 75 prompt tokens,
``<|endoftext|>``, then padding. Longer prompts are split into several such chunks, each encoded on its
own; the encoder outputs are concatenated along the sequence axis (77·k positions), which the UNet's
cross-attention accepts at any length. This is ComfyUI's (and A1111's) way of lifting the 77-token
limit; plain diffusers pipelines truncate instead, so for prompts of ≤ 75 tokens both agree.

Chunking rule (kept simple on purpose): the token stream is cut every 75 tokens, even inside a word.
ComfyUI moves short words that would straddle a boundary into the next chunk; we do not, so a prompt
longer than 75 tokens may encode slightly differently from ComfyUI at the cut. No truncation happens.

Each token carries the weight of the emphasis segment it came from (see :mod:`.weights`); the special
and padding positions carry 1.0.

**Textual-inversion embeddings** are written as ComfyUI writes them: ``embedding:name`` as a word of its
own (after the start, a space or a comma), optionally weighted ``embedding:name:1.2`` or, through the
emphasis syntax, ``(embedding:name:1.2)``. When the caller passes an ``embed`` lookup, each reference
becomes that embedding's vectors as tokens of their own: ids from :data:`FIRST_EMBEDDING_ID` up, which
the encoder step (:mod:`.encode`) swaps for the vectors, the ids diffusers' ``load_textual_inversion``
gives the tokens it adds to the vocabulary. The text around a reference is tokenized on its own, which
is what a tokenizer that learnt the embedding's token does with it. Without a lookup (token counters) a
reference stays ordinary text; the flow families' T5/Qwen3 text leaves it out (:mod:`.flow_encode`).

Padding differs by encoder, and it matters because padded positions are part of the conditioning:

* OpenAI CLIP-L (SD1.x, SDXL's first encoder) was trained with ``<|endoftext|>`` (49407) padding;
* OpenCLIP (SD2.x's ViT-H, SDXL's bigG) was trained with 0 padding.

Id 0 is also the token ``!``. Configuring ``"!"`` as the pad token of a Hugging Face tokenizer (what
diffusers' SD2/SDXL tokenizer configs do) makes it map every ``!`` *in the prompt* to 0 as well. We
therefore tokenize with the ``<|endoftext|>``-padded tokenizer and write the pad value ourselves after
the first ``<|endoftext|>`` — the ``!`` in the prompt keeps its own ids.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .vocab import BOS_ID, EOS_ID, VOCAB_SIZE, clean_text, clip_tokenizer
from .weights import parse_prompt

CHUNK_LENGTH = 77
"""Positions per encoder call (CLIP's max_position_embeddings)."""
TOKENS_PER_CHUNK = CHUNK_LENGTH - 2
"""Prompt tokens that fit between BOS and EOS."""
PAD_CLIP_L = EOS_ID
"""Padding id for OpenAI CLIP-L (SD1.x; SDXL text_encoder)."""
PAD_OPEN_CLIP = 0
"""Padding id for OpenCLIP ViT-H / bigG (SD2.x; SDXL text_encoder_2 and the refiner)."""
FIRST_EMBEDDING_ID = VOCAB_SIZE
"""Ids from here on stand for embedding vectors of the prompt being encoded (not vocabulary entries)."""

# `embedding:name` or `embedding:name:1.5` as a word: after the start, whitespace or a comma, up to the
# next whitespace or comma. The name has no colon (so a trailing `:1.5` is the weight).
EMBEDDING_REF = re.compile(r"(?<![^\s,])embedding:(?P<name>[^\s,:]+)(?::(?P<weight>\d+(?:\.\d*)?|\.\d+))?(?=[\s,]|$)")

EmbedLookup = Callable[[str], tuple[list[int], str]]
"""An embedding name → (the ids standing for its vectors, text left over after the name, e.g. a "."
ending a sentence, tokenized as text); raises when no embedding has the name."""


@dataclass(frozen=True)
class TokenChunk:
    """One 77-position encoder input with a weight per position."""

    ids: tuple[int, ...]
    weights: tuple[float, ...]

    @property
    def eos_index(self) -> int:
        """Position of the closing ``<|endoftext|>``: where CLIP pools its sentence embedding."""
        return self.ids.index(EOS_ID, 1)


def tokenize_text(text: str) -> list[int]:
    """BPE ids of ``text`` without BOS/EOS, after open_clip-style cleaning.

    The shared tokenizer splits special tokens, so a literal ``"<|endoftext|>"`` typed in a prompt
    tokenizes as ordinary characters, as open_clip does, instead of ending the sequence early.
    """
    cleaned = clean_text(text)
    if not cleaned:
        return []
    encoding = clip_tokenizer()(cleaned, add_special_tokens=False, verbose=False)
    return list(encoding.input_ids)


def weighted_tokens(segments: Sequence[tuple[str, float]], embed: EmbedLookup | None = None) -> list[tuple[int, float]]:
    """Tokenize each ``(text, weight)`` segment separately and tag every id with its weight.

    Segments are tokenized separately so that a weight boundary is also a token boundary; for a prompt
    without emphasis syntax there is a single segment and the ids equal tokenizing the whole prompt.
    With ``embed``, ``embedding:name[:w]`` references become the embedding's ids, weighted by the
    segment's weight times ``w``.
    """
    out: list[tuple[int, float]] = []
    for text, weight in segments:
        pos = 0
        for m in EMBEDDING_REF.finditer(text) if embed is not None else ():
            assert embed is not None
            out.extend((tok, weight) for tok in tokenize_text(text[pos : m.start()]))
            ids, leftover = embed(m["name"])
            w = weight * float(m["weight"]) if m["weight"] is not None else weight
            out.extend((i, w) for i in ids)
            out.extend((tok, weight) for tok in tokenize_text(leftover))
            pos = m.end()
        out.extend((tok, weight) for tok in tokenize_text(text[pos:]))
    return out


def chunk_tokens(tokens: Sequence[tuple[int, float]], pad_id: int) -> list[TokenChunk]:
    """Cut weighted ids into 77-position chunks: BOS + ≤75 ids + EOS + ``pad_id`` padding.

    An empty token list gives one chunk (BOS, EOS, padding): the encoding of the empty prompt.
    """
    chunks: list[TokenChunk] = []
    for start in range(0, max(len(tokens), 1), TOKENS_PER_CHUNK):
        body = tokens[start : start + TOKENS_PER_CHUNK]
        pad = CHUNK_LENGTH - 2 - len(body)
        ids = (BOS_ID, *(t for t, _ in body), EOS_ID, *([pad_id] * pad))
        weights = (1.0, *(w for _, w in body), 1.0, *([1.0] * pad))
        chunks.append(TokenChunk(ids, weights))
    return chunks


def tokenize_prompt(prompt: str, pad_id: int = PAD_CLIP_L) -> list[TokenChunk]:
    """Full path from prompt text (with emphasis syntax) to weighted 77-token chunks."""
    return chunk_tokens(weighted_tokens(parse_prompt(prompt)), pad_id)
