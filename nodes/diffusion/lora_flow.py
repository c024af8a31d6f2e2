"""LoRAs on the flow-matching families (SD3/3.5, FLUX.1, Z-Image): the transformer and the FlowClip.

The same no-copy design as for the UNet (:mod:`nodes.diffusion.lora`): every file entry becomes
:class:`~nodes.diffusion.model.WeightPatch` hooks on the real diffusers layers, active only while the
handle that carries them samples or encodes, looked up per thread — so the base model and differently
LoRA'd handles share one copy of the weights, also when two graphs sample it at once.

What is particular to these families is where a key lands (:mod:`nodes.diffusion.lora_keys_flow`): an
entry for an original *fused* layer (FLUX's ``linear1``, any ``qkv``) is cut by rows into one patch per
diffusers layer — ``up``'s rows for a low-rank pair (``down`` is shared), ΔW's rows for LoHa/LoKr/full
diffs — and an entry for the final AdaLN has its row halves swapped, as the weights were at load time.

The text encoders of a ``FlowClip`` are fetched from the model manager at each encode (it may have
freed and reloaded them), so :class:`PatchedFlowClip` keeps the LoRA layers and builds the hooks for
the modules it is handed each time, instead of holding patches that would keep the encoders alive.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from nodes.diffusion.conditioning import Conditioning
from nodes.diffusion.lora import (
    UNET,
    AnyLayer,
    LoraLayer,
    LycorisLayer,
    _Found,
    _lora_shape,
    _module_shape,
    _patch,
    _patches_for,
    _problems,
)
from nodes.diffusion.lora_keys_flow import FLOW_TEXT_ROLES, RowSlice, flow_layer_table
from nodes.diffusion.model import WeightPatch, patches_applied
from nodes.diffusion.text.encoder_files import ROLE_NAMES
from nodes.diffusion.text_encoders import FlowClip

__all__ = ["PatchedFlowClip", "apply_to_flow_clip", "text_layers_by_role", "transformer_patches"]

log = logging.getLogger(__name__)


def transformer_patches(
    network: torch.nn.Module, layers: Sequence[AnyLayer], strength: float
) -> tuple[list[WeightPatch], _Found]:
    """The hooks for a LoRA's transformer layers on a flow network, and what did not fit."""
    table = flow_layer_table(network)
    patches: list[WeightPatch] = []
    found = _Found()
    for layer in layers:
        slices = table.get(layer.path)
        if slices is None:
            found.missing.append(layer)
            continue
        rows = slices[-1].stop
        for s in slices:
            part = _rows_of(layer, s, rows)
            patch = None if part is None else _patch(s.module, part, strength)  # type: ignore[arg-type]
            if patch is None:
                where = f" (rows {s.start}:{s.stop} of a fused {rows})" if s.fused else ""
                found.misfit.append(f"{s.name}{where}: LoRA {_lora_shape(layer)}, layer {_module_shape(s.module)}")  # type: ignore[arg-type]
                break
            patches.append(patch)
    return patches, found


def _reorder(t: Tensor, s: RowSlice) -> Tensor:
    if s.swap_halves:
        first, second = t.chunk(2, dim=0)
        t = torch.cat([second, first], dim=0)
    return t[s.start : s.stop]


def _rows_of(layer: AnyLayer, s: RowSlice, rows: int) -> AnyLayer | None:
    """The part of ``layer`` that lands on ``s``: itself when the file entry is the module, else its rows
    (swapped first for an AdaLN). ``None`` when the entry has another number of rows than the layer."""
    if not s.fused and not s.swap_halves:
        return layer
    dora = layer.dora_scale
    if dora is not None:
        if dora.shape[0] != rows:
            if s.fused:
                return None  # a per-input-channel DoRA norm runs over the fused rows: not separable
        else:
            dora = _reorder(dora, s)
    if isinstance(layer, LoraLayer):
        if layer.up.shape[0] != rows:
            return None
        return dataclasses.replace(layer, up=_reorder(layer.up, s), dora_scale=dora)
    delta, bias = layer.delta(), layer.bias
    if (delta is not None and delta.shape[0] != rows) or (bias is not None and bias.numel() != rows):
        return None
    tensors = {}
    if delta is not None:
        tensors["diff"] = _reorder(delta, s)
    if bias is not None:
        tensors["diff_b"] = _reorder(bias.flatten(), s)
    return LycorisLayer(layer.key, layer.target, layer.path, "full", tensors, None, dora)


def text_layers_by_role(family: str, layers: Sequence[AnyLayer]) -> tuple[dict[str, list[AnyLayer]], list[str]]:
    """A LoRA's text-encoder layers grouped by the FlowClip role they patch, and the targets this family
    has no encoder for (e.g. ``text_encoder_2`` in a Z-Image LoRA)."""
    roles = FLOW_TEXT_ROLES[family]
    by_role: dict[str, list[AnyLayer]] = {}
    unknown: list[str] = []
    for layer in layers:
        if layer.target == UNET:
            continue
        role = roles.get(layer.target)
        if role is None:
            unknown.append(layer.target)
            continue
        by_role.setdefault(role, []).append(layer)
    return by_role, unknown


