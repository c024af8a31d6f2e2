"""Reading architectures from tensor names and shapes, and the public configs that fill the gaps.

Single-file transformers carry no config, and diffusers' own single-file converters assume the
full-size widths of the released models. Here every size is read from a tensor that has it (width
from the patch embedder, head size from the q/k norm scale, depth from the highest block index), so
pruned, distilled and tiny models load as well as the released ones. What no shape records comes
from the public diffusers config of the released model (``resources/dit_configs/<name>/``).

No torch here: detection runs on a safetensors header.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from nodes.diffusion.errors import ModelError
from nodes.shipped import resource_path

Shapes = Mapping[str, tuple[int, ...]]

CONFIG_ROOT = resource_path("dit_configs")
# Where the denoiser sits in files people download: original single files and all-in-one checkpoints
# use ``model.diffusion_model.``, ComfyUI's ``diffusion_models`` files and BFL's releases use none.
TRANSFORMER_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "")


class UnusableWeightsError(ModelError):
    """The file looks like a known network but its tensors cannot make one (missing, misshapen)."""

    def __init__(self, source: str | Path, network: str, reason: str) -> None:
        self.source = str(source)
        self.network = network
        self.reason = reason
        super().__init__(
            f"{self.source} cannot be loaded as a {network} model: {reason}. "
            "The file may be incomplete (download it again) or a variant sdgraph does not support."
        )


@cache
def _read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def public_config(name: str, component: str) -> dict[str, Any]:
    """A fresh copy of a shipped public config, e.g. ``public_config("flux1_dev", "transformer")``."""
    path = CONFIG_ROOT / name / component / ("scheduler_config.json" if component == "scheduler" else "config.json")
    if not path.is_file():
        raise ModelError(f"Missing shipped config {path}; the sdgraph installation is incomplete.")
    return copy.deepcopy(_read_json(path))


class KeyIndex:
    """Queries over the tensors under one key prefix, with the prefix taken off."""

    def __init__(self, shapes: Shapes, prefix: str = "") -> None:
        n = len(prefix)
        self.prefix = prefix
        self.shapes: dict[str, tuple[int, ...]] = {k[n:]: tuple(v) for k, v in shapes.items() if k.startswith(prefix)}

    def has(self, key: str) -> bool:
        return key in self.shapes

    def shape(self, key: str) -> tuple[int, ...] | None:
        return self.shapes.get(key)

    def indices(self, prefix: str) -> list[int]:
        """Sorted distinct N in keys ``prefix + "N." + ...``."""
        n = len(prefix)
        found = {
            int(head) for key in self.shapes if key.startswith(prefix) and (head := key[n:].partition(".")[0]).isdigit()
        }
        return sorted(found)

    def count(self, prefix: str, source: str | Path, network: str) -> int:
        """Number of blocks ``prefix + N``; a gap in the numbering means the file lost blocks."""
        found = self.indices(prefix)
        if found and found != list(range(len(found))):
            missing = sorted(set(range(found[-1] + 1)) - set(found))
            raise UnusableWeightsError(source, network, f"blocks {prefix}{missing} are missing")
        return len(found)


def find_prefix(shapes: Shapes, marker: str, prefixes: Sequence[str] = TRANSFORMER_PREFIXES) -> str | None:
    """The first prefix under which ``marker`` exists (the longest prefixes are tried first)."""
    for prefix in prefixes:
        if prefix + marker in shapes:
            return prefix
    return None


def need(idx: KeyIndex, key: str, source: str | Path, network: str, ndim: int | None = None) -> tuple[int, ...]:
    """The shape of a tensor the architecture is read from, or one clear error naming it."""
    shape = idx.shape(key)
    if shape is None:
        raise UnusableWeightsError(source, network, f"the tensor {idx.prefix + key} is missing")
    if ndim is not None and len(shape) != ndim:
        raise UnusableWeightsError(
            source, network, f"{idx.prefix + key} has shape {list(shape)}, expected {ndim} dimensions"
        )
    return shape


def heads_from(width: int, head_dim: int, source: str | Path, network: str) -> int:
    if head_dim <= 0 or width % head_dim:
        raise UnusableWeightsError(source, network, f"width {width} is not a whole number of {head_dim}-wide heads")
    return width // head_dim


def scaled_rope_axes(public_axes: Sequence[int], head_dim: int, source: str | Path, network: str) -> list[int]:
    """RoPE axis sizes for a head size other than the released one.

    The split of a head between the (time, height, width) axes is not stored anywhere in the
    weights; we keep the released proportions. Each axis needs an even size (it rotates pairs).
    """
    public_dim = sum(public_axes)
    if head_dim == public_dim:
        return list(public_axes)
    axes = [a * head_dim / public_dim for a in public_axes]
    if any(a != int(a) or int(a) % 2 for a in axes):
        raise UnusableWeightsError(
            source,
            network,
            f"{head_dim}-wide attention heads cannot keep the released RoPE split {list(public_axes)} "
            f"(it needs even sizes summing to {head_dim})",
        )
    return [int(a) for a in axes]


def whole_sqrt(n: int) -> int | None:
    root = math.isqrt(n)
    return root if root * root == n else None
