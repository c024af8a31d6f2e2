"""Standalone text-encoder files: what a file holds, its architecture from tensor shapes, and loading it.

ComfyUI users download text encoders as single safetensors files into ``models/text_encoders`` (or the
older ``models/clip``): ``clip_l.safetensors``, ``clip_g.safetensors``, ``t5xxl_fp16.safetensors``,
``qwen_3_4b.safetensors``. Their keys are the Hugging Face module names, sometimes under a prefix:

============ ========================================================= ==============================
encoder      marker key (after the prefix)                             prefixes seen
============ ========================================================= ==============================
CLIP-L / -G  ``text_model.embeddings.token_embedding.weight``          none; ``text_encoders.clip_l.
                                                                       transformer.`` (all-in-one SD3.5)
T5-XXL       ``encoder.block.0.layer.0.SelfAttention.q.weight``        none; ``text_encoders.t5xxl.
                                                                       transformer.``
Qwen3        ``layers.0.self_attn.q_norm.weight``                      ``model.`` (as in Qwen3ForCausalLM);
                                                                       none
============ ========================================================= ==============================

A file may hold several encoders (an all-in-one SD3.5 checkpoint holds all three). Every size comes from
the shapes — widths, depth, heads (64-channel heads for CLIP; for T5 from the relative-attention table,
for Qwen3 from the q/k-norm width, which is ``head_dim``), vocabulary, relative-attention buckets —
and the rest from the public config in ``resources/text_encoders``, so small or pruned files build the
right modules. CLIP-L and CLIP-G have the same layout; they are told apart by width (768 / 1280), by
the prefix (``clip_l``/``clip_g``), or, for two CLIP files of other widths, by the loader: the wider is G.

Files of encoders sdgraph does not run yet (UMT5 of WAN, Qwen2.5-VL of Qwen-Image, Gemma of Lumina 2)
and files that are not text encoders at all (a FLUX transformer, a full SD checkpoint, a VAE) are named
in the error, so "a T5 file in a CLIP slot" and "a diffusion model in the text-encoder folder" read as
what they are.

**Precision.** By default an encoder keeps the dtype it is stored in (fp16/bf16/fp32): a 4.7 B-parameter
T5-XXL stored in fp16 takes 9.5 GB, in fp32 19 GB. An fp8 file (``t5xxl_fp8_e4m3fn``, 4.9 GB — why people
download it) stays fp8: every linear whose weight is stored in fp8 keeps it as an fp8 buffer, with its
``scale_weight`` for ComfyUI's "scaled fp8" files (``*_fp8_e4m3fn_scaled``) and scale 1 for plain ones,
and computes ``(fp8.float() * scale).to(working dtype)`` for its own call only — the transformers' layer
(``nodes.diffusion.scaled_fp8.ScaledFp8Linear``, whose docstring also says what ``scale_input`` is and
why it is checked, not applied). There are no fp8 matmul kernels on most devices, so fp8 encoders
*compute* in bf16 (CLIPs, small, in the run's text dtype). Everything that is not a linear's weight —
token and position tables, norms, T5's relative-attention table — is kept in the working dtype, fp8 ones
dequantized at load (the token table is the only large one: 126 MB more for T5-XXL, 371 MB for Qwen3-4B
when a file stores it in fp8 — by its size, 4.63 GB of fp8 linears and a 0.26 GB 16-bit table, the
published ``t5xxl_fp8_e4m3fn`` does not; see ``scaled_fp8`` for why it is not kept in fp8). Loading goes
tensor by tensor, never through a float copy of the model, so memory stays near the file's size
(``bench/fp8_text_memory.py`` measures it). An explicit ``dtype`` casts every other floating tensor, one
at a time, and is what the fp8 layers compute in. GGUF files (``nodes.diffusion.gguf``) keep their
quantized linears the same way.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodes.diffusion.errors import MissingComponentError, ModelError, UnknownArchitectureError
from nodes.shipped import resource_path

if TYPE_CHECKING:
    import torch

Shapes = Mapping[str, tuple[int, ...]]

CONFIG_ROOT = resource_path("text_encoders")

CLIP_L, CLIP_G, T5XXL, QWEN3 = "clip_l", "clip_g", "t5xxl", "qwen3"
ROLE_NAMES = {CLIP_L: "CLIP-L", CLIP_G: "CLIP-G", T5XXL: "T5-XXL", QWEN3: "Qwen3"}
"""Human names of each encoder role, as error messages and the UI print them."""
_BASE_CONFIG = {CLIP_L: "clip_l", CLIP_G: "clip_g", T5XXL: "t5xxl", QWEN3: "qwen3_4b"}

_CLIP_MARK = "text_model.embeddings.token_embedding.weight"
_T5_MARK = "encoder.block.0.layer.0.SelfAttention.q.weight"
_QWEN3_MARK = "layers.0.self_attn.q_norm.weight"
_DECODER_MARK = "layers.0.self_attn.q_proj.weight"

# Keys that identify files that are not standalone text encoders, and what to say about them.
_NOT_TEXT_ENCODERS = (
    ("model.diffusion_model.double_blocks.", "a FLUX diffusion model (load it with Load Diffusion Model / UNETLoader)"),
    ("double_blocks.0.img_attn.qkv.weight", "a FLUX diffusion model (load it with Load Diffusion Model / UNETLoader)"),
    ("model.diffusion_model.joint_blocks.", "an SD3 checkpoint or diffusion model (load it with Load Checkpoint)"),
    ("joint_blocks.0.x_block.attn.qkv.weight", "an SD3 diffusion model (load it with Load Diffusion Model)"),
    ("model.diffusion_model.input_blocks.", "a Stable Diffusion checkpoint (load it with Load Checkpoint)"),
    ("cond_stage_model.", "a Stable Diffusion checkpoint (load it with Load Checkpoint)"),
    ("conditioner.embedders.", "an SDXL checkpoint (load it with Load Checkpoint)"),
    ("cap_embedder.", "a Z-Image / Lumina diffusion model (load it with Load Diffusion Model)"),
    ("decoder.conv_in.weight", "a VAE (load it with Load VAE)"),
    ("first_stage_model.", "a Stable Diffusion checkpoint (load it with Load Checkpoint)"),
    ("lora_", "a LoRA (load it with Load LoRA)"),
)


@dataclass
class EncoderInFile:
    """One text encoder found in a file: its role, where its keys start, and its transformers config."""

    role: str  # CLIP_L, CLIP_G, T5XXL, QWEN3; "clip" while a CLIP's role is not yet decided
    prefix: str
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return ROLE_NAMES.get(self.role, "CLIP")

    @property
    def width(self) -> int:
        cfg = self.config
        return int(cfg.get("hidden_size") or cfg.get("d_model") or 0)

    def with_role(self, role: str) -> EncoderInFile:
        """A CLIP whose role the loader decided: its activation and token ids come from that role."""
        base = base_config(role)
        cfg = {**base, **{k: v for k, v in self.config.items() if k in _CLIP_SHAPE_FIELDS}}
        return EncoderInFile(role, self.prefix, cfg, list(self.notes))


@cache
def _read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def base_config(role: str) -> dict[str, Any]:
    """A fresh copy of the shipped public config for one encoder role."""
    path = CONFIG_ROOT / _BASE_CONFIG[role] / "config.json"
    if not path.is_file():
        raise ModelError(f"Missing shipped config {path}; the sdgraph installation is incomplete.")
    return copy.deepcopy(_read_json(path))


# --------------------------------------------------------------------------------------------
# Identification
# --------------------------------------------------------------------------------------------


def _prefixes(shapes: Shapes, mark: str) -> list[str]:
    return sorted(k[: -len(mark)] for k in shapes if k.endswith(mark))


def _count(shapes: Shapes, prefix: str) -> int:
    """How many numbered children ``prefix + "N."`` exist."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in shapes if (m := pattern.match(k))})


