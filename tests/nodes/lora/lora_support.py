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

from nodes.diffusion.conditioning import CondEntry
from nodes.diffusion.model import DiffusionModel
from nodes.diffusion.sampling import ModelSampling


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


PROMPT = "a watercolor fox in the snow"
TOL = 1e-5

# (file key base, the diffusers module it must patch) — the mapping is written out by hand on purpose.
KOHYA_DIFFUSERS_NAMES = [
    (
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
    ),
    (
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
    ),
    ("lora_unet_down_blocks_0_resnets_1_conv1", "down_blocks.0.resnets.1.conv1"),  # 3×3 conv
    ("lora_unet_mid_block_attentions_0_proj_in", "mid_block.attentions.0.proj_in"),  # SD1: 1×1 conv
    (
        "lora_unet_up_blocks_1_attentions_2_transformer_blocks_0_attn2_to_out_0",
        "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_out.0",
    ),
]
KOHYA_LDM_NAMES = [
    (
        "lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_out_0",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0",
    ),
    ("lora_unet_input_blocks_2_0_out_layers_3", "down_blocks.0.resnets.1.conv2"),
    ("lora_unet_input_blocks_3_0_op", "down_blocks.0.downsamplers.0.conv"),  # stride-2 conv
    ("lora_unet_middle_block_2_in_layers_2", "mid_block.resnets.1.conv1"),
    (
        "lora_unet_output_blocks_3_1_transformer_blocks_0_ff_net_2",
        "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2",
    ),
    ("lora_unet_output_blocks_5_1_proj_out", "up_blocks.1.attentions.2.proj_out"),
    ("lora_unet_time_embed_0", "time_embedding.linear_1"),
]
KOHYA_TE = [
    ("lora_te_text_model_encoder_layers_0_self_attn_q_proj", "encoder.layers.0.self_attn.q_proj"),
    ("lora_te_text_model_encoder_layers_1_self_attn_out_proj", "encoder.layers.1.self_attn.out_proj"),
    ("lora_te_text_model_encoder_layers_1_mlp_fc1", "encoder.layers.1.mlp.fc1"),
]


def unet_out(model: DiffusionModel) -> Tensor:
    """One prediction through the MODEL handle's own entry point (which hooks its patches in)."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 8, 8, generator=gen)
    ctx = torch.randn(1, 5, 32, generator=gen)
    with model.active():
        return model.predict(x, torch.tensor([10.0, 700.0]), [CondEntry(ctx)], (64, 64))


def max_diff(a: Tensor, b: Tensor) -> float:
    assert a.shape == b.shape
    return float((a.detach() - b.detach()).abs().max())
