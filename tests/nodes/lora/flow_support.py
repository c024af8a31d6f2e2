"""Random LoRAs for the tiny SD3, FLUX and Z-Image transformers, and diffusers as their oracle.

Two ways of writing a LoRA, both independent of sdgraph's key mapping:

* :func:`peft_lora` — peft injects seeded random adapters into a copy of the network and
  ``get_peft_model_state_dict`` names them; the file is diffusers' own layout (``transformer.<module>``).
* :func:`original_lora` — a LoRA on the *original* single-file modules (kohya ``lora_unet_…`` or
  ComfyUI/BFL ``diffusion_model.…``), one random pair per original module, and next to it the same
  update in diffusers keys, converted with the hand-written tables in this file (``FLUX_ORIGINAL`` …,
  written from the module tree as ``tests.support.tiny_flow`` writes checkpoints): a fused original
  layer's ``up`` rows are cut per diffusers layer, the AdaLN halves swapped, alpha/rank baked into ``down``.

The oracle loads the diffusers-key file with the pipeline's ``load_lora_weights`` (peft layers, scaled by
``set_adapters``) — or, for kohya files diffusers can convert itself, the kohya file directly.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from nodes.diffusion.model import DiffusionModel
from nodes.diffusion.sampling import ModelSampling
from tests.support import tiny_flow as tf

TOL = 1e-4


def flow_model(network: Any, family: str) -> DiffusionModel:
    """A MODEL handle on a tiny transformer (sampling is not used by these tests)."""
    return DiffusionModel(unet=network, family=family, prediction_type="flow", model_sampling=ModelSampling())


def output(model: DiffusionModel, inputs: Mapping[str, Any]) -> Tensor:
    """The transformer's output through the handle's patches (what its sampler sees)."""
    with model.active():
        return tf.forward(model.unet, inputs)


def linear_names(network: torch.nn.Module, skip: Sequence[str] = ()) -> list[str]:
    return [n for n, m in network.named_modules() if isinstance(m, torch.nn.Linear) and not any(s in n for s in skip)]


def peft_lora(network: torch.nn.Module, seed: int, *, rank: int = 4, targets: Sequence[str] | None = None) -> dict:
    """Seeded random peft adapters on ``targets`` (every Linear by default), as diffusers keys without prefix.
    ``init_lora_weights=False`` draws B at random too, so the update is not zero."""
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    names = list(targets) if targets is not None else linear_names(network)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        copy_ = inject_adapter_in_model(
            LoraConfig(r=rank, lora_alpha=rank, target_modules=names, init_lora_weights=False),
            copy.deepcopy(network),
        )
        state = get_peft_model_state_dict(copy_)
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def save(path: Path, tensors: Mapping[str, Tensor]) -> Path:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


# Original module → (diffusers modules it was split into, whether its two row halves are swapped).
Mapping_ = dict[str, tuple[list[str], bool]]


def flux_original(network: Any) -> Mapping_:
    """FLUX.1's original modules (``flux_to_original``'s names), each with its diffusers layers."""
    out: Mapping_ = {
        "img_in": (["x_embedder"], False),
        "txt_in": (["context_embedder"], False),
        "time_in.in_layer": (["time_text_embed.timestep_embedder.linear_1"], False),
        "vector_in.out_layer": (["time_text_embed.text_embedder.linear_2"], False),
        "final_layer.linear": (["proj_out"], False),
        "final_layer.adaLN_modulation.1": (["norm_out.linear"], True),
    }
    for i in range(len(network.transformer_blocks)):
        d, t = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        out[d + "img_attn.qkv"] = ([t + "attn.to_q", t + "attn.to_k", t + "attn.to_v"], False)
        out[d + "txt_attn.qkv"] = ([t + "attn.add_q_proj", t + "attn.add_k_proj", t + "attn.add_v_proj"], False)
        out[d + "img_attn.proj"] = ([t + "attn.to_out.0"], False)
        out[d + "txt_attn.proj"] = ([t + "attn.to_add_out"], False)
        out[d + "img_mlp.0"] = ([t + "ff.net.0.proj"], False)
        out[d + "txt_mlp.2"] = ([t + "ff_context.net.2"], False)
        out[d + "img_mod.lin"] = ([t + "norm1.linear"], False)
        out[d + "txt_mod.lin"] = ([t + "norm1_context.linear"], False)
    for i in range(len(network.single_transformer_blocks)):
        s, t = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        out[s + "linear1"] = ([t + "attn.to_q", t + "attn.to_k", t + "attn.to_v", t + "proj_mlp"], False)
        out[s + "linear2"] = ([t + "proj_out"], False)
        out[s + "modulation.lin"] = ([t + "norm.linear"], False)
    return out


def sd3_original(network: Any) -> Mapping_:
    """SD3.5's original MMDiT modules (``sd3_to_original``'s names), each with its diffusers layers."""
    out: Mapping_ = {
        "context_embedder": (["context_embedder"], False),
        "final_layer.adaLN_modulation.1": (["norm_out.linear"], True),
    }
    last = len(network.transformer_blocks) - 1
    for i, block in enumerate(network.transformer_blocks):
        x, c, t = f"joint_blocks.{i}.x_block.", f"joint_blocks.{i}.context_block.", f"transformer_blocks.{i}."
        out[x + "attn.qkv"] = ([t + "attn.to_q", t + "attn.to_k", t + "attn.to_v"], False)
        out[c + "attn.qkv"] = ([t + "attn.add_q_proj", t + "attn.add_k_proj", t + "attn.add_v_proj"], False)
        out[x + "attn.proj"] = ([t + "attn.to_out.0"], False)
        out[x + "mlp.fc1"] = ([t + "ff.net.0.proj"], False)
        out[x + "adaLN_modulation.1"] = ([t + "norm1.linear"], False)
        out[c + "adaLN_modulation.1"] = ([t + "norm1_context.linear"], i == last)  # the pre-only block's AdaLN
        if block.attn2 is not None:
            out[x + "attn2.qkv"] = ([t + "attn2.to_q", t + "attn2.to_k", t + "attn2.to_v"], False)
    return out


def z_image_original(network: Any) -> Mapping_:
    """Z-Image's original modules (``z_image_to_original``'s names), each with its diffusers layers."""
    out: Mapping_ = {}
    for group in ("noise_refiner", "context_refiner", "layers"):
        for i, block in enumerate(getattr(network, group)):
            b = f"{group}.{i}."
            out[b + "attention.qkv"] = ([b + "attention.to_q", b + "attention.to_k", b + "attention.to_v"], False)
            out[b + "attention.out"] = ([b + "attention.to_out.0"], False)
            out[b + "feed_forward.w1"] = ([b + "feed_forward.w1"], False)
            if block.modulation:
                out[b + "adaLN_modulation.0"] = ([b + "adaLN_modulation.0"], False)
    return out


@dataclass
class OriginalLora:
    """A LoRA written on original module names, and the same update in diffusers keys (the oracle's file)."""

    tensors: dict[str, Tensor]
    diffusers: dict[str, Tensor]


def original_lora(
    network: torch.nn.Module, table: Mapping_, seed: int, *, style: str, rank: int = 4, alpha: float = 2.0
) -> OriginalLora:
    """``style``: ``"kohya"`` (``lora_unet_<module with _>.lora_down/up`` + ``.alpha``) or ``"comfy"``
    (``diffusion_model.<module>.lora_down/up`` + ``.alpha``)."""
    gen = torch.Generator().manual_seed(seed)
    tensors: dict[str, Tensor] = {}
    diffusers: dict[str, Tensor] = {}
    for original, (targets, swap) in table.items():
        layers = [network.get_submodule(t) for t in targets]
        rows = [int(m.weight.shape[0]) for m in layers]
        fan_in = int(layers[0].weight.shape[1])
        down = torch.randn(rank, fan_in, generator=gen) / fan_in**0.5
        up = torch.randn(sum(rows), rank, generator=gen) / rank**0.5
        base = f"lora_unet_{original.replace('.', '_')}" if style == "kohya" else f"diffusion_model.{original}"
        tensors |= {f"{base}.lora_down.weight": down, f"{base}.lora_up.weight": up}
        tensors[f"{base}.alpha"] = torch.tensor(alpha)
        diffusers_up = torch.cat([up[up.shape[0] // 2 :], up[: up.shape[0] // 2]]) if swap else up
        start = 0
        for target, n in zip(targets, rows, strict=True):
            diffusers[f"transformer.{target}.lora_A.weight"] = down * (alpha / rank)
            diffusers[f"transformer.{target}.lora_B.weight"] = diffusers_up[start : start + n].clone()
            start += n
    return OriginalLora(tensors, diffusers)


def pipeline(family: str, network: Any) -> Any:
    """A diffusers pipeline around a *copy* of ``network`` (peft rewrites the modules it loads into)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, StableDiffusion3Pipeline, ZImagePipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    net = copy.deepcopy(network)
    scheduler = FlowMatchEulerDiscreteScheduler()
    none: dict[str, Any] = {"vae": None, "text_encoder": None, "tokenizer": None}
    if family == "flux":
        return FluxPipeline(scheduler=scheduler, transformer=net, text_encoder_2=None, tokenizer_2=None, **none)
    if family == "sd3":
        more = {"text_encoder_2": None, "tokenizer_2": None, "text_encoder_3": None, "tokenizer_3": None}
        return StableDiffusion3Pipeline(scheduler=scheduler, transformer=net, **more, **none)
    return ZImagePipeline(scheduler=scheduler, transformer=net, **none)


def reference(pipe: Any, path: Path | Sequence[Path], strengths: Sequence[float], inputs: Mapping[str, Any]) -> Tensor:
    """The pipeline's transformer output with the LoRA file(s) loaded at these adapter weights."""
    paths = [path] if isinstance(path, Path) else list(path)
    names = [f"l{i}" for i in range(len(paths))]
    for name, p in zip(names, paths, strict=True):
        if name not in pipe.get_list_adapters().get("transformer", []):
            pipe.load_lora_weights(str(p), adapter_name=name)
    pipe.set_adapters(names, list(strengths))
    return tf.forward(pipe.transformer, inputs)


def max_diff(a: Tensor, b: Tensor) -> float:
    assert a.shape == b.shape
    return float((a.detach() - b.detach()).abs().max())
