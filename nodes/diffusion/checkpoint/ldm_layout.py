"""Writing diffusers models back out as one original-layout (LDM/SGM) single-file checkpoint.

This is the inverse of the key conversion diffusers applies when loading a single file, written
from the layout itself rather than by inverting diffusers' code:

* UNet: ``down_blocks.b.resnets.j`` -> ``input_blocks.(1 + b*(L+1) + j).0`` with the resnet's
  sub-layers renamed (``norm1`` -> ``in_layers.0`` …), attentions -> ``….1``, downsamplers ->
  ``input_blocks.(1 + b*(L+1) + L).0.op``; the mid block -> ``middle_block.0/1/2``; up blocks ->
  ``output_blocks.(b*(L+1) + j)``, whose upsampler sits at index 2 after an attention, else 1;
  SDXL's ``add_embedding`` -> ``label_emb.0.0/0.2``.
* VAE: ``down_blocks``/``up_blocks`` -> ``down.i.block``/``up.i.block`` where the decoder's order is
  reversed (LDM counts up-levels from the lowest resolution), mid attention weights become 1x1
  convolutions (``q/k/v/proj_out`` with shape ``[out, in, 1, 1]``).
* CLIP-L keeps Hugging Face names under ``cond_stage_model.transformer.text_model.``;
  OpenCLIP (SD2's H, SDXL's bigG) packs q/k/v into ``attn.in_proj_weight`` and stores
  ``text_projection`` transposed. SD2 files carry one more OpenCLIP block than SD2 uses (it takes the
  penultimate layer); we write that block as zeros so the file has the real layout.

Used by tests and benchmarks to produce real single-file checkpoints, and usable to export models.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from graph_engine.serialization import file_mode_for, set_file_mode
from nodes import families
from nodes.families.ldm import UNET_PREFIX

StateDict = dict[str, torch.Tensor]
SD1_CLIP_PREFIX = families.get("sd1").text_encoders[0].prefix

_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_OPENCLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def _split(rest: str) -> tuple[str, str]:
    """'norm1.weight' -> ('norm1', 'weight'); 'to_out.0.bias' -> ('to_out.0', 'bias')."""
    module, _, param = rest.rpartition(".")
    return module, param


def _as_state_dict(model_or_sd: Any) -> StateDict:
    if isinstance(model_or_sd, Mapping):
        return dict(model_or_sd)
    return dict(model_or_sd.state_dict())


def _config(model_or_config: Any) -> Mapping[str, Any]:
    cfg = getattr(model_or_config, "config", model_or_config)
    return cfg  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# UNet
# --------------------------------------------------------------------------------------------


def unet_to_ldm(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> StateDict:
    """diffusers UNet2DConditionModel weights -> ``model.diffusion_model.*`` keys."""
    lpb = int(config["layers_per_block"])
    up_has_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    out: StateDict = {}
    for key, tensor in state_dict.items():
        out[UNET_PREFIX + _unet_key(key, lpb, up_has_attn)] = tensor
    return out


def _unet_key(key: str, lpb: int, up_has_attn: list[bool]) -> str:
    module, param = _split(key)
    if module in _UNET_FIXED:
        return f"{_UNET_FIXED[module]}.{param}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        block = 1 + b * (lpb + 1) + j
        return f"input_blocks.{block}.0.{_resnet_rest(rest)}" if kind == "resnets" else f"input_blocks.{block}.1.{rest}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{1 + int(m[1]) * (lpb + 1) + lpb}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet_rest(m[2])}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        block = b * (lpb + 1) + j
        if kind == "resnets":
            return f"output_blocks.{block}.0.{_resnet_rest(rest)}"
        return f"output_blocks.{block}.1.{rest}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        b = int(m[1])
        return f"output_blocks.{b * (lpb + 1) + lpb}.{2 if up_has_attn[b] else 1}.conv.{m[2]}"
    raise ValueError(f"UNet weight {key!r} has no place in the LDM layout")


def _resnet_rest(rest: str) -> str:
    module, param = _split(rest)
    if module not in _UNET_RESNET:
        raise ValueError(f"unexpected UNet resnet weight {rest!r}")
    return f"{_UNET_RESNET[module]}.{param}"


# --------------------------------------------------------------------------------------------
# VAE
# --------------------------------------------------------------------------------------------


def vae_to_ldm(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any], prefix: str = "first_stage_model."
) -> StateDict:
    """diffusers AutoencoderKL weights -> LDM VAE keys under ``prefix`` ("" for a standalone VAE file)."""
    n_up = len(config["up_block_types"])
    out: StateDict = {}
    for key, tensor in state_dict.items():
        new_key, conv = _vae_key(key, n_up)
        out[prefix + new_key] = tensor.reshape(*tensor.shape, 1, 1) if conv and tensor.ndim == 2 else tensor
    return out


def _vae_key(key: str, n_up: int) -> tuple[str, bool]:
    """New key, and whether a linear weight must become a 1x1 convolution."""
    if m := re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(.+)", key):
        return f"{m[1]}.norm_out.{m[2]}", False
    if re.fullmatch(r"(encoder|decoder)\.conv_(in|out)\..+|(post_)?quant_conv\..+", key):
        return key, False
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}", False
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}", False
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        level = n_up - 1 - int(m[1])
        return f"decoder.up.{level}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}", False
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        return f"decoder.up.{n_up - 1 - int(m[1])}.upsample.conv.{m[2]}", False
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}", False
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
        module, param = _split(m[2])
        if module not in _VAE_ATTN:
            raise ValueError(f"unexpected VAE attention weight {key!r}")
        return f"{m[1]}.mid.attn_1.{_VAE_ATTN[module]}.{param}", module != "group_norm" and param == "weight"
    raise ValueError(f"VAE weight {key!r} has no place in the LDM layout")


# --------------------------------------------------------------------------------------------
# Text encoders
# --------------------------------------------------------------------------------------------


def _strip_text_model(key: str) -> str:
    return key.removeprefix("text_model.")


def clip_to_ldm(state_dict: Mapping[str, torch.Tensor], prefix: str = SD1_CLIP_PREFIX) -> StateDict:
    """Hugging Face CLIPTextModel weights -> ``<prefix>`` + HF names (``prefix`` ends in ``text_model.``)."""
    return {prefix + _strip_text_model(k): v for k, v in state_dict.items() if "position_ids" not in k}


def openclip_to_ldm(state_dict: Mapping[str, torch.Tensor], prefix: str, *, extra_block: bool = False) -> StateDict:
    """HF CLIP text weights -> OpenCLIP names with packed q/k/v; ``extra_block`` adds SD2's unused last block."""
    sd = {_strip_text_model(k): v for k, v in state_dict.items() if "position_ids" not in k}
    out: StateDict = {}
    layers: set[int] = set()
    for key, tensor in sd.items():
        if key == "embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = tensor
        elif key == "embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = tensor
        elif key.startswith("final_layer_norm."):
            out[prefix + "ln_final." + key.split(".")[-1]] = tensor
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = tensor.T.contiguous()
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)", key):
            i, rest = int(m[1]), m[2]
            layers.add(i)
            if re.fullmatch(r"self_attn\.[qkv]_proj\.(weight|bias)", rest):
                continue  # packed below
            module, param = _split(rest)
            if module not in _OPENCLIP_LAYER:
                raise ValueError(f"unexpected CLIP weight {key!r}")
            out[prefix + f"transformer.resblocks.{i}.{_OPENCLIP_LAYER[module]}.{param}"] = tensor
        else:
            raise ValueError(f"CLIP weight {key!r} has no place in the OpenCLIP layout")
    for i in sorted(layers):
        for param in ("weight", "bias"):
            parts = [sd[f"encoder.layers.{i}.self_attn.{n}_proj.{param}"] for n in "qkv"]
            out[prefix + f"transformer.resblocks.{i}.attn.in_proj_{param}"] = torch.cat(parts, dim=0)
    if extra_block and layers:
        last, new = max(layers), max(layers) + 1
        for key in [k for k in out if k.startswith(prefix + f"transformer.resblocks.{last}.")]:
            new_key = key.replace(f"resblocks.{last}.", f"resblocks.{new}.", 1)
            out[new_key] = torch.zeros_like(out[key])
    return out


