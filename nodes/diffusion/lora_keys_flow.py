"""Where a LoRA key lands in a flow transformer (SD3/3.5, FLUX.1, Z-Image) and its text encoders.

sdgraph's flow transformers *are* diffusers modules (``SD3Transformer2DModel``,
``FluxTransformer2DModel``, ``ZImageTransformer2DModel``; :mod:`nodes.diffusion.dit`), so a diffusers /
PEFT LoRA (``transformer.<module>.lora_A``) names a real module directly. The other layouts people
download name the *original* single-file modules instead — kohya/sd-scripts
(``lora_unet_double_blocks_0_img_attn_qkv``), ComfyUI and Black Forest Labs
(``diffusion_model.single_blocks.0.linear1``) — and some of those are fused in the original network
where diffusers has separate layers: FLUX's double-block ``qkv`` (→ ``to_q``, ``to_k``, ``to_v``), its
single-block ``linear1`` (→ ``to_q``, ``to_k``, ``to_v``, ``proj_mlp``), SD3's ``qkv``, Z-Image's
``attention.qkv``; and the final AdaLN stores (shift, scale) where diffusers has (scale, shift).

The table here is built from the very rules the loader uses to turn an original checkpoint into the
diffusers model (``layout_rules`` of each ``nodes.diffusion.dit`` module, sized from the model's own
config), so both spellings resolve to the same real module and a fused original key becomes a list of
:class:`RowSlice` — which rows of the original ΔW each diffusers layer receives. For a low-rank pair the
rows are those of ``up`` (``down`` is shared), so each slice is still a cheap low-rank hook.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nodes import families

__all__ = ["FLOW_TEXT_ROLES", "RowSlice", "flow_layer_table", "is_flow_family", "lora_kind_guess"]

#: LoRA text-encoder targets (``text_encoder``, ``text_encoder_2``, ``text_encoder_3``, named as in
#: diffusers' pipelines, and kohya's ``lora_te1/2/3``) → the role of the encoder in a :class:`FlowClip`.
#: FLUX's pipeline calls T5 ``text_encoder_2``; sd-scripts calls it ``lora_te3`` for FLUX and SD3 alike.
FLOW_TEXT_ROLES: Mapping[str, Mapping[str, str]] = {
    "sd3": {"text_encoder": "clip_l", "text_encoder_2": "clip_g", "text_encoder_3": "t5xxl"},
    "flux": {"text_encoder": "clip_l", "text_encoder_2": "t5xxl", "text_encoder_3": "t5xxl"},
    "z_image": {"text_encoder": "qwen3"},
}


@dataclass(frozen=True)
class RowSlice:
    """One real layer fed by a file entry: rows ``start:stop`` of the entry's ΔW (after the half swap)."""

    name: str  # the module's name in the diffusers network
    module: torch.nn.Module
    start: int
    stop: int
    swap_halves: bool = False  # original (shift, scale) → diffusers (scale, shift): swap ΔW's row halves
    fused: bool = False  # the file entry covers more rows than this module (a fused original layer)


def is_flow_family(family: str) -> bool:
    return family in FLOW_TEXT_ROLES


def _layout_rules(network: Any) -> list[Any]:
    """The original → diffusers key rules of the network's family module, sized from its config."""
    module = {
        "SD3Transformer2DModel": "nodes.diffusion.dit.sd3",
        "FluxTransformer2DModel": "nodes.diffusion.dit.flux",
        "ZImageTransformer2DModel": "nodes.diffusion.dit.z_image",
    }.get(type(network).__name__)
    if module is None:
        return []
    rules: list[Any] = importlib.import_module(module).layout_rules(network.config)
    return rules


def _is_layer(module: torch.nn.Module) -> bool:
    """A layer a LoRA can hook: Linear, Conv2d, or a GGUF/fp8 file's stored linear (same call, same sizes)."""
    from nodes.diffusion.stored_linear import StoredWeightLinear

    return isinstance(module, torch.nn.Linear | torch.nn.Conv2d | StoredWeightLinear)


def _rows(module: torch.nn.Module) -> int:
    if isinstance(module, torch.nn.Conv2d):
        return int(module.out_channels)
    out = module.out_features
    assert isinstance(out, int)
    return out


def flow_layer_table(network: torch.nn.Module) -> dict[str, list[RowSlice]]:
    """Every patchable layer of a flow transformer under its diffusers name and, where the original
    single-file layout names it differently, its original name — both ``_``-spelled, as kohya keys are
    and as :func:`nodes.diffusion.lora.load_lora` spells every path."""
    table: dict[str, list[RowSlice]] = {}
    modules = dict(network.named_modules())
    for name, module in modules.items():
        if _is_layer(module):
            table[name.replace(".", "_")] = [RowSlice(name, module, 0, _rows(module))]
    for rule in _layout_rules(network):
        if not rule.source.endswith(".weight") or not all(t.endswith(".weight") for t in rule.targets):
            continue
        targets = [modules.get(t.removesuffix(".weight")) for t in rule.targets]
        if not all(m is not None and _is_layer(m) for m in targets):
            continue
        sizes = rule.split or (_rows(targets[0]),)  # type: ignore[arg-type]
        slices, start = [], 0
        for target, module, size in zip(rule.targets, targets, sizes, strict=True):
            assert module is not None
            name = target.removesuffix(".weight")
            slices.append(RowSlice(name, module, start, start + size, rule.swap_halves, len(sizes) > 1))
            start += size
        table.setdefault(rule.source.removesuffix(".weight").replace(".", "_"), slices)
    return table


# Key fragments that tell which network a LoRA file was made for, for the message when it fits nothing.
_KIND_MARKERS: Sequence[tuple[str, tuple[str, ...]]] = (
    ("a Stable Diffusion 1.x/2.x/XL UNet", ("down_blocks_", "up_blocks_", "input_blocks_", "output_blocks_")),
    ("FLUX.1", ("double_blocks_", "single_blocks_", "single_transformer_blocks_")),
    ("Stable Diffusion 3 / 3.5", ("joint_blocks_", "context_block_")),
    ("Z-Image", ("noise_refiner_", "context_refiner_", "feed_forward_w")),
)


def lora_kind_guess(paths: Sequence[str]) -> str:
    """What network the module paths of a LoRA's denoiser layers belong to ("" when unclear)."""
    votes = {kind: sum(any(m in p for m in markers) for p in paths) for kind, markers in _KIND_MARKERS}
    kind, count = max(votes.items(), key=lambda kv: kv[1])
    return kind if count else ""


def family_label(family: str) -> str:
    return families.get(family).display_name if family in families.names(only_supported=False) else family
