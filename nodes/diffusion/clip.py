"""CLIP: the runtime value of the CLIP socket (text encoders + which layer to read).

A checkpoint loader builds one ``ClipModel`` per checkpoint from transformers text encoders; prompt
nodes call :meth:`ClipModel.encode`; "CLIP Set Last Layer" calls :meth:`ClipModel.with_last_layer`.
Family rules (which encoders, padding, hidden state, pooled output, weighting) are documented in
:mod:`nodes.diffusion.text.encode`.

``ClipModel`` is a small immutable handle: variants share the (large) encoder modules, so a graph can
hold several layer settings of one checkpoint at no memory cost. It never changes the encoders'
device, dtype or train/eval mode — that belongs to the loader / model manager.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .conditioning import CondEntry, Conditioning
from .text.encode import FAMILIES, FamilySpec, encode_text
from .text.tokenize import TokenChunk, chunk_tokens, weighted_tokens
from .text.weights import parse_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class ClipModel:
    """Text encoders of one checkpoint plus the hidden layer to read.

    ``family``: ``"sd1"``, ``"sd2"``, ``"sdxl"`` or ``"sdxl_refiner"``.
    ``text_encoders``: transformers models in diffusers' order — SD1 ``[CLIPTextModel (CLIP-L)]``;
    SD2 ``[CLIPTextModel (OpenCLIP-H)]``; SDXL ``[CLIPTextModel (CLIP-L),
    CLIPTextModelWithProjection (bigG)]``; refiner ``[CLIPTextModelWithProjection (bigG)]``.
    ``layer_idx``: ``hidden_states`` index (−1 last layer, −2 penultimate, …) or ``None`` for the
    family default (−1 for SD1/SD2, −2 for SDXL).
    """

    __slots__ = ("_encoders", "_family", "_layer_idx")

    def __init__(self, family: str, text_encoders: Sequence[PreTrainedModel], layer_idx: int | None = None) -> None:
        if family not in FAMILIES:
            raise ValueError(f"unknown CLIP family {family!r}; expected one of {sorted(FAMILIES)}")
        spec = FAMILIES[family]
        encoders = tuple(text_encoders)
        if len(encoders) != len(spec.encoder_roles):
            raise ValueError(
                f"{family} needs {len(spec.encoder_roles)} text encoder(s) "
                f"({', '.join(spec.encoder_roles)}), got {len(encoders)}"
            )
        if spec.pooled_encoder is not None and not hasattr(encoders[spec.pooled_encoder], "text_projection"):
            raise ValueError(
                f"{family}: text encoder {spec.pooled_encoder} must be a CLIPTextModelWithProjection "
                "(its projected EOS embedding is the pooled conditioning)"
            )
        self._family = family
        self._encoders = encoders
        self._layer_idx = None if layer_idx is None else self._checked_layer(layer_idx, encoders)

    @staticmethod
    def _checked_layer(layer_idx: int, encoders: Sequence[PreTrainedModel]) -> int:
        """Reject layer indices the encoders do not have, instead of failing later inside a run."""
        depth = min(int(e.config.num_hidden_layers) for e in encoders)
        if not -depth <= layer_idx <= -1:
            raise ValueError(f"CLIP layer must be between -{depth} and -1, got {layer_idx}")
        return int(layer_idx)

    @property
    def family(self) -> str:
        return self._family

    @property
    def text_encoders(self) -> tuple[PreTrainedModel, ...]:
        return self._encoders

    @property
    def layer_idx(self) -> int | None:
        """The layer set by :meth:`with_last_layer`, ``None`` for the family default."""
        return self._layer_idx

    @property
    def spec(self) -> FamilySpec:
        return FAMILIES[self._family]

    @property
    def effective_layer(self) -> int:
        """The ``hidden_states`` index actually read."""
        return self.spec.default_layer if self._layer_idx is None else self._layer_idx

    def with_last_layer(self, stop_at_clip_layer: int) -> ClipModel:
        """CLIPSetLastLayer: a new handle reading ``hidden_states[stop_at_clip_layer]``, same encoders.

        −1 = last layer, −2 = penultimate ("clip skip 2" in A1111 terms for SD1), … Absolute, not
        relative to the current setting, like ComfyUI's node.
        """
        return ClipModel(self._family, self._encoders, stop_at_clip_layer)

    def tokenize(self, text: str) -> list[list[TokenChunk]]:
        """The weighted 77-token chunks each encoder would receive (for token counters and debugging)."""
        tokens = weighted_tokens(parse_prompt(text))
        return [chunk_tokens(tokens, pad_id) for pad_id in self.spec.pad_ids]

    def encode(self, text: str, extras: Mapping[str, Any] | None = None) -> Conditioning:
        """CLIPTextEncode: prompt (with emphasis syntax) → a one-entry :data:`Conditioning`.

        ``extras`` (e.g. SDXL ``width``/``height``/``crop_w``/``crop_h``/``target_width``/
        ``target_height``) is copied into the entry; leaving the SDXL size keys out means "the size being
        generated" (see :func:`nodes.diffusion.conditioning.sdxl_time_ids`). ``embedding:name`` in the
        prompt uses the installed textual-inversion embedding (:mod:`.text.embeddings`).
        """
        from .text.embeddings import PromptEmbeddings

        entry = encode_text(self._family, self._encoders, text, self.effective_layer, PromptEmbeddings())
        return [CondEntry(entry.embeds, entry.pooled, dict(extras or {}))]

    def __repr__(self) -> str:
        return f"ClipModel({self._family!r}, {len(self._encoders)} encoder(s), layer_idx={self._layer_idx})"