# --------------------------------------------------------------------------------------------
# Whole checkpoints
# --------------------------------------------------------------------------------------------


def checkpoint_to_ldm(
    family: str,
    *,
    unet: Any,
    vae: Any | None,
    text_encoders: Sequence[Any],
    unet_config: Mapping[str, Any] | None = None,
    vae_config: Mapping[str, Any] | None = None,
) -> StateDict:
    """Assemble one LDM state dict from diffusers/transformers models (or state dicts plus configs).

    ``text_encoders`` follows the diffusers pipeline order: [CLIP-L] for SD1/SD2 (OpenCLIP-H for SD2),
    [CLIP-L, OpenCLIP-bigG] for SDXL, [OpenCLIP-bigG] for the refiner.
    """
    out = unet_to_ldm(_as_state_dict(unet), unet_config or _config(unet))
    if vae is not None:
        out.update(vae_to_ldm(_as_state_dict(vae), vae_config or _config(vae)))
    tes = [_as_state_dict(t) for t in text_encoders]
    slots = families.get(family).text_encoders
    if len(tes) not in (0, len(slots)):
        raise ValueError(f"{family} takes {len(slots)} text encoders, got {len(tes)}")
    for slot, te in zip(slots, tes, strict=False):
        if slot.layout == "clip":
            out.update(clip_to_ldm(te, slot.prefix))
        elif slot.layout == "openclip":
            out.update(openclip_to_ldm(te, slot.prefix, extra_block=slot.drop_last_block))
        else:
            raise ValueError(f"{family}: writing {slot.role} ({slot.layout}) text encoders is not implemented")
    return out


def save_state_dict(
    path: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    *,
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write a safetensors file atomically (a crash never leaves a half-written model behind)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for key, tensor in state_dict.items():
        t = tensor.detach()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[key] = t.contiguous()
    mode = file_mode_for(path)  # mkstemp makes 0o600 files; a model file gets what a plain write would
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt", **(metadata or {})})
        set_file_mode(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_single_file(
    path: str | Path,
    family: str,
    *,
    unet: Any,
    vae: Any | None,
    text_encoders: Sequence[Any],
    dtype: torch.dtype | None = None,
    extra: Mapping[str, torch.Tensor] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write models as one original-layout checkpoint; ``extra`` adds raw keys (e.g. ``alphas_cumprod``)."""
    state = checkpoint_to_ldm(family, unet=unet, vae=vae, text_encoders=text_encoders)
    if extra:
        state.update(extra)
    return save_state_dict(path, state, dtype=dtype, metadata=metadata)
