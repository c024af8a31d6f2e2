"""SD3/3.5 MMDiT from the files people download: the loaded model computes what diffusers' model does."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from nodes.diffusion.dit import autoencoder, flux, sd3, z_image
from nodes.diffusion.dit.shapes import UnusableWeightsError
from nodes.diffusion.errors import ModelError
from tests.support import tiny_flow as tf

VARIANTS = {
    "sd3.5_medium": {"dual": True, "qk_norm": True},
    "sd3.5_large": {"dual": False, "qk_norm": True},
    "sd3_medium": {"dual": False, "qk_norm": False},
}


def _shapes(state):
    return {k: tuple(v.shape) for k, v in state.items()}


def _assert_same_forward(reference, loaded):
    inputs = tf.example_inputs(reference, seed=3)
    expected, got = tf.forward(reference, inputs), tf.forward(loaded, inputs)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got - expected).abs().max()


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("prefix", ["model.diffusion_model.", ""])
def test_single_file_loads_to_the_same_network(tmp_path, name, prefix):
    reference = tf.tiny_sd3(seed=1, **VARIANTS[name])
    path = tf.write_file(tmp_path / "sd3.safetensors", tf.sd3_to_original(reference, prefix))
    shapes = _shapes(load_file(path))
    assert sd3.recognise(shapes)
    assert not flux.recognise(shapes) and not z_image.recognise(shapes)
    assert sd3.variant(shapes) == name

    config = sd3.config_from_shapes(shapes)
    for key in ("num_layers", "attention_head_dim", "num_attention_heads", "joint_attention_dim", "qk_norm"):
        assert config[key] == reference.config[key], key
    assert list(config["dual_attention_layers"]) == list(reference.config.dual_attention_layers)
    assert config["pos_embed_max_size"] == 16 and config["pooled_projection_dim"] == 160

    _assert_same_forward(reference, sd3.load(path))


def test_all_in_one_checkpoint_holds_transformer_vae_and_text_encoders(tmp_path):
    ckpt = tf.write_sd35_all_in_one(tmp_path / "sd3.5_medium_incl_clips_t5xxl.safetensors", seed=2)
    shapes = _shapes(load_file(ckpt.path))
    assert sd3.recognise(shapes) and autoencoder.recognise(shapes)
    parts = sd3.components(shapes)
    assert parts == {
        "transformer": "model.diffusion_model.",
        "vae": "first_stage_model.",
        "clip_l": "text_encoders.clip_l.transformer.",
        "clip_g": "text_encoders.clip_g.transformer.",
        "t5xxl": "text_encoders.t5xxl.transformer.",
    }
    _assert_same_forward(ckpt.transformer, sd3.load(ckpt.path))

    vae = autoencoder.load(ckpt.path, "sd3")
    assert (vae.config.scaling_factor, vae.config.shift_factor) == (1.5305, 0.0609)
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = ckpt.vae.decode(ckpt.vae.encode(image).latent_dist.mean).sample
        got = vae.decode(vae.encode(image).latent_dist.mean).sample
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_diffusers_folder(tmp_path):
    reference = tf.tiny_sd3(seed=4)
    folder = tf.write_diffusers_folder(tmp_path / "sd35", transformer=reference)
    assert sd3.recognise_folder(folder) and sd3.recognise_folder(folder / "transformer")
    assert not flux.recognise_folder(folder)
    _assert_same_forward(reference, sd3.load(folder))


def test_stored_dtype_stays_unless_asked(tmp_path):
    reference = tf.tiny_sd3(seed=5)
    path = tf.write_file(tmp_path / "bf16.safetensors", tf.sd3_to_original(reference), dtype=torch.bfloat16)
    kept = sd3.load(path)
    assert {p.dtype for p in kept.parameters()} == {torch.bfloat16}
    cast = sd3.load(path, dtype=torch.float32)
    assert {p.dtype for p in cast.parameters()} == {torch.float32}
    # Same bf16 weights either way: the cast model equals the bf16 reference computed in fp32.
    expected = tf.tiny_sd3(seed=5).to(torch.bfloat16).to(torch.float32)
    _assert_same_forward(expected, cast)


def test_a_misshapen_tensor_is_named(tmp_path):
    state = tf.sd3_to_original(tf.tiny_sd3(seed=6))
    key = "model.diffusion_model.joint_blocks.1.x_block.attn.qkv.weight"
    state[key] = state[key][:-8]
    path = tf.write_file(tmp_path / "bad.safetensors", state)
    with pytest.raises(UnusableWeightsError, match=r"joint_blocks\.1\.x_block\.attn\.qkv\.weight has 184 rows"):
        sd3.load(path)


def test_missing_block_and_missing_tensor_are_named(tmp_path):
    state = tf.sd3_to_original(tf.tiny_sd3(seed=7))
    gap = {k: v for k, v in state.items() if ".joint_blocks.1." not in k}
    with pytest.raises(UnusableWeightsError, match=r"blocks joint_blocks\.\[1\] are missing"):
        sd3.load(tf.write_file(tmp_path / "gap.safetensors", gap))
    lost = dict(state)
    del lost["model.diffusion_model.joint_blocks.2.context_block.adaLN_modulation.1.bias"]
    with pytest.raises(UnusableWeightsError, match=r"context_block\.adaLN_modulation\.1\.bias is missing"):
        sd3.load(tf.write_file(tmp_path / "lost.safetensors", lost))


def test_truncated_file_is_one_clear_error(tmp_path):
    path = tf.write_file(tmp_path / "cut.safetensors", tf.sd3_to_original(tf.tiny_sd3(seed=8)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated"):
        sd3.load(path)
