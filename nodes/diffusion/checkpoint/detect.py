"""Deciding what a checkpoint is from tensor names and shapes alone.

A single-file checkpoint carries no config: only weights named in its original layout. Which family
it is comes from walking the registry (``nodes.families``): the first family whose key test matches
names it, and a family sdgraph recognises but cannot run gets a message naming it. For the Stable
Diffusion families (``model.diffusion_model.*`` for the UNet, ``first_stage_model.*`` for the VAE,
``cond_stage_model.*`` or ``conditioner.embedders.N.*`` for the text encoders; inpainting when the UNet
takes 9 input channels) the family follows from which text-encoder layout is present, and each
family's module declares the prefixes and the facts shapes cannot tell. The architecture itself
(channels per level, resnets per level, transformer depth per level, cross-attention width, VAE and
CLIP sizes, SDXL's size-conditioning embedding) follows from the shapes, so pruned, distilled or tiny
models build the right modules instead of failing against a hard-coded full-size config.

What shapes cannot tell comes from the public config of the family (``resources/sd_configs``):
activations, norm groups, the VAE scaling factor, and the attention head count (a fused projection
has the same shape for any number of heads; SD1 uses 8 heads, SD2/SDXL/CLIP use 64-channel heads).
SD2 checkpoints do not record whether they predict noise or velocity; we use the statistic ComfyUI
uses (the spread of one LayerNorm bias of the last output block, > 0.09 for v-prediction) and let a
sidecar ``<file>.sdgraph.json`` or an argument override it.

Only the safetensors header is read, except for that one small bias tensor for SD2.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodes import families
from nodes.diffusion.checkpoint.files import is_pickle_file, read_shapes
from nodes.diffusion.errors import ConfigOverrideError, ModelError, UnknownArchitectureError, UnsupportedFamilyError
from nodes.families import ModelFamily
from nodes.families.ldm import UNET_PREFIX, VAE_PREFIX
from nodes.shipped import resource_path

if TYPE_CHECKING:
    import torch

Shapes = Mapping[str, tuple[int, ...]]
TensorReader = Callable[[str], "torch.Tensor"]

PREDICTION_TYPES = ("epsilon", "v_prediction")
CONFIG_ROOT = resource_path("sd_configs")

VAE_PREFIXES = (VAE_PREFIX, "vae.", "")

# ComfyUI's SD2 v-prediction statistic, see the module docstring.
SD2_V_STD_THRESHOLD = 0.09
SIDECAR_SUFFIX = ".sdgraph.json"
_OVERRIDE_KEYS = {
    "prediction_type",
    "scaling_factor",
    "unet",
    "vae",
    "text_encoder",
    "text_encoder_2",
    "scheduler",
}


@dataclass
class TextEncoderSpec:
    """One text encoder: where its weights live in the file, its layout, and its transformers config."""

    name: str  # "text_encoder" or "text_encoder_2", the diffusers component name
    prefix: str
    layout: str  # "clip" (OpenAI CLIP-L, HF key names) or "openclip" (packed in_proj q/k/v)
    with_projection: bool
    config: dict[str, Any]


@dataclass
class DetectedModel:
    """Everything needed to build the models of one checkpoint, decided before any weight is read."""

    path: Path
    family: str
    inpainting: bool
    in_channels: int
    prediction_type: str
    prediction_source: str  # "default", "heuristic", "marker", "sidecar", "argument", "config"
    unet_config: dict[str, Any]
    vae_config: dict[str, Any] | None
    vae_prefix: str | None
    text_encoders: list[TextEncoderSpec]
    scheduler_config: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def latent_channels(self) -> int:
        return int(self.unet_config["out_channels"])


# --------------------------------------------------------------------------------------------
# Shipped configs and overrides
# --------------------------------------------------------------------------------------------


@cache
def _read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def base_config(family: str, component: str) -> dict[str, Any]:
    """A fresh copy of the shipped public config for one component of one family."""
    name = "scheduler_config.json" if component == "scheduler" else "config.json"
    folder = families.get(family).config_dir if family in families.names(only_supported=False) else None
    path = CONFIG_ROOT / (folder or family) / component / name
    if not path.is_file():
        raise ModelError(f"Missing shipped config {path}; the sdgraph installation is incomplete.")
    return copy.deepcopy(_read_json(path))


def sidecar_path(path: str | Path) -> Path:
    return Path(str(path) + SIDECAR_SUFFIX)


def read_overrides(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge the sidecar next to the model with the caller's overrides (the caller wins).

    The sidecar exists because some facts are not in the weights (SD2 v vs eps, a fine-tune's
    scaling factor); users fix them once per file instead of per workflow.
    """
    merged: dict[str, Any] = {}
    side = sidecar_path(path)
    if side.is_file():
        try:
            data = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigOverrideError(str(side), f"not readable JSON ({exc})") from exc
        _validate_overrides(data, str(side))
        merged.update({k: (v, "sidecar") for k, v in data.items()})
    if overrides:
        _validate_overrides(overrides, "the overrides argument")
        merged.update({k: (v, "argument") for k, v in overrides.items()})
    return merged


