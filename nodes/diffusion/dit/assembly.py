"""Turning original-layout tensors into a diffusers model without copying them.

Key conversion is written as data: one ``Rule`` per original tensor, naming the diffusers
tensor(s) it becomes. A fused projection (``qkv``, FLUX's ``linear1``) is split into row blocks whose
sizes come from the config read off the shapes, so a 64-wide test model and a 3072-wide release
go through the same code. Splitting rows of a contiguous tensor gives contiguous views: the
memory-mapped file pages become the parameters directly.

``build_model`` creates the network on the meta device (no memory, no random init) and assigns
the tensors as its parameters (``load_state_dict(assign=True)``), so what is stored (bf16, fp16,
fp8) stays stored unless a dtype is asked for, and a model is never held twice. Anything missing,
left over or misshapen is one ``UnusableWeightsError`` naming the tensor.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodes.diffusion.dit.shapes import UnusableWeightsError

if TYPE_CHECKING:
    import torch

StateDict = dict[str, "torch.Tensor"]


@dataclass(frozen=True)
class Rule:
    """One original tensor and the diffusers tensor(s) it becomes."""

    source: str
    targets: tuple[str, ...]
    split: tuple[int, ...] = ()  # rows per target when a fused tensor feeds several
    swap_halves: bool = False  # original (shift, scale) order -> diffusers (scale, shift)


def rename(source: str, target: str) -> Rule:
    return Rule(source, (target,))


def linear(source: str, target: str, *, bias: bool = True) -> list[Rule]:
    """A weight (and bias) renamed as a pair, the common case."""
    rules = [rename(f"{source}.weight", f"{target}.weight")]
    if bias:
        rules.append(rename(f"{source}.bias", f"{target}.bias"))
    return rules


def fused(source: str, targets: Iterable[str], sizes: Iterable[int], *, bias: bool = True) -> list[Rule]:
    """A fused projection split by rows into several diffusers linears."""
    targets, sizes = tuple(targets), tuple(sizes)
    rules = [Rule(f"{source}.weight", tuple(f"{t}.weight" for t in targets), sizes)]
    if bias:
        rules.append(Rule(f"{source}.bias", tuple(f"{t}.bias" for t in targets), sizes))
    return rules


def swapped(source: str, target: str) -> list[Rule]:
    """An AdaLN projection whose two output halves diffusers orders the other way round."""
    return [
        Rule(f"{source}.weight", (f"{target}.weight",), swap_halves=True),
        Rule(f"{source}.bias", (f"{target}.bias",), swap_halves=True),
    ]


def apply_rules(
    sd: Mapping[str, torch.Tensor], prefix: str, rules: Iterable[Rule], source: str | Path, network: str
) -> StateDict:
    """Read each original tensor once (``prefix + rule.source``) and emit its diffusers tensors."""
    import torch

    from nodes.diffusion import scaled_fp8

    out: StateDict = {}
    for rule in rules:
        key = prefix + rule.source
        if key not in sd:
            raise UnusableWeightsError(source, network, f"the tensor {key} is missing")
        tensor: Any = scaled_fp8.pair(sd, key, sd[key], source, network)  # a Tensor or a ScaledWeight
        if rule.swap_halves:
            if tensor.shape[0] % 2:
                raise UnusableWeightsError(source, network, f"{key} has an odd number of rows {tensor.shape[0]}")
            first, second = tensor.chunk(2, dim=0)
            tensor = torch.cat([second, first], dim=0)
        if rule.split:
            if tensor.shape[0] != sum(rule.split):
                raise UnusableWeightsError(
                    source,
                    network,
                    f"{key} has {tensor.shape[0]} rows but the architecture read from the file needs "
                    f"{' + '.join(map(str, rule.split))} = {sum(rule.split)}",
                )
            parts = tensor.split(list(rule.split), dim=0)
        else:
            parts = (tensor,)
        out.update(zip(rule.targets, parts, strict=True))
    return out


# Top-level names of the other parts of all-in-one files; never part of a transformer read without prefix.
OTHER_COMPONENTS = ("text_encoders.", "first_stage_model.", "vae.", "cond_stage_model.", "conditioner.")


def check_all_used(
    keys: Iterable[str],
    prefix: str,
    rules: Iterable[Rule],
    source: str | Path,
    network: str,
    *,
    ignore: Iterable[str] = (),
) -> None:
    """Refuse tensors under the transformer prefix that no rule reads.

    A tensor we do not place means a variant whose architecture we would get wrong (extra
    embedders, a control branch); failing names it instead of dropping it. A scaled fp8 file's marker
    and the ``scale_weight``/``scale_input`` of weights the rules read are used (``apply_rules`` pairs them).
    """
    from nodes.diffusion import scaled_fp8

    keys = list(keys)
    sources = [r.source for r in rules]
    used = {prefix + s for s in sources} | {prefix + k for k in ignore} | scaled_fp8.scale_keys(keys, prefix, sources)
    left = [
        k
        for k in keys
        if k.startswith(prefix) and k not in used and not (prefix == "" and k.startswith(OTHER_COMPONENTS))
    ]
    if left:
        raise UnusableWeightsError(
            source, network, f"{len(left)} tensors are not part of this architecture, e.g. {', '.join(left[:3])}"
        )


def build_model(
    cls: type[Any],
    config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    *,
    dtype: torch.dtype | None,
    source: str | Path,
    network: str,
) -> Any:
    """The model whose parameters are exactly ``state_dict`` (cast only when ``dtype`` is given)."""
    import torch
    from accelerate import init_empty_weights  # type: ignore[import-untyped]

    from nodes.diffusion import scaled_fp8

    with init_empty_weights():
        model = cls.from_config(dict(config))
    expected = model.state_dict()
    state = {k: _cast(v, dtype) for k, v in state_dict.items()}
    for key, tensor in state.items():
        want = expected.get(key)
        if want is not None and tuple(want.shape) != tuple(tensor.shape):
            raise UnusableWeightsError(
                source,
                network,
                f"{key} has shape {list(tensor.shape)} but the architecture read from the file needs "
                f"{list(want.shape)}",
            )
    missing = [k for k in expected if k not in state]
    if missing:
        shown = ", ".join(missing[:3])
        raise UnusableWeightsError(source, network, f"{len(missing)} weights are missing, e.g. {shown}")
    extra = [k for k in state if k not in expected]
    if extra:
        raise UnusableWeightsError(
            source, network, f"{len(extra)} weights have no place in the model, e.g. {', '.join(extra[:3])}"
        )
    if any(isinstance(t, scaled_fp8.ScaledWeight) for t in state.values()):  # a scaled fp8 file
        state = scaled_fp8.place_scaled(model, state)
    if any(not isinstance(t, torch.Tensor) for t in state.values()):  # a GGUF file's quantized weights
        from nodes.diffusion.gguf import place_quantized

        state = place_quantized(model, state)
    model.load_state_dict(state, strict=True, assign=True)
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta:
        raise UnusableWeightsError(source, network, f"{len(meta)} weights were never loaded, e.g. {meta[:3]}")
    return model.eval().requires_grad_(False)


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
        tensor = tensor.to(dtype)
    return tensor


# --------------------------------------------------------------------------------------------
# diffusers folders
# --------------------------------------------------------------------------------------------

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def component_folder(path: str | Path, component: str = "transformer") -> Path | None:
    """``path/component`` for a pipeline folder, ``path`` for the component folder itself."""
    path = Path(path)
    for folder in (path / component, path):
        if (folder / "config.json").is_file():
            return folder
    return None


def folder_class(path: str | Path, component: str = "transformer") -> str | None:
    """The ``_class_name`` of a diffusers component folder, or None when it is not one."""
    folder = component_folder(path, component)
    if folder is None:
        return None
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    name = data.get("_class_name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def read_folder(path: str | Path, component: str, network: str) -> tuple[dict[str, Any], StateDict, Path]:
    """Config and (memory-mapped) weights of a diffusers component folder, single or sharded."""
    from nodes.diffusion.checkpoint.files import open_state_dict

    folder = component_folder(path, component)
    if folder is None:
        raise UnusableWeightsError(path, network, f"no {component}/config.json in the folder")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    index = folder / (WEIGHTS_NAME + ".index.json")
    if (folder / WEIGHTS_NAME).is_file():
        files = [folder / WEIGHTS_NAME]
    elif index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        files = [folder / name for name in sorted(set(weight_map.values()))]
    else:
        raise UnusableWeightsError(folder, network, f"no {WEIGHTS_NAME} (or its sharded index) in the folder")
    state: StateDict = {}
    for file in files:
        if not file.is_file():
            raise UnusableWeightsError(folder, network, f"the weight shard {file.name} is missing")
        lazy = open_state_dict(file)
        state.update({k: lazy[k] for k in lazy})
    return {k: v for k, v in config.items() if not k.startswith("_")}, state, folder
