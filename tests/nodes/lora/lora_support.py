"""A LoRA-file writer and the merged-weights oracle for the LoRA tests.

The oracle for every LoRA test is the textbook definition: a deep copy of the model whose weights were
merged by hand, ``W + strength · scale · up @ down``. The writer records, for each pair it puts in a
file, which real module it meant (named by the test, not derived by the code under test), so a wrong
key mapping shows up as an output difference.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from nodes.sd.model import DiffusionModel
from nodes.sd.sampling import ModelSampling


@dataclass
class Planned:
    """One LoRA pair written to a file, and the module (its real name in the model) it must patch."""

    module: str
    down: Tensor
    up: Tensor
    scale: float  # alpha / rank, or 1 without alpha


class LoraWriter:
    """Collects LoRA tensors under the keys a test chooses, then writes one safetensors file."""

    def __init__(self, seed: int = 0) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.gen = torch.Generator().manual_seed(seed)

    def pair(
        self,
        root: torch.nn.Module,
        module: str,
        down_key: str,
        up_key: str,
        *,
        rank: int = 4,
        alpha: float | None = None,
        alpha_key: str | None = None,
        down_2d_for_1x1: bool = False,
    ) -> Planned:
        """Seeded down/up for ``root.<module>`` (Linear or Conv2d), sized so the update is as large as W."""
        layer = root.get_submodule(module)
        if isinstance(layer, torch.nn.Conv2d):
            kh, kw = layer.kernel_size
            fan_in = layer.in_channels * kh * kw
            down = torch.randn(rank, layer.in_channels, kh, kw, generator=self.gen) / fan_in**0.5
            up = torch.randn(layer.out_channels, rank, 1, 1, generator=self.gen) / rank**0.5
            if down_2d_for_1x1:
                down, up = down.flatten(1), up.flatten(1)
        else:
            assert isinstance(layer, torch.nn.Linear)
            down = torch.randn(rank, layer.in_features, generator=self.gen) / layer.in_features**0.5
            up = torch.randn(layer.out_features, rank, generator=self.gen) / rank**0.5
        self.tensors[down_key] = down
        self.tensors[up_key] = up
        if alpha is not None:
            assert alpha_key is not None
            self.tensors[alpha_key] = torch.tensor(alpha)
        return Planned(module, down, up, 1.0 if alpha is None else alpha / rank)

    def kohya(self, root: torch.nn.Module, module: str, base: str, *, rank: int = 4, alpha: float | None) -> Planned:
        return self.pair(
            root,
            module,
            f"{base}.lora_down.weight",
            f"{base}.lora_up.weight",
            rank=rank,
            alpha=alpha,
            alpha_key=f"{base}.alpha",
        )

    def save(self, path: Path) -> Path:
        save_file({k: v.contiguous() for k, v in self.tensors.items()}, str(path))
        return path


def merged(root: torch.nn.Module, planned: Sequence[Planned], strength: float) -> torch.nn.Module:
    """The oracle: a deep copy of ``root`` with ``W + strength · scale · up @ down`` written into its weights."""
    out = copy.deepcopy(root)
    with torch.no_grad():
        for p in planned:
            weight = out.get_submodule(p.module).weight
            delta = p.up.flatten(1).double() @ p.down.flatten(1).double()
            weight += (strength * p.scale * delta).reshape(weight.shape).to(weight.dtype)
    return out


def diffusion_model(unet: torch.nn.Module, family: str = "sd1") -> DiffusionModel:
    return DiffusionModel(unet=unet, family=family, prediction_type="epsilon", model_sampling=ModelSampling())