def _validate_overrides(data: Any, source: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigOverrideError(source, "expected a JSON object")
    unknown = set(data) - _OVERRIDE_KEYS
    if unknown:
        raise ConfigOverrideError(source, f"unknown keys {sorted(unknown)}; allowed are {sorted(_OVERRIDE_KEYS)}")
    pt = data.get("prediction_type")
    if pt is not None and pt not in PREDICTION_TYPES:
        raise ConfigOverrideError(source, f"prediction_type must be one of {PREDICTION_TYPES}, not {pt!r}")
    for key in ("unet", "vae", "text_encoder", "text_encoder_2", "scheduler"):
        if key in data and not isinstance(data[key], Mapping):
            raise ConfigOverrideError(source, f"{key!r} must be an object of config fields")


# --------------------------------------------------------------------------------------------
# Shape helpers
# --------------------------------------------------------------------------------------------


class _KeyIndex:
    """Fast 'how many numbered children under this prefix' queries over a flat key list."""

    def __init__(self, shapes: Shapes) -> None:
        self.shapes = shapes

    def has(self, key: str) -> bool:
        return key in self.shapes

    def shape(self, key: str) -> tuple[int, ...]:
        return self.shapes[key]

    def indices(self, prefix: str) -> list[int]:
        """Sorted distinct integers N in keys of the form ``prefix + "N." + ...``."""
        found: set[int] = set()
        n = len(prefix)
        for key in self.shapes:
            if key.startswith(prefix):
                head, _, _ = key[n:].partition(".")
                if head.isdigit():
                    found.add(int(head))
        return sorted(found)

    def count(self, prefix: str) -> int:
        return len(self.indices(prefix))

    def any_prefix(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in self.shapes)


def _heads_for_width(width: int) -> int | None:
    """64-channel heads, the convention of SD2/SDXL UNets and every CLIP text tower; None if impossible."""
    if width < 64:
        return 1
    return width // 64 if width % 64 == 0 else None


# --------------------------------------------------------------------------------------------
# Family
# --------------------------------------------------------------------------------------------


def detect_family(shapes: Shapes, path: str | Path = "?") -> str:
    """Walk the family registry: the first family whose files' key test matches; for a UNet-only
    file, the family whose full-size UNet has this conditioning width. Families sdgraph recognises
    but cannot run raise a message naming them."""
    family = families.recognise_single_file(shapes)
    if family is not None and (not family.supported or family.denoiser_loader) and _is_lora(shapes):
        family = None  # a LoRA for a transformer family (its keys name the same blocks): say it is a LoRA
    if family is None:
        idx = _KeyIndex(shapes)
        if not idx.has(UNET_PREFIX + "input_blocks.0.0.weight"):
            raise UnknownArchitectureError(path, _describe_non_checkpoint(shapes))
        # No text encoder in the file: the UNet alone still tells the family.
        context = _cross_attention_dim(idx)
        has_label_emb = idx.has(UNET_PREFIX + "label_emb.0.0.weight")
        family = families.recognise_unet_signature(context, has_label_emb)
        if family is None:
            raise UnknownArchitectureError(
                path,
                f"a UNet with cross-attention width {context} and "
                f"{'an' if has_label_emb else 'no'} SDXL size embedding, but no text encoder to tell its family",
            )
    if not family.supported:
        raise UnsupportedFamilyError(path, family.name, family.display_name, family.description)
    if family.denoiser_loader is not None:
        # A transformer family: nodes.diffusion.loading routes these to nodes.diffusion.dit before here.
        raise UnknownArchitectureError(
            path, f"it is {family.description}, which this UNet checkpoint reader does not build"
        )
    return family.name


def _describe_non_checkpoint(shapes: Shapes) -> str:
    keys = list(shapes)
    if not keys:
        return "the file contains no tensors"
    if find_vae_prefix(shapes) is not None and not any("diffusion_model" in k for k in keys):
        return "it contains only VAE weights (load it with a VAE loader instead)"
    if _is_lora(shapes):
        return "it is a LoRA, not a checkpoint (use a LoRA loader)"
    if any(k.startswith("down_blocks.") for k in keys) and any(k.startswith("conv_in.") for k in keys):
        return "it holds diffusers-format UNet weights only; point the loader at the whole diffusers folder"
    tops = sorted({k.split(".")[0] for k in keys})
    return f"no UNet weights under {UNET_PREFIX!r}; top-level names are {tops[:8]}"


def _is_lora(shapes: Shapes) -> bool:
    """kohya (``lora_unet_*``), PEFT (``*.lora_A.*``) and XLabs (``*.proj_lora1.*``) LoRA names."""
    return any(k.startswith(("lora_unet_", "lora_te", "lora_")) or "lora" in k.lower() for k in shapes)


def _cross_attention_dim(idx: _KeyIndex, prefix: str = UNET_PREFIX) -> int | None:
    for key, shape in idx.shapes.items():
        if key.startswith(prefix) and key.endswith(".attn2.to_k.weight"):
            return shape[1]
    return None


# --------------------------------------------------------------------------------------------
# UNet
# --------------------------------------------------------------------------------------------


def derive_unet_config(
    shapes: Shapes,
    family: str,
    path: str | Path = "?",
    *,
    pooled_dim: int | None = None,
    prefix: str = UNET_PREFIX,
    encoder_only: bool = False,
) -> dict[str, Any]:
    """Rebuild the diffusers UNet config from the LDM UNet's shapes (see module docstring).

    ``encoder_only``: the weights hold only the input blocks and the middle block, as a ControlNet's
    copy of the UNet does (under ``prefix``); the output side is then neither read nor required."""
    idx = _KeyIndex(shapes)
    p = prefix
    cfg = base_config(family, "unet")
    spec = _ldm_unet(family)

    def unsupported(what: str) -> UnknownArchitectureError:
        return UnknownArchitectureError(path, f"a {family} UNet with {what}")

    conv_in = idx.shape(p + "input_blocks.0.0.weight")
    cfg["in_channels"] = conv_in[1]
    if not encoder_only:
        if not idx.has(p + "out.2.weight"):
            raise unsupported("no output convolution (out.2)")
        cfg["out_channels"] = idx.shape(p + "out.2.weight")[0]

    # Input blocks 1..N: resnets of one level, then a downsampler block ("…N.0.op") closing it.
    levels: list[list[int]] = [[]]
    for i in idx.indices(p + "input_blocks."):
        if i == 0:
            continue
        if idx.has(p + f"input_blocks.{i}.0.op.weight"):
            levels.append([])
        else:
            levels[-1].append(i)
    if any(not lvl for lvl in levels):
        raise unsupported("a resolution level without resnet blocks")
    per_level = {len(lvl) for lvl in levels}
    if len(per_level) != 1:
        raise unsupported(f"a different number of resnets per level ({[len(lv) for lv in levels]})")
    layers_per_block = per_level.pop()

    channels: list[int] = []
    depths: list[int] = []
    has_attn: list[bool] = []
    linear_proj: set[bool] = set()
    for lvl in levels:
        channels.append(idx.shape(p + f"input_blocks.{lvl[0]}.0.out_layers.3.weight")[0])
        level_depths = set()
        for i in lvl:
            a = p + f"input_blocks.{i}.1."
            if idx.has(a + "proj_in.weight"):
                level_depths.add(idx.count(a + "transformer_blocks."))
                linear_proj.add(len(idx.shape(a + "proj_in.weight")) == 2)
            else:
                level_depths.add(0)
        if len(level_depths) != 1:
            raise unsupported(f"mixed transformer depths within one level ({sorted(level_depths)})")
        depth = level_depths.pop()
        depths.append(depth)
        has_attn.append(depth > 0)

    # Middle block: resnet, transformer, resnet.
    mid_attn = p + "middle_block.1."
    if idx.has(mid_attn + "proj_in.weight"):
        mid_depth = idx.count(mid_attn + "transformer_blocks.")
        linear_proj.add(len(idx.shape(mid_attn + "proj_in.weight")) == 2)
    else:
        raise unsupported("a middle block without attention")
    if has_attn[-1] and depths[-1] != mid_depth:
        raise unsupported(f"middle-block depth {mid_depth} differing from the last level's {depths[-1]}")
    if len(linear_proj) > 1:
        raise unsupported("both linear and 1x1-conv attention projections")

    # Levels without attention still need a number: diffusers sizes the mid block from the last entry.
    last = len(depths) - 1
    transformer_layers = [d if d else (mid_depth if i == last else 1) for i, d in enumerate(depths)]
    if not encoder_only:
        # Output blocks mirror the input levels, each level one resnet longer.
        n_out = len(idx.indices(p + "output_blocks."))
        if n_out != len(levels) * (layers_per_block + 1):
            raise unsupported(f"{n_out} output blocks for {len(levels)} levels of {layers_per_block} resnets")
        up_depths: list[list[int]] = []
        for b in range(len(levels)):
            row = []
            for j in range(layers_per_block + 1):
                a = p + f"output_blocks.{b * (layers_per_block + 1) + j}.1."
                row.append(idx.count(a + "transformer_blocks.") if idx.has(a + "proj_in.weight") else 0)
            up_depths.append(row)
        if [d > 0 for d in (row[0] for row in up_depths)] != list(reversed(has_attn)):
            raise unsupported("output levels whose attention does not mirror the input levels")

        if [row for row in up_depths] != [
            [transformer_layers[-1 - b] if has_attn[-1 - b] else 0] * (layers_per_block + 1) for b in range(len(levels))
        ]:
            cfg["reverse_transformer_layers_per_block"] = [[d if d else 1 for d in row] for row in up_depths]

    cfg["block_out_channels"] = channels
    cfg["layers_per_block"] = layers_per_block
    cfg["down_block_types"] = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in has_attn]
    cfg["up_block_types"] = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(has_attn)]
    cfg["mid_block_type"] = "UNetMidBlock2DCrossAttn"
    # One depth everywhere attention exists collapses to an int, as in the public configs.
    used_depths = {d for d in depths if d} | {mid_depth}
    cfg["transformer_layers_per_block"] = used_depths.pop() if len(used_depths) == 1 else transformer_layers
    cfg["use_linear_projection"] = linear_proj.pop() if linear_proj else cfg["use_linear_projection"]
    context = _cross_attention_dim(idx, p)
    if context is None:
        raise unsupported("no cross-attention layers")
    cfg["cross_attention_dim"] = context

    groups = int(cfg["norm_num_groups"])
    if any(c % groups for c in channels):
        raise unsupported(f"channels {channels} not divisible into {groups} norm groups")
    cfg["attention_head_dim"] = _unet_heads(spec.heads, channels, cfg["attention_head_dim"], path)

    time_dim = idx.shape(p + "time_embed.0.weight")[0]
    cfg["time_embedding_dim"] = None if time_dim == channels[0] * 4 else time_dim

    if idx.has(p + "label_emb.0.0.weight"):
        proj_in = idx.shape(p + "label_emb.0.0.weight")[1]
        cfg["addition_embed_type"] = "text_time"
        cfg["projection_class_embeddings_input_dim"] = proj_in
        n_ids = spec.time_ids
        if n_ids is None:
            raise unsupported("an SDXL-style size embedding (label_emb)")
        if pooled_dim is not None:
            if (proj_in - pooled_dim) % n_ids or proj_in <= pooled_dim:
                raise unsupported(
                    f"a size embedding of {proj_in} inputs that does not fit {pooled_dim} pooled text "
                    f"features + {n_ids} size ids"
                )
            cfg["addition_time_embed_dim"] = (proj_in - pooled_dim) // n_ids
    elif spec.time_ids is not None:
        raise unsupported("no size embedding (label_emb), which SDXL models need")
    return cfg


