"""Weighted token chunks → conditioning tensors, per model family.

Which hidden state each family uses is chosen to equal diffusers' pipelines bit for bit on unweighted
prompts of ≤ 75 tokens (``StableDiffusionPipeline.encode_prompt``,
``StableDiffusionXLPipeline.encode_prompt``):

============== ================================ ========================== ===============================
family         encoders (in order)              default hidden state       pooled
============== ================================ ========================== ===============================
``sd1``        CLIP-L                           last layer + final norm    none
``sd2``        OpenCLIP-H (23 layers, as        last layer + final norm    none
               diffusers converts it)
``sdxl``       CLIP-L, OpenCLIP-bigG            ``hidden_states[-2]``,     bigG ``text_embeds`` of chunk 0
               (features concatenated)          no final norm
``sdxl_refiner`` OpenCLIP-bigG                  ``hidden_states[-2]``,     bigG ``text_embeds`` of chunk 0
                                                no final norm
============== ================================ ========================== ===============================

**Layer selection** (``layer_idx``, set by CLIPSetLastLayer): an index into the encoder's
``hidden_states`` tuple, −1 = output of the last transformer layer, −2 = the one before, … The final
layer norm is applied for SD1/SD2 and not for SDXL, whatever the layer — exactly what diffusers does
with ``clip_skip`` and what ComfyUI does with its stop-at-layer setting. Correspondence with
diffusers: SD1/SD2 ``clip_skip = −layer_idx − 1``; SDXL ``clip_skip = −layer_idx − 2`` (so the SDXL
default −2 is diffusers' ``clip_skip=None``). For SD2 the index counts layers of the 23-layer encoder
diffusers builds; ComfyUI keeps OpenCLIP-H's 24th layer and defaults to −2 of 24, which is our −1.

**Weights** follow ComfyUI, not A1111: every token embedding is moved away from (or toward) the
embedding the *empty prompt* has at the same position, ``z' = (z − z_empty)·w + z_empty``, where
``z_empty`` is the encoding of a chunk holding only BOS, EOS and padding. Weight 1 leaves ``z`` untouched
(positions with weight 1 are copied, not recomputed, so an all-1 prompt equals the unweighted encoding
exactly); weight 0 makes the token indistinguishable from "nothing there". A1111 instead scales ``z``
by ``w`` and rescales the whole chunk to keep its mean, which shifts every token. The pooled vector is
never weighted (ComfyUI neither). ``z_empty`` is computed only when some weight differs from 1.

**Embeddings** (``embedding:name`` in the prompt, :mod:`.embeddings`): their vectors take token positions
of their own, with ids past the vocabulary; for those positions the encoder's input embedding (before
the position embedding is added) is the file's vector, as after diffusers' ``load_textual_inversion``.
The vectors are handed to the one forward call that needs them (a pre-hook on the encoder's embedding
layer that recognises its own ids tensor), so the shared encoder is never resized or changed.

**Devices and dtypes**: token ids are sent to each encoder's own device and the encoder runs in its own
dtype (fp16/bf16 encoders stay fast); outputs are converted to float32 on the CPU before weighting and
concatenation, so weighting arithmetic is done in full precision and the conditioning is device-neutral.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from nodes import families as model_families

from ..conditioning import CondEntry
from .tokenize import (
    FIRST_EMBEDDING_ID,
    PAD_CLIP_L,
    PAD_OPEN_CLIP,
    EmbedLookup,
    TokenChunk,
    chunk_tokens,
    weighted_tokens,
)
from .weights import parse_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from .embeddings import PromptEmbeddings


@dataclass(frozen=True)
class FamilySpec:
    """How one model family turns token chunks into conditioning."""

    encoder_roles: tuple[str, ...]
    """Human-readable name of each expected encoder, in order (for error messages)."""
    pad_ids: tuple[int, ...]
    """Padding id per encoder: 49407 for CLIP-L, 0 for OpenCLIP."""
    default_layer: int
    """``hidden_states`` index used when no layer is set."""
    final_norm: bool
    """Whether the text model's final layer norm is applied to the selected hidden state."""
    pooled_encoder: int | None
    """Index of the encoder whose ``text_embeds`` become the pooled output, or ``None``."""


def _family_specs() -> dict[str, FamilySpec]:
    """The CLIP-conditioned families of the registry (``nodes.families``), as this module uses them."""
    specs: dict[str, FamilySpec] = {}
    for family in model_families.supported():
        cond = family.conditioning
        slots = family.text_encoders
        if cond is None or not slots or any(s.tokenizer != "clip" for s in slots):
            continue
        if {s.pad_id for s in slots} - {PAD_CLIP_L, PAD_OPEN_CLIP}:
            raise ValueError(f"{family.name}: CLIP pad ids are {PAD_CLIP_L} (CLIP-L) or {PAD_OPEN_CLIP} (OpenCLIP)")
        specs[family.name] = FamilySpec(
            tuple(s.role for s in slots),
            tuple(s.pad_id for s in slots),
            cond.default_layer,
            cond.final_norm,
            cond.pooled_encoder,
        )
    return specs


FAMILIES: dict[str, FamilySpec] = _family_specs()


