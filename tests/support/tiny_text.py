"""Tiny, seeded text encoders of the flow-matching families, written as the single files users download.

CLIP-L, CLIP-G, T5-XXL and Qwen3 built from the shipped public configs (``resources/text_encoders``) with
small widths and depths but the real vocabularies, so the real tokenizers work with them. Everything
that shapes cannot tell (activations, epsilons, rotary base) is the shipped config's, as the loader
assumes. Weights are the library's initialisation plus seeded noise on every 1-D parameter (norm scales
would otherwise all be 1 and hide swapped keys).

``save_encoder`` writes one model in the key layout of the files ComfyUI users have: ``clip_l.safetensors``
(``text_model.*`` + ``text_projection.weight``), ``t5xxl_fp16.safetensors`` (``shared.weight``,
``encoder.block.N.*``), ``qwen_3_4b.safetensors`` (``model.layers.N.*``), optionally under a prefix
such as ``text_encoders.t5xxl.transformer.`` (all-in-one SD3.5 files) and in another dtype.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from nodes.diffusion.text.encoder_files import CLIP_G, CLIP_L, QWEN3, T5XXL, base_config

TINY_SIZES: dict[str, dict[str, Any]] = {
    CLIP_L: {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 1,
        "projection_dim": 64,
    },
    CLIP_G: {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "projection_dim": 96,
    },
    T5XXL: {
        "d_model": 256,
        "d_ff": 96,
        "d_kv": 16,
        "num_heads": 4,
        "num_layers": 2,
        "num_decoder_layers": 2,
        "dropout_rate": 0.0,
    },
    QWEN3: {
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 3,
        "max_window_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
    },
}


def tiny_encoder(role: str, seed: int = 0) -> Any:
    """A tiny seeded encoder of ``role`` (eval mode, float32)."""
    from nodes.diffusion.text.encoder_files import EncoderInFile, _model_class_and_config

    cfg = base_config(role)
    cfg.update(TINY_SIZES[role])
    cls, config = _model_class_and_config(EncoderInFile(role, "", cfg))
    torch.manual_seed(seed)
    model = cls(config)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 1:
                param.add_(torch.randn(param.shape, generator=gen) * 0.1)
    return model.eval().requires_grad_(False)


def encoder_state(model: Any, role: str) -> dict[str, torch.Tensor]:
    """The model's weights under the key names of the downloadable single file."""
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if role in (CLIP_L, CLIP_G) and not any(k.startswith("text_model.") for k in state):
        state = {(k if k.startswith("text_projection") else "text_model." + k): v for k, v in state.items()}
    if role == T5XXL:
        state.pop("encoder.embed_tokens.weight", None)  # tied to shared.weight; files store it once
    if role == QWEN3:
        state = {"model." + k: v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.endswith(("position_ids", "inv_freq"))}


def save_encoder(
    model: Any, role: str, path: Path, *, prefix: str = "", dtype: torch.dtype | None = None, bare: bool = False
) -> Path:
    """Write ``model`` as a single safetensors file; ``bare`` drops Qwen3's ``model.`` prefix."""
    state = encoder_state(model, role)
    if bare:
        state = {k.removeprefix("model."): v for k, v in state.items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({prefix + k: v for k, v in state.items()}, str(path))
    return path