def _latent(family: ModelFamily) -> families.LatentFormat:
    if family.latent is None:
        raise ModelError(f"{family.display_name} declares no latent format")
    return family.latent


def _ldm_unet(family: str) -> families.base.LdmUnet:
    spec = families.get(family).ldm_unet
    if spec is None:
        raise ModelError(f"{family} is not a family with an original-layout UNet")
    return spec


def _unet_heads(rule: str, channels: list[int], default: Any, path: str | Path) -> Any:
    if rule == "config" and isinstance(default, int) and all(c % default == 0 for c in channels):
        return default  # SD1 uses 8 heads at every level regardless of width
    heads = [_heads_for_width(c) for c in channels]
    if any(h is None for h in heads):
        raise UnknownArchitectureError(
            path,
            f"UNet channels {channels} that cannot be split into 64-channel attention heads; "
            'set "unet": {"attention_head_dim": [...]} in the sidecar file',
        )
    return heads


# --------------------------------------------------------------------------------------------
# VAE
# --------------------------------------------------------------------------------------------


def find_vae_prefix(shapes: Shapes) -> str | None:
    for prefix in VAE_PREFIXES:
        if prefix + "encoder.conv_in.weight" in shapes or prefix + "decoder.conv_in.weight" in shapes:
            return prefix
    return None