def identify_encoders(shapes: Shapes, path: str | Path = "?") -> list[EncoderInFile]:
    """Every text encoder in a file, with configs derived from shapes; raises naming what else it is."""
    found: list[EncoderInFile] = []
    for prefix in _prefixes(shapes, _CLIP_MARK):
        found.append(_clip_encoder(shapes, prefix, path))
    for prefix in _prefixes(shapes, _T5_MARK):
        found.append(_t5_encoder(shapes, prefix, path))
    for prefix in _prefixes(shapes, _QWEN3_MARK):
        found.append(_qwen3_encoder(shapes, prefix, path))
    if found:
        return found
    raise UnknownArchitectureError(path, f"not a text encoder sdgraph can use: {describe_other(shapes)}")


def describe_other(shapes: Shapes) -> str:
    """Name what a file without a supported text encoder seems to be, for the error message."""
    keys = list(shapes)
    for marker, what in _NOT_TEXT_ENCODERS:
        if any(k.startswith(marker) or k.endswith(marker) for k in keys):
            return f"it looks like {what}"
    for prefix in _prefixes(shapes, _DECODER_MARK):
        if prefix + "layers.0.pre_feedforward_layernorm.weight" in shapes:
            return "it looks like a Gemma language model (Lumina Image 2.0's encoder), which sdgraph does not run yet"
        if prefix + "layers.0.self_attn.q_proj.bias" in shapes:
            return (
                "it looks like a Qwen2/Qwen2.5 language model (Qwen-Image's Qwen2.5-VL encoder), "
                "which sdgraph does not run yet; Z-Image needs Qwen3-4B"
            )
        return "it looks like a Llama-style language model, which sdgraph does not run as a text encoder yet"
    if not keys:
        return "the file holds no tensors"
    return f"no known text-encoder keys (first keys: {', '.join(sorted(keys)[:3])})"


