"""Z-Image from the files people download: the loaded model computes what diffusers' model does."""

from __future__ import annotations

import pytest
import torch
from diffusers.loaders.single_file_utils import convert_z_image_transformer_checkpoint_to_diffusers
from safetensors.torch import load_file

from nodes.diffusion.dit import flux, sd3, z_image
from nodes.diffusion.dit.shapes import UnusableWeightsError
from tests.support import tiny_flow as tf


def _shapes(state):
    return {k: tuple(v.shape) for k, v in state.items()}


def _assert_same_forward(reference, loaded):
    inputs = tf.example_inputs(reference, seed=3)
    expected, got = tf.forward(reference, inputs), tf.forward(loaded, inputs)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got - expected).abs().max()


@pytest.mark.parametrize(("prefix", "norm_final"), [("", True), ("model.diffusion_model.", False)])
def test_single_file_loads_to_the_same_network(tmp_path, prefix, norm_final):
    reference = tf.tiny_z_image(seed=1)
    state = tf.z_image_to_original(reference, prefix, norm_final=norm_final)
    path = tf.write_file(tmp_path / "z_image_turbo_bf16.safetensors", state)
    shapes = _shapes(load_file(path))
    assert z_image.recognise(shapes)
    assert not flux.recognise(shapes) and not sd3.recognise(shapes)

    config = z_image.config_from_shapes(shapes)
    assert (config["dim"], config["n_heads"], config["n_layers"], config["n_refiner_layers"]) == (64, 2, 2, 1)
    assert (config["in_channels"], config["cap_feat_dim"]) == (16, 64)
    assert config["axes_dims"] == [8, 12, 12]  # the released 32/48/48 split, scaled to 32-wide heads

    _assert_same_forward(reference, z_image.load(path))


def test_sdgraph_and_diffusers_agree_on_the_key_names():
    """diffusers' converter splits qkv in thirds, which is right for Z-Image at any width: same result."""
    reference = tf.tiny_z_image(seed=2)
    state = tf.z_image_to_original(reference)
    ours = z_image.convert_state_dict(state, z_image.config_from_shapes(_shapes(state)))
    theirs = convert_z_image_transformer_checkpoint_to_diffusers(dict(state))
    assert ours.keys() == theirs.keys() == reference.state_dict().keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_diffusers_folder(tmp_path):
    reference = tf.tiny_z_image(seed=4)
    folder = tf.write_diffusers_folder(tmp_path / "Z-Image-Turbo", transformer=reference)
    assert z_image.recognise_folder(folder) and not flux.recognise_folder(folder)
    _assert_same_forward(reference, z_image.load(folder))


def test_lumina2_layout_is_not_z_image():
    shapes = _shapes(tf.z_image_to_original(tf.tiny_z_image(seed=5)))
    lumina = {k.replace("adaLN_modulation.0", "adaLN_modulation.1"): v for k, v in shapes.items()}
    assert not z_image.recognise(lumina)


def test_grouped_kv_heads_are_refused_by_name():
    shapes = _shapes(tf.z_image_to_original(tf.tiny_z_image(seed=6)))
    shapes["layers.0.attention.qkv.weight"] = (64 + 2 * 32, 64)
    with pytest.raises(UnusableWeightsError, match="no grouped k/v heads"):
        z_image.config_from_shapes(shapes, source="gqa.safetensors")