def derive_vae_config(shapes: Shapes, family: str, prefix: str, path: str | Path = "?") -> dict[str, Any]:
    """Rebuild the AutoencoderKL config from LDM VAE shapes under ``prefix``."""
    idx = _KeyIndex(shapes)
    p = prefix
    cfg = base_config(family, "vae")
    required = [p + "encoder.conv_in.weight", p + "decoder.conv_in.weight", p + "decoder.conv_out.weight"]
    missing = [k for k in required if not idx.has(k)]
    if missing:
        raise UnknownArchitectureError(path, f"an incomplete VAE (missing {missing})")
    levels = idx.indices(p + "encoder.down.")
    if not levels:
        raise UnknownArchitectureError(path, "a VAE encoder without down blocks")
    channels = [idx.shape(p + f"encoder.down.{i}.block.0.conv2.weight")[0] for i in levels]
    layers = idx.count(p + "encoder.down.0.block.")
    dec_layers = idx.count(p + "decoder.up.0.block.")
    if dec_layers != layers + 1:
        raise UnknownArchitectureError(
            path, f"a VAE with {layers} encoder but {dec_layers} decoder resnets per level (expected +1)"
        )
    cfg["in_channels"] = idx.shape(p + "encoder.conv_in.weight")[1]
    cfg["out_channels"] = idx.shape(p + "decoder.conv_out.weight")[0]
    cfg["latent_channels"] = idx.shape(p + "decoder.conv_in.weight")[1]
    cfg["block_out_channels"] = channels
    cfg["layers_per_block"] = layers
    cfg["down_block_types"] = ["DownEncoderBlock2D"] * len(channels)
    cfg["up_block_types"] = ["UpDecoderBlock2D"] * len(channels)
    cfg["mid_block_add_attention"] = idx.has(p + "encoder.mid.attn_1.q.weight")
    cfg["use_quant_conv"] = idx.has(p + "quant_conv.weight")
    cfg["use_post_quant_conv"] = idx.has(p + "post_quant_conv.weight")
    cfg["scaling_factor"] = _latent(families.get(family)).scaling_factor
    groups = int(cfg["norm_num_groups"])
    if any(c % groups for c in channels):
        raise UnknownArchitectureError(path, f"VAE channels {channels} not divisible into {groups} norm groups")
    return cfg


