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

Padding differs by encoder, and it matters because padded positions are part of the conditioning:

* OpenAI CLIP-L (SD1.x, SDXL's first encoder) was trained with ``<|endoftext|>`` (49407) padding;
* OpenCLIP (SD2.x's ViT-H, SDXL's bigG) was trained with 0 padding.

Id 0 is also the token ``!``. Configuring ``"!"`` as the pad token of a Hugging Face tokenizer (what
diffusers' SD2/SDXL tokenizer configs do) makes it map every ``!`` *in the prompt* to 0 as well. We
therefore tokenize with the ``<|endoftext|>``-padded tokenizer and write the pad value ourselves after
the first ``<|endoftext|>`` — the ``!`` in the prompt keeps its own ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .vocab import BOS_ID, EOS_ID, clean_text, clip_tokenizer
from .weights import parse_prompt

CHUNK_LENGTH = 77
"""Positions per encoder call (CLIP's max_position_embeddings)."""
TOKENS_PER_CHUNK = CHUNK_LENGTH - 2
"""Prompt tokens that fit between BOS and EOS."""
PAD_CLIP_L = EOS_ID
"""Padding id for OpenAI CLIP-L (SD1.x; SDXL text_encoder)."""
PAD_OPEN_CLIP = 0
"""Padding id for OpenCLIP ViT-H / bigG (SD2.x; SDXL text_encoder_2 and the refiner)."""


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


def weighted_tokens(segments: Sequence[tuple[str, float]]) -> list[tuple[int, float]]:
    """Tokenize each ``(text, weight)`` segment separately and tag every id with its weight.

    Segments are tokenized separately so that a weight boundary is also a token boundary; for a prompt
    without emphasis syntax there is a single segment and the ids equal tokenizing the whole prompt.
    """
    out: list[tuple[int, float]] = []
    for text, weight in segments:
        out.extend((tok, weight) for tok in tokenize_text(text))
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