_CLIP_SHAPE_FIELDS = (
    "vocab_size",
    "hidden_size",
    "max_position_embeddings",
    "num_hidden_layers",
    "intermediate_size",
    "num_attention_heads",
    "projection_dim",
    "architectures",
)


def _clip_encoder(shapes: Shapes, prefix: str, path: str | Path) -> EncoderInFile:
    tm = prefix + "text_model."
    vocab, width = shapes[tm + "embeddings.token_embedding.weight"]
    positions = shapes[tm + "embeddings.position_embedding.weight"][0]
    layers = _count(shapes, tm + "encoder.layers.")
    fc1 = tm + "encoder.layers.0.mlp.fc1.weight"
    if layers == 0 or fc1 not in shapes:
        raise UnknownArchitectureError(path, f"a CLIP text encoder under {prefix!r} without transformer layers")
    if width % 64:
        raise UnknownArchitectureError(path, f"a CLIP text encoder {width} wide (CLIP uses 64-channel heads)")
    projection = shapes.get(prefix + "text_projection.weight")
    if "clip_g" in prefix or width == 1280:
        role = CLIP_G
    elif "clip_l" in prefix or width == 768:
        role = CLIP_L
    else:
        role = "clip"
    cfg = base_config(CLIP_G if role == CLIP_G else CLIP_L)
    cfg.update(
        vocab_size=vocab,
        hidden_size=width,
        max_position_embeddings=positions,
        num_hidden_layers=layers,
        intermediate_size=shapes[fc1][0],
        num_attention_heads=width // 64,
        projection_dim=projection[0] if projection else width,
        architectures=["CLIPTextModelWithProjection"],
    )
    notes = [] if projection else ["no text_projection in the file: the identity is used where a projection is needed"]
    return EncoderInFile(role, prefix, cfg, notes)


def _t5_encoder(shapes: Shapes, prefix: str, path: str | Path) -> EncoderInFile:
    block = prefix + "encoder.block."
    if block + "1.layer.0.SelfAttention.relative_attention_bias.weight" in shapes:
        raise UnknownArchitectureError(
            path, "it looks like UMT5-XXL (WAN's text encoder: relative attention in every layer), not T5-XXL"
        )
    embed = shapes.get(prefix + "shared.weight") or shapes.get(prefix + "encoder.embed_tokens.weight")
    rel = shapes.get(block + "0.layer.0.SelfAttention.relative_attention_bias.weight")
    if embed is None or rel is None:
        raise UnknownArchitectureError(
            path, f"a T5 encoder under {prefix!r} without token embeddings or attention bias"
        )
    vocab, d_model = embed
    buckets, heads = rel
    inner = shapes[block + "0.layer.0.SelfAttention.q.weight"][0]
    gated = block + "0.layer.1.DenseReluDense.wi_0.weight" in shapes
    d_ff = shapes[block + ("0.layer.1.DenseReluDense.wi_0.weight" if gated else "0.layer.1.DenseReluDense.wi.weight")][
        0
    ]
    cfg = base_config(T5XXL)
    cfg.update(
        vocab_size=vocab,
        d_model=d_model,
        d_kv=inner // heads,
        num_heads=heads,
        num_layers=_count(shapes, block),
        d_ff=d_ff,
        relative_attention_num_buckets=buckets,
        feed_forward_proj="gated-gelu" if gated else "relu",
    )
    return EncoderInFile(T5XXL, prefix, cfg)


