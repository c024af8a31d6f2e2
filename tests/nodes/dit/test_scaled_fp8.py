"""ComfyUI "scaled fp8" transformers: a tiny model converted as the published files are (per layer
``scale = amax/448``, ``weight = (w / scale).to(float8_e4m3fn)``) must compute exactly what the same network
built from the dequantized weights (``fp8.float() * scale``) computes, stay within fp8's error of the float
model, and keep its linear weights in fp8 in memory (scaled per call, never as a whole float copy)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nodes.diffusion.dit.loading import load_transformer
from nodes.diffusion.dit.shapes import UnusableWeightsError
from nodes.diffusion.scaled_fp8 import ScaledFp8Linear
from tests.support import tiny_flow as tf
from tests.support.scaled_fp8_files import to_scaled_fp8

FAMILIES = {  # builder, converter to the original layout, the original layout's prefix
    "flux": (tf.tiny_flux, tf.flux_to_original, ""),
    "sd3": (tf.tiny_sd3, tf.sd3_to_original, tf.DIFFUSION_PREFIX),  # all-in-one checkpoint names
    "z_image": (tf.tiny_z_image, tf.z_image_to_original, ""),
}
#: Largest |scaled fp8 - float| output difference relative to the float output's largest magnitude.
#: e4m3fn keeps 3 mantissa bits (a weight is off by up to 1/16 of itself), compounded over the layers;
#: measured 4.1 % (FLUX), 3.0 % (SD3), 7.3 % (Z-Image). The plain fp8 test allows the same 10 %.
FP8_TOLERANCE = 0.1


def _scaled_layers(network: torch.nn.Module) -> list[ScaledFp8Linear]:
    return [m for m in network.modules() if isinstance(m, ScaledFp8Linear)]


@pytest.mark.parametrize("family", FAMILIES)
def test_scaled_model_equals_the_dequantized_network_and_stays_fp8(tmp_path: Path, family: str) -> None:
    builder, to_original, prefix = FAMILIES[family]
    reference = builder(4)
    original = to_original(reference)
    scaled, dequantized = to_scaled_fp8(original, prefix, scale_input=True)
    path = tf.write_file(tmp_path / f"tiny_{family}_fp8_scaled.safetensors", scaled)
    loaded = load_transformer(path, dtype=torch.float32)
    exact = load_transformer(tf.write_file(tmp_path / "dequantized.safetensors", dequantized), dtype=torch.float32)

    inputs = tf.example_inputs(reference)
    out, want, floats = (tf.forward(m, inputs) for m in (loaded.network, exact.network, reference))
    assert torch.equal(out, want)  # scale_input is not applied: see nodes/diffusion/scaled_fp8.py
    error = (out - floats).abs().max() / floats.abs().max()
    assert 0 < error < FP8_TOLERANCE, f"scaled fp8 is {error:.4f} off the float model"

    # Every scaled weight is held once, in fp8, by ScaledFp8Linears (more of them than scales: a fused
    # qkv is split into three layers sharing one scale); no parameter is an fp8 upcast.
    layers = _scaled_layers(loaded.network)
    assert len(layers) >= sum(1 for k in scaled if k.endswith(".scale_weight")) > 0
    assert {m.fp8_weight.dtype for m in layers} == {torch.float8_e4m3fn}
    assert {m.scale_weight.dtype for m in layers} == {torch.float32}
    assert all("weight" not in m._parameters for m in layers)
    fp8_bytes = sum(t.numel() for k, t in scaled.items() if t.dtype == torch.float8_e4m3fn and k.endswith(".weight"))
    assert sum(m.fp8_weight.numel() for m in layers) == fp8_bytes  # one byte each, nothing copied up
    floats_bytes = sum(t.numel() * 4 for t in original.values())
    assert loaded.nbytes() < floats_bytes * 0.4


def test_bf16_compute_rounds_the_scaled_weight_once(tmp_path: Path) -> None:
    """In bf16 the layer computes ``(fp8.float() * scale).to(bf16)``: the same weight a bf16 model made from
    the float32 dequantized file uses, so the outputs are equal; the fp8 buffers stay fp8 after the call."""
    reference = tf.tiny_flux(6)
    scaled, dequantized = to_scaled_fp8(tf.flux_to_original(reference))
    loaded = load_transformer(tf.write_file(tmp_path / "scaled.safetensors", scaled), dtype=torch.bfloat16)
    exact = load_transformer(tf.write_file(tmp_path / "deq.safetensors", dequantized), dtype=torch.bfloat16)
    inputs = {k: v.to(torch.bfloat16) if torch.is_tensor(v) and v.is_floating_point() else v
              for k, v in tf.example_inputs(reference).items()}  # fmt: skip
    out, want = tf.forward(loaded.network, inputs), tf.forward(exact.network, inputs)
    assert out.dtype == torch.bfloat16 and torch.equal(out, want)
    assert {m.fp8_weight.dtype for m in _scaled_layers(loaded.network)} == {torch.float8_e4m3fn}


def test_unet_loader_runs_a_scaled_file(tmp_path: Path) -> None:
    """Through Load Diffusion Model (UNETLoader) as a workflow uses it."""
    import nodes.folders
    from graph_engine import ExecutionContext
    from nodes.loaders import unet_loader

    root = tmp_path / "models"
    scaled, _ = to_scaled_fp8(tf.flux_to_original(tf.tiny_flux(2)))
    tf.write_file(root / "diffusion_models" / "flux1-dev-fp8-scaled.safetensors", scaled)
    nodes.folders.configure(extra_roots=[str(root)])
    try:
        (model,) = unet_loader.execute(
            ExecutionContext(node_id=1, title="Load Diffusion Model"), "flux1-dev-fp8-scaled.safetensors", "default"
        )
    finally:
        nodes.folders.configure()
    assert model.family == "flux" and _scaled_layers(model.unet)


def test_a_scale_that_is_not_one_positive_number_is_refused(tmp_path: Path) -> None:
    scaled, _ = to_scaled_fp8(tf.flux_to_original(tf.tiny_flux(1)))
    scaled["img_in.scale_weight"] = torch.tensor([1.0, 2.0])
    with pytest.raises(UnusableWeightsError, match=r"img_in\.scale_weight should be one positive number"):
        load_transformer(tf.write_file(tmp_path / "bad.safetensors", scaled))
