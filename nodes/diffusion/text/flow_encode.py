"""Prompt → conditioning for the flow-matching families, as diffusers' pipelines encode prompts.

Each recipe equals its pipeline's ``encode_prompt`` on prompts without emphasis syntax and within the
encoders' lengths (tests compare them at 1e-5 on tiny models with the same weights):

=========== ========================================================= ================================
recipe      sequence (``CondEntry.embeds``)                            pooled (``CondEntry.pooled``)
=========== ========================================================= ================================
``sd3``     CLIP-L and CLIP-G ``hidden_states[-2]`` (no final norm),   CLIP-L ``text_embeds`` ‖ CLIP-G
            concatenated on features, zero-padded to the T5 width,     ``text_embeds`` (projected EOS)
            then T5-XXL's last hidden state (256 tokens, padded)
            appended on the sequence axis
            (``StableDiffusion3Pipeline.encode_prompt``)
``flux``    T5-XXL last hidden state, padded to 512 tokens             CLIP-L ``pooler_output``
            (``FluxPipeline``; 256 is the schnell convention)          (unprojected EOS)
``z_image`` Qwen3 ``hidden_states[-2]`` of the chat-templated prompt    none
            (``<|im_start|>user\\n…<|im_end|>\\n<|im_start|>assistant\\n``,
            truncated at 512 tokens), valid tokens only
            (``ZImagePipeline._encode_prompt``)
=========== ========================================================= ================================

T5 runs without an attention mask over its padding, as the pipelines run it, so the padded positions are
part of the conditioning (and the padded length changes every position's value). Qwen3 is causal, so
encoding only the valid tokens gives what the pipeline keeps after masking, without paying for 512
positions; the Z-Image conditioning therefore needs no mask (every position is valid).

**Missing encoders** (ComfyUI lets a CLIP hold a subset): a missing T5 gives zeros of shape
``[1, t5_length, 4096]`` as diffusers' SD3 pipeline does; a missing CLIP gives zeros of its width for the
sequence and pooled parts. A CLIP prompt longer than 75 tokens is encoded in 77-token chunks
(:mod:`.tokenize`) and chunks are concatenated, ComfyUI's way; pooled vectors come from the first chunk.

**Emphasis**: ``(word:1.2)`` weights apply to the CLIP parts with ComfyUI's formula (see :mod:`.encode`).
T5 and Qwen3 read the prompt with the emphasis syntax removed and the weights ignored.

**Textual-inversion embeddings** (``embedding:name``, ``embedding:name:1.2``; :mod:`.embeddings`) apply to
the CLIP parts exactly as for SD1/SDXL: CLIP-L reads a file's ``clip_l`` vectors, CLIP-G its ``clip_g``, and
either the single tensor of an SD1/SD2-style file when its width fits (else one message saying the file
is for another family). So SD3's sequence and pooled CLIP parts and FLUX's pooled CLIP-L vector change as
after diffusers' ``load_textual_inversion`` on those encoders. T5-XXL and Qwen3 have no textual-inversion
embeddings (none are published: they would be 4096/2560 wide and sdgraph would need a file layout to
read them), so their text is read with each reference *left out*, a warning naming it logged — what
ComfyUI does (its T5/Qwen tokenizers drop a reference whose vectors do not fit them, with a warning), so
a ComfyUI workflow whose prompt names an embedding runs and conditions the same way. An unknown name is
an error only where a CLIP encoder reads it (the T5/Qwen-only text never looks names up).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .encode import FamilySpec, _embedding_vectors, encode_chunks
from .tokenize import EMBEDDING_REF, PAD_CLIP_L, PAD_OPEN_CLIP, TokenChunk, chunk_tokens, weighted_tokens
from .weights import parse_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from .embeddings import PromptEmbeddings

log = logging.getLogger(__name__)

NewEmbeddings = Callable[[], "PromptEmbeddings"]
"""Makes the (empty) embedding table of one CLIP text: ``PromptEmbeddings`` itself, or a test's stand-in."""

