"""Standalone text-encoder files: recognised from their keys, architecture from shapes, weights loaded as stored."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from nodes.diffusion.errors import ModelError, UnknownArchitectureError
from nodes.diffusion.scaled_fp8 import ScaledFp8Linear
from nodes.diffusion.text.encoder_files import (
    CLIP_G,
    CLIP_L,
    QWEN3,
    T5XXL,
    identify_encoders,
    load_text_encoder,
    read_encoders,
    stored_dtype,
)
from tests.support.tiny_text import TINY_SIZES, encoder_state, save_encoder, tiny_encoder

IDS = torch.tensor([[3, 9, 1202, 13, 3, 9, 1712, 1, 0, 0]])


def _forward(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids).last_hidden_state.float()


@pytest.mark.parametrize(
    ("role", "kwargs", "prefix"),
    [
        (CLIP_L, {}, ""),
        (CLIP_G, {}, ""),
        (CLIP_L, {"prefix": "text_encoders.clip_l.transformer."}, "text_encoders.clip_l.transformer."),
        (T5XXL, {}, ""),
        (T5XXL, {"prefix": "text_encoders.t5xxl.transformer."}, "text_encoders.t5xxl.transformer."),
        (QWEN3, {}, "model."),
        (QWEN3, {"bare": True}, ""),
    ],
)
def test_round_trip_gives_the_same_model(tmp_path: Path, role, kwargs, prefix):
    model = tiny_encoder(role, seed=3)
    path = save_encoder(model, role, tmp_path / "enc.safetensors", **kwargs)
    (found,) = read_encoders(path)
    assert found.prefix == prefix
    loaded = load_text_encoder(path, prefix=prefix, role=role)
    assert type(loaded) is type(model)
    for key, value in TINY_SIZES[role].items():
        if key not in ("dropout_rate", "num_decoder_layers"):
            assert getattr(loaded.config, key) == value, key
    ids = IDS.clamp(max=100)
    assert torch.equal(_forward(loaded, ids), _forward(model, ids))


def test_clip_roles_from_prefix_and_undecided_widths(tmp_path: Path):
    model = tiny_encoder(CLIP_G)
    state = {"text_encoders.clip_g.transformer." + k: v for k, v in encoder_state(model, CLIP_G).items()}
    state |= {
        "text_encoders.clip_l.transformer." + k: v for k, v in encoder_state(tiny_encoder(CLIP_L), CLIP_L).items()
    }
    t5 = tiny_encoder(T5XXL)
    state |= {"text_encoders.t5xxl.transformer." + k: v for k, v in encoder_state(t5, T5XXL).items()}
    save_file(state, str(tmp_path / "all_in_one.safetensors"))
    roles = {e.role: e for e in read_encoders(tmp_path / "all_in_one.safetensors")}
    assert set(roles) == {CLIP_L, CLIP_G, T5XXL}
    assert roles[CLIP_G].config["hidden_act"] == "gelu" and roles[CLIP_L].config["hidden_act"] == "quick_gelu"
    assert roles[T5XXL].config["num_heads"] == 4 and roles[T5XXL].config["d_kv"] == 16
    # A bare CLIP of a width other than 768/1280 is "some CLIP" until a loader decides its role.
    save_encoder(tiny_encoder(CLIP_L), CLIP_L, tmp_path / "clip.safetensors")
    (bare,) = read_encoders(tmp_path / "clip.safetensors")
    assert bare.role == "clip" and bare.with_role(CLIP_G).config["hidden_act"] == "gelu"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_stored_half_precision_is_kept(tmp_path: Path, dtype):
    model = tiny_encoder(T5XXL)
    path = save_encoder(model, T5XXL, tmp_path / "t5.safetensors", dtype=dtype)
    assert stored_dtype(path, "") == dtype
    loaded = load_text_encoder(path, prefix="", role=T5XXL)
    assert {p.dtype for p in loaded.parameters()} == {dtype}
    expected = {k: v.to(dtype) for k, v in encoder_state(model, T5XXL).items()}
    assert torch.equal(loaded.state_dict()["encoder.block.1.layer.1.DenseReluDense.wo.weight"],
                       expected["encoder.block.1.layer.1.DenseReluDense.wo.weight"])  # fmt: skip
    upcast = load_text_encoder(path, prefix="", role=T5XXL, dtype=torch.float32)
    assert {p.dtype for p in upcast.parameters()} == {torch.float32}


def test_scaled_fp8_stays_fp8_and_is_scaled_per_call(tmp_path: Path):
    """fp8 text encoders keep their fp8 weights (tests/nodes/text/test_fp8_text_encoders.py has the rest)."""
    model = tiny_encoder(QWEN3)
    state = encoder_state(model, QWEN3)
    key = "model.layers.0.mlp.down_proj.weight"
    scale = torch.tensor(0.01)
    quantised = {
        k: (v / scale if k == key else v).to(torch.float8_e4m3fn) if v.ndim == 2 else v for k, v in state.items()
    }
    quantised[key.removesuffix(".weight") + ".scale_weight"] = scale
    quantised["scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)
    save_file(quantised, str(tmp_path / "qwen_fp8_scaled.safetensors"))
    assert stored_dtype(tmp_path / "qwen_fp8_scaled.safetensors", "model.") == torch.bfloat16  # computes in bf16
    loaded = load_text_encoder(tmp_path / "qwen_fp8_scaled.safetensors", prefix="model.", role=QWEN3)
    layer = loaded.layers[0].mlp.down_proj
    assert isinstance(layer, ScaledFp8Linear)
    assert torch.equal(layer.fp8_weight.view(torch.uint8), quantised[key].view(torch.uint8))  # the file's bytes
    assert layer.scale_weight.dtype == torch.float32 and float(layer.scale_weight) == float(scale)
    assert "layers.0.mlp.down_proj.weight" not in loaded.state_dict()  # no bf16 copy is kept
    weight = layer.weight  # dequantized on access, in the working dtype
    assert weight.dtype == torch.bfloat16
    expected = (state[key] / scale).to(torch.float8_e4m3fn).float() * scale
    assert torch.equal(weight, expected.to(torch.bfloat16))
    assert not torch.equal(weight, quantised[key].to(torch.bfloat16))  # the scale was applied
    assert (weight.float() - state[key]).abs().max() < 0.1 * state[key].abs().max()  # ≈ the original weights
    plain = loaded.layers[0].self_attn.q_proj  # fp8 without a scale: scale 1
    assert isinstance(plain, ScaledFp8Linear) and float(plain.scale_weight) == 1.0
    assert plain.fp8_weight.dtype == torch.float8_e4m3fn
    assert loaded.embed_tokens.weight.dtype == torch.bfloat16  # the token table is kept in the working dtype


@pytest.mark.parametrize(
    ("shapes", "words"),
    [
        ({"double_blocks.0.img_attn.qkv.weight": (9, 3)}, "FLUX diffusion model"),
        ({"model.diffusion_model.input_blocks.0.0.weight": (3, 3)}, "Stable Diffusion checkpoint"),
        ({"decoder.conv_in.weight": (3, 3)}, "a VAE"),
        ({"model.layers.0.self_attn.q_proj.weight": (4, 4), "model.layers.0.self_attn.q_proj.bias": (4,)}, "Qwen2"),
        (
            {"model.layers.0.self_attn.q_proj.weight": (4, 4), "model.layers.0.pre_feedforward_layernorm.weight": (4,)},
            "Gemma",
        ),
        ({}, "no tensors"),
    ],
)
def test_files_that_are_not_supported_text_encoders_are_named(shapes, words):
    with pytest.raises(UnknownArchitectureError, match=words):
        identify_encoders(shapes, "x.safetensors")


def test_umt5_is_not_taken_for_t5(tmp_path: Path):
    state = encoder_state(tiny_encoder(T5XXL), T5XXL)
    state["encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"] = torch.zeros(32, 4)
    save_file(state, str(tmp_path / "umt5_xxl.safetensors"))
    with pytest.raises(UnknownArchitectureError, match="UMT5"):
        read_encoders(tmp_path / "umt5_xxl.safetensors")


def test_missing_weights_are_refused(tmp_path: Path):
    state = encoder_state(tiny_encoder(T5XXL), T5XXL)
    del state["encoder.final_layer_norm.weight"]
    save_file(state, str(tmp_path / "t5_cut.safetensors"))
    with pytest.raises(ModelError, match="missing"):
        load_text_encoder(tmp_path / "t5_cut.safetensors", prefix="", role=T5XXL)