@contextmanager
def _embedding_vectors(encoder: PreTrainedModel, ids: Tensor, vectors: Tensor) -> Iterator[None]:
    """During this block, the encoder's forward call on exactly ``ids`` (same storage) embeds the ids from
    FIRST_EMBEDDING_ID up as rows of ``vectors``; any other call (another thread's prompt) is untouched."""
    layer: Any = encoder.embeddings if hasattr(encoder, "embeddings") else encoder.text_model.embeddings
    table = layer.token_embedding
    extra = ids >= FIRST_EMBEDDING_ID
    inputs = table(ids.masked_fill(extra, 0))
    inputs[extra] = vectors.to(device=inputs.device, dtype=inputs.dtype)[ids[extra] - FIRST_EMBEDDING_ID]

    def swap(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        given = kwargs.get("input_ids", args[0] if args else None)
        if given is None or given.data_ptr() != ids.data_ptr():
            return None
        return (), {**kwargs, "input_ids": None, "inputs_embeds": inputs.view(given.shape + inputs.shape[-1:])}

    handle = layer.register_forward_pre_hook(swap, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def run_encoder(
    encoder: PreTrainedModel,
    ids: Tensor,
    layer: int,
    final_norm: bool,
    want_pooled: bool,
    vectors: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """One forward pass over a ``[n, 77]`` batch of ids; returns float32 CPU ``(hidden, pooled)``.

    The plain ``last_hidden_state`` is used when it is what was asked for (last layer + norm), which is
    the exact code path of diffusers' SD pipeline without ``clip_skip``. ``vectors``: the embedding
    vectors that ids from FIRST_EMBEDDING_ID up stand for.
    """
    use_last = final_norm and layer == -1
    ids = ids.to(encoder.device)
    with torch.no_grad():
        with nullcontext() if vectors is None else _embedding_vectors(encoder, ids, vectors):
            out = encoder(input_ids=ids, output_hidden_states=not use_last)
        if use_last:
            hidden = out.last_hidden_state
        else:
            hidden = out.hidden_states[layer]
            if final_norm:
                hidden = final_layer_norm(encoder)(hidden)
        pooled = out.text_embeds if want_pooled else None
    return hidden.float().cpu(), None if pooled is None else pooled.float().cpu()


def final_layer_norm(encoder: PreTrainedModel) -> torch.nn.Module:
    """The text transformer's final LayerNorm, wherever this transformers version keeps it.

    transformers 5 flattened ``CLIPTextModel`` (``encoder.final_layer_norm``) but not
    ``CLIPTextModelWithProjection`` (``encoder.text_model.final_layer_norm``); 4.x had ``text_model`` on both.
    """
    return getattr(encoder, "text_model", encoder).final_layer_norm


def apply_weights(z: Tensor, weights: Tensor, z_empty: Tensor) -> Tensor:
    """ComfyUI-style emphasis: ``(z − z_empty)·w + z_empty`` where ``w ≠ 1``, ``z`` unchanged elsewhere.

    ``z``: ``[n, 77, d]``; ``weights``: ``[n, 77]``; ``z_empty``: ``[77, d]`` (broadcast over chunks).
    """
    w = weights.to(z.dtype).unsqueeze(-1)
    return torch.where(w != 1.0, (z - z_empty) * w + z_empty, z)


def _ids(chunks: Sequence[TokenChunk]) -> Tensor:
    return torch.tensor([c.ids for c in chunks], dtype=torch.long)


def encode_chunks(
    spec: FamilySpec,
    encoders: Sequence[PreTrainedModel],
    chunks_per_encoder: Sequence[Sequence[TokenChunk]],
    layer: int,
    embeddings: PromptEmbeddings | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Encode pre-tokenized chunks; returns ``(embeds [1, 77·n, Σdim], pooled [1, p] | None)``.
    ``embeddings``: the prompt's textual-inversion vectors, when its chunks hold their ids."""
    outputs: list[Tensor] = []
    pooled: Tensor | None = None
    for i, (encoder, chunks, pad_id) in enumerate(zip(encoders, chunks_per_encoder, spec.pad_ids, strict=True)):
        want_pooled = spec.pooled_encoder == i
        vectors = embeddings.vectors(encoder, spec.encoder_roles[i]) if embeddings and embeddings.used else None
        z, p = run_encoder(encoder, _ids(chunks), layer, spec.final_norm, want_pooled, vectors)
        weights = torch.tensor([c.weights for c in chunks], dtype=torch.float32)
        if bool((weights != 1.0).any()):
            empty = _ids(chunk_tokens([], pad_id))
            z_empty, _ = run_encoder(encoder, empty, layer, spec.final_norm, False)
            z = apply_weights(z, weights, z_empty[0])
        outputs.append(z)
        if p is not None:
            pooled = p[:1]  # the first chunk's sentence embedding, as ComfyUI and diffusers use
    z_all = torch.cat(outputs, dim=-1)
    return z_all.reshape(1, -1, z_all.shape[-1]), pooled


def encode_text(
    family: str,
    encoders: Sequence[PreTrainedModel],
    text: str,
    layer: int | None = None,
    embeddings: PromptEmbeddings | None = None,
) -> CondEntry:
    """Prompt text (with emphasis syntax) → one :class:`CondEntry` with empty extras. With ``embeddings``
    (a fresh :class:`~.embeddings.PromptEmbeddings`), ``embedding:name`` references are looked up in it."""
    spec = FAMILIES[family]
    lookup: EmbedLookup | None = embeddings.ids_for if embeddings is not None else None
    tokens = weighted_tokens(parse_prompt(text), lookup)  # BPE once; only the padding differs per encoder
    chunks = [chunk_tokens(tokens, pad_id) for pad_id in spec.pad_ids]
    embeds, pooled = encode_chunks(spec, encoders, chunks, spec.default_layer if layer is None else layer, embeddings)
    return CondEntry(embeds=embeds, pooled=pooled, extras={})