def _qwen3_encoder(shapes: Shapes, prefix: str, path: str | Path) -> EncoderInFile:
    embed = shapes.get(prefix + "embed_tokens.weight")
    if embed is None:
        raise UnknownArchitectureError(path, f"a Qwen3 model under {prefix!r} without token embeddings")
    vocab, hidden = embed
    layer = prefix + "layers.0."
    head_dim = shapes[layer + "self_attn.q_norm.weight"][0]
    cfg = base_config(QWEN3)
    layers = _count(shapes, prefix + "layers.")
    cfg.update(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        max_window_layers=layers,
        intermediate_size=shapes[layer + "mlp.gate_proj.weight"][0],
        head_dim=head_dim,
        num_attention_heads=shapes[layer + "self_attn.q_proj.weight"][0] // head_dim,
        num_key_value_heads=shapes[layer + "self_attn.k_proj.weight"][0] // head_dim,
        attention_bias=layer + "self_attn.q_proj.bias" in shapes,
    )
    return EncoderInFile(QWEN3, prefix, cfg)


def read_encoders(path: str | Path) -> list[EncoderInFile]:
    """The encoders in a safetensors file (reads the header only)."""
    from nodes.diffusion.checkpoint.files import read_shapes

    return identify_encoders(read_shapes(path), path)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def stored_dtype(path: str | Path, prefix: str) -> torch.dtype:
    """The floating dtype most of this encoder's weights are stored in, the one it computes in when not
    told otherwise; for fp8, whose weights stay fp8, bf16 (see module docstring)."""
    import torch

    from nodes.diffusion.checkpoint.files import read_safetensors_header

    if Path(path).suffix.lower() == ".gguf":  # quantized weights stay so; this is for the float ones
        from nodes.diffusion.gguf import stored_float_dtype

        return stored_float_dtype(path)
    header = read_safetensors_header(path)
    sizes: dict[str, int] = {}
    for name, info in header.tensors.items():
        if name.startswith(prefix) and info.dtype in ("F16", "BF16", "F32", "F8_E4M3", "F8_E5M2"):
            sizes[info.dtype] = sizes.get(info.dtype, 0) + (info.end - info.start)
    dominant = max(sizes, key=lambda d: sizes[d]) if sizes else "F32"
    return {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}.get(dominant, torch.bfloat16)