# --------------------------------------------------------------------------------------------
# Text encoders
# --------------------------------------------------------------------------------------------


def derive_text_encoders(shapes: Shapes, family: str, path: str | Path = "?") -> list[TextEncoderSpec]:
    """The text encoders the family needs that are present in the file (missing ones are left out)."""
    idx = _KeyIndex(shapes)
    specs: list[TextEncoderSpec] = []
    for slot in families.get(family).text_encoders:
        if slot.layout == "clip" and idx.has(slot.prefix + "embeddings.token_embedding.weight"):
            specs.append(_clip_spec(idx, family, slot.component, slot.prefix, path))
        elif slot.layout == "openclip" and idx.has(slot.prefix + "token_embedding.weight"):
            specs.append(
                _openclip_spec(
                    idx,
                    family,
                    slot.component,
                    slot.prefix,
                    path,
                    drop_last=slot.drop_last_block,
                    with_projection=slot.transformers_class == "CLIPTextModelWithProjection",
                )
            )
    return specs


def expected_text_encoders(family: str) -> list[str]:
    return families.get(family).text_encoder_names()


def _clip_common(cfg: dict[str, Any], vocab: int, width: int, positions: int, layers: int, inner: int) -> None:
    heads = _heads_for_width(width)
    if heads is None:
        raise ValueError(width)
    cfg.update(
        vocab_size=vocab,
        hidden_size=width,
        max_position_embeddings=positions,
        num_hidden_layers=layers,
        intermediate_size=inner,
        num_attention_heads=heads,
    )