T5_LENGTH = {"sd3": 256, "flux": 512}
"""Default T5 sequence length per recipe: the pipelines' ``max_sequence_length`` defaults."""
QWEN_MAX_LENGTH = 512
"""ZImagePipeline's ``max_sequence_length``: the templated prompt is truncated to this many tokens."""
QWEN_LAYER = -2
"""ZImagePipeline reads ``hidden_states[-2]``: the output of the second-to-last decoder layer."""
ABSENT_WIDTHS = {"clip_l": 768, "clip_g": 1280, "t5xxl": 4096}
"""Widths of zero stand-ins for missing encoders: the released models' (CLIP-L/G pooled, T5 d_model)."""

_CLIP_L_SD3 = FamilySpec(("CLIP-L",), (PAD_CLIP_L,), -2, False, 0)
_CLIP_G_SD3 = FamilySpec(("CLIP-G",), (PAD_OPEN_CLIP,), -2, False, 0)


def plain_text(prompt: str) -> str:
    """The prompt with emphasis syntax removed (escapes resolved)."""
    return "".join(text for text, _ in parse_prompt(prompt))


def llm_text(prompt: str, encoder_name: str) -> str:
    """What T5 and Qwen3 read: the plain text with every ``embedding:name[:w]`` left out (see the module
    docstring) together with the space before it (after it, at the very start), so "a cat embedding:x. At
    night" reads "a cat. At night" (and "a, embedding:x, b" reads "a,, b"); a warning names what was left
    out."""
    text = plain_text(prompt)
    pieces: list[str] = []
    dropped: list[str] = []
    pos = 0
    for m in EMBEDDING_REF.finditer(text):
        name = m["name"]
        kept = name[len(name.rstrip(".,;:!?")) :]  # a sentence's full stop after the name stays
        dropped.append(name[: len(name) - len(kept)])
        before = text[pos : m.start()]
        pieces += [before[:-1] if before.endswith(" ") else before, kept]
        pos = m.end()
        if m.start() == 0 and not kept and text[pos : pos + 1] == " ":  # at the start: the space after it
            pos += 1
    if not dropped:
        return text
    log.warning(
        "%s left out of the %s prompt: textual-inversion embeddings exist for CLIP encoders only",
        ", ".join(f"embedding:{n}" for n in dropped),
        encoder_name,
    )
    return "".join(pieces) + text[pos:]


# ------------------------------------------------------------------------------------------ CLIP


def clip_chunks(
    text: str, pad_id: int, min_chunks: int = 1, embeddings: PromptEmbeddings | None = None
) -> list[TokenChunk]:
    """77-token weighted chunks of ``text``, padded with empty chunks to at least ``min_chunks``.
    With ``embeddings``, ``embedding:name`` references become its ids (else they stay text)."""
    lookup = embeddings.ids_for if embeddings is not None else None
    chunks = chunk_tokens(weighted_tokens(parse_prompt(text), lookup), pad_id)
    empty = chunk_tokens([], pad_id)[0]
    return chunks + [empty] * (min_chunks - len(chunks))


def clip_sd3_part(
    encoder: PreTrainedModel,
    chunks: Sequence[TokenChunk],
    layer: int,
    g: bool,
    embeddings: PromptEmbeddings | None = None,
) -> tuple[Tensor, Tensor]:
    """One SD3 CLIP's ``(hidden [1, 77·n, d], projected pooled [1, p])``, float32 on the CPU."""
    spec = _CLIP_G_SD3 if g else _CLIP_L_SD3
    hidden, pooled = encode_chunks(spec, [encoder], [chunks], layer, embeddings)
    assert pooled is not None
    return hidden, pooled