def load_text_encoder(
    path: str | Path,
    *,
    prefix: str,
    role: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> Any:
    """Build the transformers model of one encoder in ``path`` and load its weights.

    ``dtype=None`` keeps the stored dtype. Returns a model in eval mode on ``device``: ``CLIPTextModelWithProjection``
    (CLIP-L/G), ``T5EncoderModel`` or ``Qwen3Model``.
    """
    import torch
    from accelerate import init_empty_weights  # type: ignore[import-untyped]

    from nodes.diffusion.checkpoint.files import open_state_dict
    from nodes.diffusion.scaled_fp8 import ScaledWeight, place_scaled

    path = Path(path)
    spec = next((e for e in read_encoders(path) if e.prefix == prefix), None)
    if spec is None:
        raise MissingComponentError(path, f"text encoder under {prefix!r}")
    if spec.role == "clip" or (spec.role != role and spec.role in (CLIP_L, CLIP_G)):
        spec = spec.with_role(role)
    if spec.role != role:
        raise ModelError(f"{path} holds a {spec.name} text encoder under {prefix!r}, not {ROLE_NAMES.get(role, role)}.")
    target = stored_dtype(path, prefix) if dtype is None else dtype
    model_cls, config = _model_class_and_config(spec)
    with init_empty_weights():
        model = model_cls(config)
    state = open_state_dict(path)
    weights = _renamed_weights(state, spec, model, target, path)
    if any(isinstance(w, ScaledWeight) for w in weights.values()):  # fp8 weights: linears stay fp8
        weights = place_scaled(model, weights, target)
    if any(not isinstance(w, torch.Tensor) for w in weights.values()):  # a GGUF file: linears stay quantized
        from nodes.diffusion.gguf import place_quantized

        weights = place_quantized(model, weights, target)
    _assign(model, weights, path, spec.name)
    model.to(torch.device(device))
    model.eval().requires_grad_(False)
    return model


def _model_class_and_config(spec: EncoderInFile) -> tuple[type[Any], Any]:
    cfg = {k: v for k, v in spec.config.items() if k not in ("architectures", "_name_or_path")}
    if spec.role in (CLIP_L, CLIP_G):
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        return CLIPTextModelWithProjection, CLIPTextConfig(**cfg)
    if spec.role == T5XXL:
        from transformers import T5Config, T5EncoderModel

        return T5EncoderModel, T5Config(**cfg)
    from transformers import Qwen3Config, Qwen3Model

    rope_theta = cfg.pop("rope_theta", None)
    cfg.pop("rope_scaling", None)
    if rope_theta is not None:
        cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": float(rope_theta)}
    return Qwen3Model, Qwen3Config(**cfg)


def _renamed_weights(state: Any, spec: EncoderInFile, model: Any, dtype: torch.dtype, path: Path) -> dict[str, Any]:
    """This encoder's tensors under the model's own names, cast to ``dtype`` one at a time; fp8 weights
    (and any with a ``scale_weight``) are left as stored, paired with their scale (``ScaledWeight``)."""
    import torch

    from nodes.diffusion.scaled_fp8 import SCALE_INPUT, SCALE_WEIGHT, keep_fp8

    keys = [k for k in state if k.startswith(spec.prefix)]
    out: dict[str, Any] = {}
    for key in keys:
        name = key[len(spec.prefix) :]
        if name.endswith((SCALE_WEIGHT, SCALE_INPUT)) or name in ("scaled_fp8", "logit_scale", "lm_head.weight"):
            continue
        if name.endswith("position_ids"):
            continue
        tensor = state[key]
        if tensor.is_floating_point():
            tensor = keep_fp8(state, key, tensor, path, spec.name)
            if isinstance(tensor, torch.Tensor):
                tensor = tensor.to(dtype)
        out[name] = tensor
    if spec.role in (CLIP_L, CLIP_G):
        if "text_projection.weight" not in out:
            out["text_projection.weight"] = torch.eye(
                spec.config["projection_dim"], spec.config["hidden_size"], dtype=dtype
            )
        if not hasattr(model, "text_model"):  # transformers >= 5.6 flattened the text tower
            out = {k.removeprefix("text_model."): v for k, v in out.items()}
    elif spec.role == T5XXL:
        shared = out.get("shared.weight", out.get("encoder.embed_tokens.weight"))
        out["shared.weight"] = out["encoder.embed_tokens.weight"] = shared
    elif spec.role == QWEN3:
        out = {k.removeprefix("model."): v for k, v in out.items()}
    return out


def _assign(model: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path, component: str) -> None:
    """Make the tensors the model's parameters; refuse the model if any weight is missing."""
    weights = {k: v.contiguous() for k, v in weights.items()}
    try:
        result = model.load_state_dict(weights, strict=False, assign=True)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        detail = next((ln.strip() for ln in lines if "size mismatch" in ln), lines[-1] if lines else str(exc))
        raise UnknownArchitectureError(
            path, f"{component} weights whose shapes do not fit the architecture read from the file ({detail})"
        ) from exc
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    missing = [k for k in result.missing_keys if not k.endswith(("position_ids", "inv_freq"))]
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if missing or meta:
        names = missing or meta
        raise MissingComponentError(path, component, f"{len(names)} weights missing, e.g. {', '.join(names[:3])}")