def _clip_spec(idx: _KeyIndex, family: str, name: str, prefix: str, path: str | Path) -> TextEncoderSpec:
    cfg = base_config(family, name)
    vocab, width = idx.shape(prefix + "embeddings.token_embedding.weight")
    positions = idx.shape(prefix + "embeddings.position_embedding.weight")[0]
    layers = idx.count(prefix + "encoder.layers.")
    inner = idx.shape(prefix + "encoder.layers.0.mlp.fc1.weight")[0]
    try:
        _clip_common(cfg, vocab, width, positions, layers, inner)
    except ValueError:
        raise UnknownArchitectureError(path, f"a CLIP text encoder {width} wide (not 64-channel heads)") from None
    cfg["architectures"] = ["CLIPTextModel"]
    cfg["projection_dim"] = width
    return TextEncoderSpec(name=name, prefix=prefix, layout="clip", with_projection=False, config=cfg)


def _openclip_spec(
    idx: _KeyIndex,
    family: str,
    name: str,
    prefix: str,
    path: str | Path,
    *,
    drop_last: bool = False,
    with_projection: bool = False,
) -> TextEncoderSpec:
    cfg = base_config(family, name)
    vocab, width = idx.shape(prefix + "token_embedding.weight")
    positions = idx.shape(prefix + "positional_embedding")[0]
    layers = idx.count(prefix + "transformer.resblocks.") - (1 if drop_last else 0)
    if layers < 1:
        raise UnknownArchitectureError(path, f"an OpenCLIP text encoder under {prefix!r} with too few blocks")
    inner = idx.shape(prefix + "transformer.resblocks.0.mlp.c_fc.weight")[0]
    try:
        _clip_common(cfg, vocab, width, positions, layers, inner)
    except ValueError:
        raise UnknownArchitectureError(path, f"an OpenCLIP text encoder {width} wide (not 64-channel heads)") from None
    if with_projection:
        if not idx.has(prefix + "text_projection"):
            raise UnknownArchitectureError(path, f"an OpenCLIP-G text encoder without text_projection ({prefix})")
        cfg["projection_dim"] = idx.shape(prefix + "text_projection")[1]
        cfg["architectures"] = ["CLIPTextModelWithProjection"]
    return TextEncoderSpec(name=name, prefix=prefix, layout="openclip", with_projection=with_projection, config=cfg)


# --------------------------------------------------------------------------------------------
# Prediction type
# --------------------------------------------------------------------------------------------


def sd2_v_statistic_key(shapes: Shapes) -> str | None:
    """The LayerNorm bias ComfyUI measures: first transformer block of the last output block."""
    idx = _KeyIndex(shapes)
    outs = idx.indices(UNET_PREFIX + "output_blocks.")
    if not outs:
        return None
    key = UNET_PREFIX + f"output_blocks.{outs[-1]}.1.transformer_blocks.0.norm1.bias"
    return key if key in shapes else None