def clip_pooler(encoder: PreTrainedModel, text: str, embeddings: PromptEmbeddings | None = None) -> Tensor:
    """CLIP-L's unprojected pooled output of the first chunk (what FLUX is conditioned on), ``[1, d]``."""
    chunk = clip_chunks(text, PAD_CLIP_L, embeddings=embeddings)[0]
    tower = getattr(encoder, "text_model", encoder)
    ids = torch.tensor([chunk.ids], dtype=torch.long, device=tower.device)
    used = embeddings is not None and embeddings.used
    vectors = embeddings.vectors(encoder, "CLIP-L") if embeddings is not None and used else None
    with torch.no_grad(), nullcontext() if vectors is None else _embedding_vectors(encoder, ids, vectors):
        pooled = tower(input_ids=ids).pooler_output
    return pooled.float().cpu()


# ------------------------------------------------------------------------------------------ T5


def t5_sequence(encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, text: str, length: int) -> Tensor:
    """T5's last hidden state over the prompt padded (and truncated) to ``length`` tokens, ``[1, length, d]``."""
    ids = tokenizer(
        llm_text(text, "T5-XXL"), padding="max_length", max_length=length, truncation=True, return_tensors="pt"
    )
    with torch.no_grad():
        hidden = encoder(input_ids=ids.input_ids.to(encoder.device))[0]
    return hidden.float().cpu()


# ------------------------------------------------------------------------------------------ Qwen3


