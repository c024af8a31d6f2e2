"""The 16-channel VAE from ae.safetensors, all-in-one files and diffusers folders."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from nodes.diffusion.dit import autoencoder
from nodes.diffusion.dit.shapes import UnusableWeightsError
from tests.support import tiny_flow as tf
from tests.support.tiny_sd import build_tiny_models


def _shapes(state):
    return {k: tuple(v.shape) for k, v in state.items()}


def _round_trip(vae):
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        latent = vae.encode(image).latent_dist.mean
        return latent, vae.decode(latent).sample


@pytest.mark.parametrize(
    ("family", "prefix", "factors"),
    [
        ("flux", "", (0.3611, 0.1159)),  # ae.safetensors
        ("z_image", "", (0.3611, 0.1159)),
        ("sd3", "first_stage_model.", (1.5305, 0.0609)),
        ("flux", "vae.", (0.3611, 0.1159)),
    ],
)
def test_single_file_loads_to_the_same_autoencoder(tmp_path, family, prefix, factors):
    reference = tf.tiny_vae16(seed=1, family=family)
    path = tf.write_file(tmp_path / "ae.safetensors", tf.vae16_to_original(reference, prefix))
    shapes = _shapes(load_file(path))
    assert autoencoder.recognise(shapes)
    config = autoencoder.config_from_shapes(shapes, family)
    assert config["block_out_channels"] == [32, 32, 32, 32] and config["layers_per_block"] == 1
    assert config["latent_channels"] == 16 and not config["use_quant_conv"]

    vae = autoencoder.load(path, family)
    assert (vae.config.scaling_factor, vae.config.shift_factor) == factors
    for got, expected in zip(_round_trip(vae), _round_trip(reference), strict=True):
        assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_diffusers_folder_keeps_its_own_factors(tmp_path):
    reference = tf.tiny_vae16(seed=2, family="sd3")
    folder = tf.write_diffusers_folder(tmp_path / "sd35", vae=reference)
    assert autoencoder.recognise_folder(folder)
    vae = autoencoder.load(folder, "flux")
    assert vae.config.scaling_factor == 1.5305
    for got, expected in zip(_round_trip(vae), _round_trip(reference), strict=True):
        assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_a_4_channel_sd_vae_is_not_recognised():
    sd_vae = build_tiny_models("sd1").vae
    assert not autoencoder.recognise(_shapes(tf.vae16_to_original(sd_vae)))


def test_incomplete_vae_is_named(tmp_path):
    state = tf.vae16_to_original(tf.tiny_vae16(seed=3))
    del state["decoder.up.0.block.1.conv1.weight"]
    with pytest.raises(UnusableWeightsError, match="16-channel VAE"):
        autoencoder.load(tf.write_file(tmp_path / "ae.safetensors", state), "flux")


def test_vae_encode_and_decode_nodes_use_the_raw_latent_of_a_16_channel_vae():
    """LATENT holds the VAE's own latent (the MODEL applies (z − shift)·scale), so VAE Encode gives the
    posterior mean and VAE Decode decodes what it is given: the VAE's shift_factor is not applied on top.
    (Before, both applied it, so every FLUX/SD3/Z-Image decode was offset by it in latent space.)"""
    from graph_engine import ExecutionContext
    from nodes.diffusion.model import VAEModel
    from nodes.latent import vae_decode, vae_encode

    reference = tf.tiny_vae16(seed=1, family="flux")
    assert reference.config.shift_factor
    vae = VAEModel(reference, "ae.safetensors")
    ctx = ExecutionContext(node_id=1, title="t")
    image = torch.rand(1, 48, 64, 3, generator=torch.Generator().manual_seed(0))
    (latent,) = vae_encode.execute(ctx, pixels=image, vae=vae)
    raw = torch.randn(1, 16, 6, 8, generator=torch.Generator().manual_seed(1))
    (decoded,) = vae_decode.execute(ctx, samples={"samples": raw}, vae=vae)
    with torch.no_grad():
        mean = reference.encode(image.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mode()
        pixels = (reference.decode(raw).sample / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    assert (latent["samples"] - mean).abs().max() < 1e-5
    assert (decoded - pixels).abs().max() < 1e-5