def _detect_prediction(
    shapes: Shapes, family: str, inpainting: bool, read_tensor: TensorReader | None
) -> tuple[str, str, list[str]]:
    notes: list[str] = []
    if any(k in shapes for k in ("v_pred", "edm_vpred.sigma_max")):
        return "v_prediction", "marker", notes
    sampling = families.get(family).sampling
    if sampling is None:
        raise ModelError(f"{family} declares no model sampling")
    if not sampling.measured:
        return sampling.prediction, "default", notes
    if inpainting:  # SD2's inpainting model predicts noise; only its text-to-image models vary
        return "epsilon", "default", notes
    key = sd2_v_statistic_key(shapes)
    if key is None or read_tensor is None:
        notes.append(f"SD2 prediction type could not be measured; assuming {sampling.prediction} (SD2.x 768)")
        return sampling.prediction, "default", notes
    bias = read_tensor(key).float()
    std = float(bias.std(unbiased=False))
    notes.append(f"SD2 v-prediction statistic std={std:.4f} (threshold {SD2_V_STD_THRESHOLD})")
    return ("v_prediction" if std > SD2_V_STD_THRESHOLD else "epsilon"), "heuristic", notes


# --------------------------------------------------------------------------------------------
# Whole checkpoints
# --------------------------------------------------------------------------------------------


def detect_from_shapes(
    shapes: Shapes,
    path: str | Path = "?",
    *,
    read_tensor: TensorReader | None = None,
    overrides: Mapping[str, tuple[Any, str]] | None = None,
) -> DetectedModel:
    """Detect family, prediction type and all component configs from a single file's shape map.

    ``overrides`` is the merged form returned by ``read_overrides`` (value, source) per key. The
    family found in the registry names the function that derives its architecture.
    """
    family = families.get(detect_family(shapes, path))
    if family.detector is None:
        raise UnsupportedFamilyError(path, family.name, family.display_name, family.description)
    detect: Callable[..., DetectedModel] = family.resolve(family.detector)
    return detect(shapes, family, path, read_tensor=read_tensor, overrides=overrides)


def detect_ldm_checkpoint(
    shapes: Shapes,
    spec: ModelFamily,
    path: str | Path = "?",
    *,
    read_tensor: TensorReader | None = None,
    overrides: Mapping[str, tuple[Any, str]] | None = None,
) -> DetectedModel:
    """The Stable Diffusion families' detector: every component config from the LDM layout's shapes."""
    path = Path(path)
    overrides = overrides or {}
    family = spec.name
    text_encoders = derive_text_encoders(shapes, family, path)
    pooled = next((t.config["projection_dim"] for t in text_encoders if t.with_projection), None)
    unet_cfg = derive_unet_config(shapes, family, path, pooled_dim=pooled)
    in_channels = int(unet_cfg["in_channels"])
    inpainting = in_channels == 9

    if len(spec.text_encoders) > 1:  # features concatenated; checkable only when all are present
        widths = [t.config["hidden_size"] for t in text_encoders]
        if len(widths) == len(spec.text_encoders) and sum(widths) != unet_cfg["cross_attention_dim"]:
            raise UnknownArchitectureError(
                path,
                f"{spec.display_name} text encoders {widths} wide feeding a UNet expecting "
                f"{unet_cfg['cross_attention_dim']}",
            )
    elif text_encoders and text_encoders[0].config["hidden_size"] != unet_cfg["cross_attention_dim"]:
        raise UnknownArchitectureError(
            path,
            f"a {text_encoders[0].config['hidden_size']}-wide text encoder feeding a UNet expecting "
            f"{unet_cfg['cross_attention_dim']}",
        )

    vae_prefix = VAE_PREFIX if VAE_PREFIX + "encoder.conv_in.weight" in shapes else None
    if vae_prefix is None and VAE_PREFIX + "decoder.conv_in.weight" in shapes:
        vae_prefix = VAE_PREFIX
    vae_cfg = derive_vae_config(shapes, family, vae_prefix, path) if vae_prefix else None

    prediction, source, notes = _detect_prediction(shapes, family, inpainting, read_tensor)
    if "prediction_type" in overrides:
        prediction, source = overrides["prediction_type"]
    scheduler = base_config(family, "scheduler")
    scheduler["prediction_type"] = prediction
    if "ztsnr" in shapes:
        scheduler["rescale_betas_zero_snr"] = True
    if _ldm_unet(family).upcast_attention_for_v:
        # SD2.1-768 (v) runs attention in fp32 to avoid fp16 overflow; the 512 eps "base" model does not.
        unet_cfg["upcast_attention"] = prediction == "v_prediction"

    detected = DetectedModel(
        path=path,
        family=family,
        inpainting=inpainting,
        in_channels=in_channels,
        prediction_type=prediction,
        prediction_source=source,
        unet_config=unet_cfg,
        vae_config=vae_cfg,
        vae_prefix=vae_prefix,
        text_encoders=text_encoders,
        scheduler_config=scheduler,
        notes=notes,
    )
    apply_config_overrides(detected, overrides)
    return detected


