"""FLUX.1 from the files people download: the loaded model computes what diffusers' model does."""

from __future__ import annotations

import pytest
import torch
from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers
from safetensors.torch import load_file

from nodes.diffusion.dit import autoencoder, flux, sd3, z_image
from nodes.diffusion.dit.shapes import UnusableWeightsError
from tests.support import tiny_flow as tf


def _shapes(state):
    return {k: tuple(v.shape) for k, v in state.items()}


def _assert_same_forward(reference, loaded):
    inputs = tf.example_inputs(reference, seed=3)
    expected, got = tf.forward(reference, inputs), tf.forward(loaded, inputs)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got - expected).abs().max()


@pytest.mark.parametrize(
    ("guidance", "prefix", "variant"),
    [(True, "", "flux1_dev"), (False, "", "flux1_schnell"), (True, "model.diffusion_model.", "flux1_dev")],
)
def test_single_file_loads_to_the_same_network(tmp_path, guidance, prefix, variant):
    reference = tf.tiny_flux(seed=1, guidance=guidance)
    path = tf.write_file(tmp_path / "flux1.safetensors", tf.flux_to_original(reference, prefix))
    shapes = _shapes(load_file(path))
    assert flux.recognise(shapes)
    assert not sd3.recognise(shapes) and not z_image.recognise(shapes)
    assert flux.variant(shapes) == variant

    config = flux.config_from_shapes(shapes)
    assert config["guidance_embeds"] is guidance
    assert (config["num_layers"], config["num_single_layers"]) == (2, 2)
    assert (config["num_attention_heads"], config["attention_head_dim"]) == (2, 32)
    assert config["axes_dims_rope"] == [4, 14, 14]  # the released 16/56/56 split, scaled to 32-wide heads

    _assert_same_forward(reference, flux.load(path))


def test_all_in_one_checkpoint(tmp_path):
    ckpt = tf.write_flux_all_in_one(tmp_path / "flux1-dev-fp8.safetensors", seed=11)
    shapes = _shapes(load_file(ckpt.path))
    assert flux.recognise(shapes) and autoencoder.recognise(shapes) and not sd3.recognise(shapes)
    assert flux.components(shapes) == {
        "transformer": "model.diffusion_model.",
        "vae": "first_stage_model.",
        "clip_l": "text_encoders.clip_l.transformer.",
        "t5xxl": "text_encoders.t5xxl.transformer.",
    }
    _assert_same_forward(ckpt.transformer, flux.load(ckpt.path))
    assert autoencoder.load(ckpt.path, "flux").config.shift_factor == 0.1159


def test_diffusers_own_converter_assumes_the_full_width():
    """Why sdgraph converts FLUX itself: diffusers splits ``linear1`` as if every model were 3072 wide."""
    state = tf.flux_to_original(tf.tiny_flux(seed=2))
    with pytest.raises(RuntimeError, match="split"):
        convert_flux_transformer_checkpoint_to_diffusers(dict(state))
    config = flux.config_from_shapes(_shapes(state))
    assert flux.convert_state_dict(state, config)["single_transformer_blocks.0.proj_mlp.weight"].shape == (256, 64)


def test_diffusers_folder(tmp_path):
    reference = tf.tiny_flux(seed=4, guidance=False)
    folder = tf.write_diffusers_folder(tmp_path / "flux-schnell", transformer=reference)
    assert flux.recognise_folder(folder) and not sd3.recognise_folder(folder)
    _assert_same_forward(reference, flux.load(folder))


def test_sharded_diffusers_folder(tmp_path):
    reference = tf.tiny_flux(seed=4)
    reference.save_pretrained(tmp_path / "flux-dev" / "transformer", max_shard_size="200KB")
    assert len(list((tmp_path / "flux-dev" / "transformer").glob("*.safetensors"))) > 1
    _assert_same_forward(reference, flux.load(tmp_path / "flux-dev"))


def test_weights_become_the_parameters_without_a_copy():
    """Split rows of a fused tensor are views of it, and assign=True keeps them: no second model in memory."""
    state = tf.flux_to_original(tf.tiny_flux(seed=9))
    config = flux.config_from_shapes(_shapes(state))
    model = flux.build(config, flux.convert_state_dict(state, config))
    fused = state["single_blocks.1.linear1.weight"]
    block = model.single_transformer_blocks[1]
    assert block.attn.to_k.weight.untyped_storage().data_ptr() == fused.untyped_storage().data_ptr()
    assert block.proj_mlp.weight.untyped_storage().data_ptr() == fused.untyped_storage().data_ptr()
    assert model.x_embedder.weight.data_ptr() == state["img_in.weight"].data_ptr()


def test_a_scale_for_a_layer_the_architecture_lacks_is_named(tmp_path):
    """Scaled fp8 files load (tests/nodes/dit/test_scaled_fp8.py); a scale without its weight is left over."""
    state = tf.flux_to_original(tf.tiny_flux(seed=10))
    state |= {"scaled_fp8": torch.zeros(2), "double_blocks.0.img_attn.extra.scale_weight": torch.ones(())}
    with pytest.raises(UnusableWeightsError, match=r"double_blocks\.0\.img_attn\.extra\.scale_weight"):
        flux.load(tf.write_file(tmp_path / "flux1-dev-fp8-scaled.safetensors", state))


def test_fp8_file_keeps_fp8_weights(tmp_path):
    path = tf.write_file(tmp_path / "fp8.safetensors", tf.flux_to_original(tf.tiny_flux(seed=5)), torch.float8_e4m3fn)
    model = flux.load(path)
    assert {p.dtype for p in model.parameters()} == {torch.float8_e4m3fn}


def test_other_flux_like_models_are_not_flux1():
    shapes = _shapes(tf.flux_to_original(tf.tiny_flux(seed=6)))
    assert not flux.recognise({**shapes, "single_stream_modulation.lin.weight": (384, 64)})  # FLUX.2
    assert not flux.recognise({**shapes, "distilled_guidance_layer.in_proj.weight": (64, 64)})  # Chroma


def test_unknown_mlp_width_and_unknown_tensors_are_named(tmp_path):
    state = tf.flux_to_original(tf.tiny_flux(seed=7))
    wide = dict(state, **{"single_blocks.0.linear1.weight": torch.zeros(7 * 64 + 8, 64)})
    with pytest.raises(UnusableWeightsError, match=r"single_blocks\.0\.linear1 has 456 rows"):
        flux.load(tf.write_file(tmp_path / "wide.safetensors", wide))
    extra = dict(state, **{"double_blocks.0.img_attn.lora_down.weight": torch.zeros(4, 64)})
    with pytest.raises(UnusableWeightsError, match=r"not part of this architecture, e\.g\. double_blocks\.0"):
        flux.load(tf.write_file(tmp_path / "extra.safetensors", extra))


def test_head_size_without_an_even_rope_split_is_refused():
    shapes = _shapes(tf.flux_to_original(tf.tiny_flux(seed=8)))
    narrow = {k: ((16,) if k.endswith("_norm.scale") else v) for k, v in shapes.items()}
    with pytest.raises(UnusableWeightsError, match="16-wide attention heads cannot keep the released RoPE split"):
        flux.config_from_shapes(narrow, source="narrow.safetensors")