def z_image_template(tokenizer: PreTrainedTokenizerBase, text: str) -> str:
    """The prompt wrapped in Qwen3's chat template exactly as ZImagePipeline wraps it."""
    messages = [{"role": "user", "content": text}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    return str(rendered)


def qwen3_sequence(
    encoder: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    *,
    max_length: int = QWEN_MAX_LENGTH,
    layer: int = QWEN_LAYER,
) -> Tensor:
    """``hidden_states[layer]`` at every token of the templated prompt, ``[1, n, d]`` (n ≤ ``max_length``)."""
    ids = tokenizer(z_image_template(tokenizer, llm_text(text, "Qwen3")), truncation=True, max_length=max_length)
    input_ids = torch.tensor([ids.input_ids], dtype=torch.long, device=encoder.device)
    mask = torch.ones_like(input_ids, dtype=torch.bool)
    with torch.no_grad():
        out = encoder(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
    return out.hidden_states[layer].float().cpu()


# ------------------------------------------------------------------------------------------ recipes


@dataclass(frozen=True)
class FlowEncoders:
    """The loaded encoders a recipe may use; ``None`` where the CLIP value holds none."""

    clip_l: Any = None
    clip_g: Any = None
    t5xxl: Any = None
    qwen3: Any = None


def _width(encoder: Any, field: str, default: int) -> int:
    return default if encoder is None else int(getattr(encoder.config, field))


def encode_sd3(
    enc: FlowEncoders,
    t5_tokenizer: PreTrainedTokenizerBase | None,
    clip_l: str | None,
    clip_g: str | None,
    t5xxl: str | None,
    *,
    layer: int = -2,
    t5_length: int = T5_LENGTH["sd3"],
    embeddings: NewEmbeddings | None = None,
) -> tuple[Tensor, Tensor]:
    """SD3 ``(prompt_embeds [1, 77·n + t5_length, W], pooled [1, pL + pG])``; ``None`` text = encoder off.

    A text of ``None`` (or a missing encoder) gives that encoder's zero stand-in; with ``t5xxl=None`` while
    a T5 is loaded the T5 part is left out entirely (CLIPTextEncodeSD3's ``empty_padding="none"``).
    ``embeddings``: makes each CLIP text's embedding table (``embedding:name`` references are text without).
    An :class:`~.embeddings.EmbeddingError` carries ``field``, the text it came from (``clip_l``/``clip_g``).
    """
    use_l = enc.clip_l is not None and clip_l is not None
    use_g = enc.clip_g is not None and clip_g is not None
    tokenized: dict[str, tuple[list[TokenChunk], PromptEmbeddings | None]] = {}
    for use, text, pad, key in ((use_l, clip_l, PAD_CLIP_L, "clip_l"), (use_g, clip_g, PAD_OPEN_CLIP, "clip_g")):
        if use and text is not None:
            table = embeddings() if embeddings is not None else None
            with _from_field(key):
                tokenized[key] = (clip_chunks(text, pad, embeddings=table), table)
    n_chunks = max((len(chunks) for chunks, _ in tokenized.values()), default=1)
    parts: list[Tensor] = []
    pooled: list[Tensor] = []
    for use, encoder, g, key in ((use_l, enc.clip_l, False, "clip_l"), (use_g, enc.clip_g, True, "clip_g")):
        if use:
            chunks, table = tokenized[key]
            empty = chunk_tokens([], PAD_OPEN_CLIP if g else PAD_CLIP_L)[0]
            chunks = chunks + [empty] * (n_chunks - len(chunks))
            with _from_field(key):
                hidden, pool = clip_sd3_part(encoder, chunks, layer, g, table)
        else:
            width = _width(encoder, "hidden_size", ABSENT_WIDTHS[key])
            hidden = torch.zeros(1, 77 * n_chunks, width)
            pool = torch.zeros(1, _width(encoder, "projection_dim", ABSENT_WIDTHS[key]))
        parts.append(hidden)
        pooled.append(pool)
    clip_seq = torch.cat(parts, dim=-1)
    t5_width = _width(enc.t5xxl, "d_model", ABSENT_WIDTHS["t5xxl"])
    clip_seq = torch.nn.functional.pad(clip_seq, (0, t5_width - clip_seq.shape[-1]))
    if enc.t5xxl is None:
        t5_seq: Tensor | None = torch.zeros(1, t5_length, t5_width)
    elif t5xxl is None:
        t5_seq = None
    else:
        assert t5_tokenizer is not None
        t5_seq = t5_sequence(enc.t5xxl, t5_tokenizer, t5xxl, t5_length)
    embeds = clip_seq if t5_seq is None else torch.cat([clip_seq, t5_seq], dim=-2)
    return embeds, torch.cat(pooled, dim=-1)


def encode_flux(
    enc: FlowEncoders,
    t5_tokenizer: PreTrainedTokenizerBase | None,
    clip_l: str,
    t5xxl: str,
    *,
    t5_length: int = T5_LENGTH["flux"],
    embeddings: NewEmbeddings | None = None,
) -> tuple[Tensor, Tensor]:
    """FLUX ``(prompt_embeds [1, t5_length, 4096], pooled [1, 768])``; ``embeddings`` as for SD3."""
    if enc.clip_l is not None:
        table = embeddings() if embeddings is not None else None
        with _from_field("clip_l"):
            pooled = clip_pooler(enc.clip_l, clip_l, table)
    else:
        pooled = torch.zeros(1, ABSENT_WIDTHS["clip_l"])
    if enc.t5xxl is not None:
        assert t5_tokenizer is not None
        embeds = t5_sequence(enc.t5xxl, t5_tokenizer, t5xxl, t5_length)
    else:
        embeds = torch.zeros(1, t5_length, ABSENT_WIDTHS["t5xxl"])
    return embeds, pooled


@contextmanager
def _from_field(field: str) -> Iterator[None]:
    """An embedding error raised in the block is marked with the prompt text (node input) it came from."""
    from .embeddings import EmbeddingError

    try:
        yield
    except EmbeddingError as exc:
        exc.field = field
        raise


def encode_z_image(enc: FlowEncoders, qwen_tokenizer: PreTrainedTokenizerBase, text: str) -> Tensor:
    """Z-Image ``prompt_embeds [1, n, hidden]``: the valid tokens of the templated prompt."""
    if enc.qwen3 is None:
        raise ValueError("Z-Image needs a Qwen3 text encoder")
    return qwen3_sequence(enc.qwen3, qwen_tokenizer, text)