def apply_config_overrides(detected: DetectedModel, overrides: Mapping[str, tuple[Any, str]]) -> None:
    """Apply per-component config overrides; the prediction type was already taken into account."""
    for key, (value, _source) in overrides.items():
        if key == "unet":
            detected.unet_config.update(value)
        elif key == "vae" and detected.vae_config is not None:
            detected.vae_config.update(value)
        elif key == "scaling_factor" and detected.vae_config is not None:
            detected.vae_config["scaling_factor"] = float(value)
        elif key == "scheduler":
            detected.scheduler_config.update(value)
        elif key in ("text_encoder", "text_encoder_2"):
            for spec in detected.text_encoders:
                if spec.name == key:
                    spec.config.update(value)


def detect_checkpoint(
    path: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    read_tensor: TensorReader | None = None,
    allow_pickle: bool = False,
) -> DetectedModel:
    """Detect a single-file checkpoint from its header (plus one small tensor for SD2)."""
    path = Path(path)
    shapes = read_shapes(path, allow_pickle=allow_pickle)
    if read_tensor is None and not is_pickle_file(path):
        read_tensor = _single_tensor_reader(path)
    return detect_from_shapes(shapes, path, read_tensor=read_tensor, overrides=read_overrides(path, overrides))


def _single_tensor_reader(path: Path) -> TensorReader:
    def read(key: str) -> torch.Tensor:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensor: torch.Tensor = f.get_tensor(key)
            return tensor

    return read


def detect_vae_file(
    path: str | Path, *, family: str = "sd1", overrides: Mapping[str, Any] | None = None, allow_pickle: bool = False
) -> tuple[dict[str, Any], str]:
    """Config and key prefix of a standalone VAE file (keys with or without ``first_stage_model.``).

    The scaling factor is not in the weights; ``family`` picks the default (SD1/SD2 0.18215,
    SDXL 0.13025) and the sidecar/``scaling_factor`` override replaces it.
    """
    path = Path(path)
    shapes = read_shapes(path, allow_pickle=allow_pickle)
    prefix = find_vae_prefix(shapes)
    if prefix is None:
        if UNET_PREFIX + "input_blocks.0.0.weight" in shapes:
            found = "it is a full checkpoint without VAE weights"
        elif any(k.startswith(("encoder.down_blocks.", "decoder.up_blocks.")) for k in shapes):
            found = "it holds diffusers-format VAE weights; point the loader at the diffusers vae folder"
        else:
            found = _describe_non_checkpoint(shapes)
        raise UnknownArchitectureError(path, f"no VAE weights found ({found})")
    cfg = derive_vae_config(shapes, family, prefix, path)
    merged = read_overrides(path, overrides)
    if "scaling_factor" in merged:
        cfg["scaling_factor"] = float(merged["scaling_factor"][0])
    if "vae" in merged:
        cfg.update(merged["vae"][0])
    return cfg, prefix


def describe(detected: DetectedModel) -> str:
    """A one-line human summary, for logs and the node's info panel."""
    u = detected.unet_config
    parts = [
        detected.family + (" inpainting" if detected.inpainting else ""),
        detected.prediction_type,
        f"unet {u['block_out_channels']}x{u['layers_per_block']}",
        f"context {u['cross_attention_dim']}",
        f"text {[t.config['hidden_size'] for t in detected.text_encoders]}",
    ]
    return ", ".join(parts)