def _encoder_modules(encoder: torch.nn.Module) -> dict[str, tuple[str, Any]]:
    """Linear layers of a transformers text encoder, ``_``-spelled, under every prefix files use:
    CLIP without ``text_model.`` (as for SD), T5 as it is, Qwen3 with and without ``model.``."""
    table: dict[str, tuple[str, Any]] = {}
    for name, module in encoder.named_modules():
        if isinstance(module, torch.nn.Linear):
            short = name.removeprefix("text_model.")
            table[short.replace(".", "_")] = (name, module)
            table.setdefault(("model." + name).replace(".", "_"), (name, module))
    return table


def encoder_patches(
    encoder: torch.nn.Module, layers: Sequence[AnyLayer], strength: float
) -> tuple[list[WeightPatch], _Found]:
    return _patches_for(layers, _encoder_modules(encoder), strength)


def apply_to_flow_clip(
    clip: FlowClip, layers: Sequence[AnyLayer], strength: float, file_name: str
) -> tuple[FlowClip, list[str]]:
    """LoraLoader's CLIP output for a flow family, and what did not fit.

    Layers for an encoder this CLIP value does not hold (a T5 part when the SD3 CLIP was loaded without
    T5) are left out with one warning naming their count and the first key: the prompt is still encoded
    as the LoRA means it for the encoders that are there. Layers for an encoder the family never has are
    a mismatch."""
    by_role, foreign = text_layers_by_role(clip.family, layers)
    problems = []
    if foreign:
        names = ", ".join(sorted(set(foreign)))
        problems.append(f"{len(foreign)} text-encoder layers are for {names}, which a {clip.family} CLIP does not have")
    encoders = clip.encoders
    used: dict[str, Sequence[AnyLayer]] = {}
    for role, group in by_role.items():
        label = f"{ROLE_NAMES[role]} text encoder"
        module = getattr(encoders, role)
        if module is None:
            log.warning(
                "lora %r: %d %s layers not used, this CLIP has no %s (first: %s)",
                file_name,
                len(group),
                ROLE_NAMES[role],
                ROLE_NAMES[role],
                group[0].key,
            )
            continue
        _, found = encoder_patches(module, group, strength)
        problems += _problems(label, group, found)
        used[role] = group
    if problems or not used:
        return clip, problems
    return PatchedFlowClip(clip, [(used, strength)]), problems


class PatchedFlowClip(FlowClip):
    """A :class:`FlowClip` whose encoders carry LoRA patches while it encodes (see the module docstring).

    ``loras`` holds, per applied LoRA, its layers by encoder role and its strength; applying another
    LoRA adds to them, and ``with_last_layer`` / ``with_t5_length`` keep them.
    """

    __slots__ = ("_loras",)

    def __init__(self, base: FlowClip, loras: Sequence[tuple[Mapping[str, Sequence[AnyLayer]], float]]) -> None:
        super().__init__(base.family, base._fetch, layer_idx=base.layer_idx, t5_length=base.t5_length)
        inherited = base._loras if isinstance(base, PatchedFlowClip) else ()
        self._loras: tuple[tuple[Mapping[str, Sequence[AnyLayer]], float], ...] = (*inherited, *loras)

    def patches(self) -> list[WeightPatch]:
        """The hooks for the encoders as fetched now (cheap: low-rank pairs are only moved to the device)."""
        encoders = self._encoders
        out: list[WeightPatch] = []
        for by_role, strength in self._loras:
            for role, layers in by_role.items():
                module = getattr(encoders, role)
                if module is not None:
                    out += encoder_patches(module, layers, strength)[0]
        return out

    def with_last_layer(self, stop_at_clip_layer: int) -> PatchedFlowClip:
        return PatchedFlowClip(FlowClip.with_last_layer(self, stop_at_clip_layer), self._loras)

    def with_t5_length(self, length: int) -> PatchedFlowClip:
        return PatchedFlowClip(FlowClip.with_t5_length(self, length), self._loras)

    def encode(self, text: str, extras: Mapping[str, Any] | None = None) -> Conditioning:
        if self.family in ("sd3", "flux"):  # goes through encode_sd3 / encode_flux, which hook the patches
            return super().encode(text, extras)
        with patches_applied(self.patches()):
            return super().encode(text, extras)

    def encode_sd3(self, clip_l: str, clip_g: str, t5xxl: str, **kwargs: Any) -> Conditioning:
        with patches_applied(self.patches()):
            return super().encode_sd3(clip_l, clip_g, t5xxl, **kwargs)

    def encode_flux(self, clip_l: str, t5xxl: str, **kwargs: Any) -> Conditioning:
        with patches_applied(self.patches()):
            return super().encode_flux(clip_l, t5xxl, **kwargs)

    def __repr__(self) -> str:
        return f"Patched{super().__repr__()[:-1]}, {len(self._loras)} LoRA(s))"
