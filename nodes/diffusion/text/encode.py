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

**Devices and dtypes**: token ids are sent to each encoder's own device and the encoder runs in its own
dtype (fp16/bf16 encoders stay fast); outputs are converted to float32 on the CPU before weighting and
concatenation, so weighting arithmetic is done in full precision and the conditioning is device-neutral.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from nodes import families as model_families

from ..conditioning import CondEntry
from .tokenize import PAD_CLIP_L, PAD_OPEN_CLIP, TokenChunk, chunk_tokens, weighted_tokens
from .weights import parse_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel


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


def run_encoder(
    encoder: PreTrainedModel, ids: Tensor, layer: int, final_norm: bool, want_pooled: bool
) -> tuple[Tensor, Tensor | None]:
    """One forward pass over a ``[n, 77]`` batch of ids; returns float32 CPU ``(hidden, pooled)``.

    The plain ``last_hidden_state`` is used when it is what was asked for (last layer + norm), which is
    the exact code path of diffusers' SD pipeline without ``clip_skip``.
    """
    use_last = final_norm and layer == -1
    with torch.no_grad():
        out = encoder(input_ids=ids.to(encoder.device), output_hidden_states=not use_last)
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
) -> tuple[Tensor, Tensor | None]:
    """Encode pre-tokenized chunks; returns ``(embeds [1, 77·n, Σdim], pooled [1, p] | None)``."""
    outputs: list[Tensor] = []
    pooled: Tensor | None = None
    for i, (encoder, chunks, pad_id) in enumerate(zip(encoders, chunks_per_encoder, spec.pad_ids, strict=True)):
        want_pooled = spec.pooled_encoder == i
        z, p = run_encoder(encoder, _ids(chunks), layer, spec.final_norm, want_pooled)
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


def encode_text(family: str, encoders: Sequence[PreTrainedModel], text: str, layer: int | None = None) -> CondEntry:
    """Prompt text (with emphasis syntax) → one :class:`CondEntry` with empty extras."""
    spec = FAMILIES[family]
    tokens = weighted_tokens(parse_prompt(text))  # BPE once; only the padding differs per encoder
    chunks = [chunk_tokens(tokens, pad_id) for pad_id in spec.pad_ids]
    embeds, pooled = encode_chunks(spec, encoders, chunks, spec.default_layer if layer is None else layer)
    return CondEntry(embeds=embeds, pooled=pooled, extras={})
