"""GGUF-quantized transformers: a tiny model quantized with the ``gguf`` package must compute exactly what
the same network built from the dequantized weights computes (the quantization error is the format's,
not ours), stay within a stated tolerance of the float model, and keep its linear weights quantized in
memory (dequantized per call, never as a whole copy)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from graph_engine import ExecutionContext, Executor, Graph, InputError
from nodes import builtin_registry
from nodes.diffusion.dit.loading import load_transformer
from nodes.diffusion.errors import ModelError
from nodes.diffusion.gguf import GGUFLinear, QuantizedWeight, read_gguf
from tests.support import tiny_flow as tf
from tests.support.gguf_files import write_gguf
from tests.support.model_root import FLOW_FILES

CTX = ExecutionContext(node_id=1, title="Unet Loader (GGUF)")
FAMILIES = {
    "flux": (tf.tiny_flux, tf.flux_to_original),
    "sd3": (tf.tiny_sd3, tf.sd3_to_original),
    "z_image": (tf.tiny_z_image, tf.z_image_to_original),
}
#: Largest |quantized - float| output difference, relative to the float output's largest magnitude.
FORMAT_TOLERANCE = {"Q8_0": 0.02, "Q4_0": 0.25}


def _quantized_layers(network: torch.nn.Module) -> list[GGUFLinear]:
    return [m for m in network.modules() if isinstance(m, GGUFLinear)]


@pytest.mark.parametrize(
    ("family", "qtype"), [("flux", "Q8_0"), ("flux", "Q4_0"), ("sd3", "Q8_0"), ("z_image", "Q4_0")]
)
def test_quantized_model_equals_the_dequantized_network_and_stays_quantized(
    tmp_path: Path, family: str, qtype: str
) -> None:
    builder, to_original = FAMILIES[family]
    reference = builder(4)
    original = to_original(reference)
    path, dequantized = write_gguf(tmp_path / f"tiny_{family}-{qtype}.gguf", original, qtype)
    loaded = load_transformer(path, dtype=torch.float32)
    exact = load_transformer(tf.write_file(tmp_path / "dequantized.safetensors", dequantized), dtype=torch.float32)

    inputs = tf.example_inputs(reference)
    out, want, floats = (tf.forward(m, inputs) for m in (loaded.network, exact.network, reference))
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    error = (out - floats).abs().max() / floats.abs().max()
    assert 0 < error < FORMAT_TOLERANCE[qtype], f"{qtype} is {error:.4f} off the float model"

    # The quantized linear weights stay quantized: no float weight. Only quantized tensors that are not a
    # linear's weight (Z-Image's one-row pad tokens) are dequantized at load, a tiny share of the bytes.
    layers = _quantized_layers(loaded.network)
    quantized = sum(v.nbytes for v in read_gguf(path).values() if isinstance(v, QuantizedWeight))
    kept = sum(m.qweight.numel() for m in layers)
    assert layers and (kept == quantized if family == "flux" else 0.99 * quantized < kept <= quantized)
    assert all(m.qweight.dtype == torch.uint8 and "weight" not in m._parameters for m in layers)
    floats_bytes = sum(t.numel() * 4 for t in original.values())
    assert loaded.nbytes() < floats_bytes * (0.4 if qtype == "Q8_0" else 0.3)


@pytest.mark.parametrize("qtype", ["Q4_K", "Q5_K", "Q6_K"])
def test_k_quants_dequantize_per_call_like_the_gguf_package(tmp_path: Path, qtype: str) -> None:
    """K-quants (blocks of 256) on the layers wide enough for them, Q8_0 elsewhere, as mixed files have.
    The gguf package cannot quantize to K-quants, so those layers hold random valid blocks instead of the
    model's weights: the check is that the loaded model computes what the dequantized file describes."""
    reference = tf.tiny_flux(5)
    original = tf.flux_to_original(reference)
    path, dequantized = write_gguf(
        tmp_path / f"mixed-{qtype}.gguf",
        original,
        lambda _, t: qtype if t.ndim == 2 and t.shape[1] % 256 == 0 else "Q8_0",
    )
    kinds = {v.type_name for v in read_gguf(path).values() if isinstance(v, QuantizedWeight)}
    assert kinds == {qtype, "Q8_0"}
    loaded = load_transformer(path, dtype=torch.float32)
    exact = load_transformer(tf.write_file(tmp_path / "dequantized.safetensors", dequantized), dtype=torch.float32)
    inputs = tf.example_inputs(reference)
    torch.testing.assert_close(
        tf.forward(loaded.network, inputs), tf.forward(exact.network, inputs), rtol=1e-5, atol=1e-5
    )


def test_torch_dequantization_of_q8_0_and_q4_0_matches_the_gguf_package() -> None:
    """The on-device kernels for the two common types against ``gguf.quants.dequantize`` itself."""
    import numpy as np
    from gguf import GGMLQuantizationType, quants

    data = np.random.default_rng(0).standard_normal((6, 128)).astype(np.float32) * 3
    for name in ("Q8_0", "Q4_0"):
        q = GGMLQuantizationType[name]
        raw = quants.quantize(data, q)
        weight = QuantizedWeight(torch.from_numpy(raw), int(q), data.shape)
        torch.testing.assert_close(weight.dequantize(), torch.from_numpy(quants.dequantize(raw, q)), rtol=0, atol=0)
        top, bottom = weight.split([2, 4])  # rows are whole blocks: the split of the bytes is the split of values
        torch.testing.assert_close(torch.cat([top.dequantize(), bottom.dequantize()]), weight.dequantize())


@pytest.fixture
def gguf_root(tmp_path: Path) -> Iterator[Path]:
    import nodes.folders

    root = tmp_path / "models"
    write_gguf(root / "diffusion_models" / "flux1-dev-Q8_0.gguf", tf.flux_to_original(tf.tiny_flux(1)), "Q8_0")
    write_gguf(root / "unet" / "flux1-schnell-Q4_0.gguf", tf.flux_to_original(tf.tiny_flux(2, guidance=False)), "Q4_0")
    tf.write_file(root / "diffusion_models" / "plain.safetensors", tf.flux_to_original(tf.tiny_flux(3)))
    nodes.folders.configure(extra_roots=[str(root)])
    yield root
    nodes.folders.configure()


def test_unet_loader_gguf_and_unet_loader_read_gguf_files(gguf_root: Path) -> None:
    from nodes.loaders import _gguf_models, unet_loader, unet_loader_gguf

    assert builtin_registry().get("UnetLoaderGGUF") is not None
    assert _gguf_models() == ["flux1-dev-Q8_0.gguf", "flux1-schnell-Q4_0.gguf"]  # models/unet too, only .gguf
    (dev,) = unet_loader_gguf.execute(CTX, "flux1-dev-Q8_0.gguf")
    (schnell,) = unet_loader.execute(CTX, "flux1-schnell-Q4_0.gguf", "default")
    assert dev.family == "flux" and _quantized_layers(dev.unet) and _quantized_layers(schnell.unet)
    assert {m.quantized.type_name for m in _quantized_layers(schnell.unet)} == {"Q4_0"}
    with pytest.raises(InputError, match=r"not a \.gguf file"):
        unet_loader_gguf.execute(CTX, "plain.safetensors")


def test_a_quant_type_the_package_cannot_dequantize_is_named(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    original = tf.flux_to_original(tf.tiny_flux(1))
    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "flux")
    for name, tensor in original.items():
        if name == "img_in.weight":  # Q8_1: 40-byte blocks of 32 values; gguf has no dequantizer for it
            rows, cols = tensor.shape
            writer.add_tensor(
                name, np.zeros((rows, cols // 32 * 40), np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q8_1
            )
        else:
            writer.add_tensor(name, tensor.float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelError, match=r"img_in\.weight is quantized as Q8_1, which the installed gguf package"):
        load_transformer(path)


def test_a_tensor_stored_reshaped_is_read_in_its_recorded_shape(tmp_path: Path) -> None:
    """ComfyUI-GGUF's converter stores some tensors reshaped and records ``comfy.gguf.orig_shape.<name>``:
    the values are the same in the same order, read back in the original shape (dequantized at load)."""
    import gguf
    from gguf import GGMLQuantizationType, quants

    reference = tf.tiny_flux(6)
    original = tf.flux_to_original(reference)
    path = tmp_path / "reshaped.gguf"
    writer = gguf.GGUFWriter(str(path), "flux")
    dequantized = {}
    for name, tensor in original.items():
        data = tensor.float().numpy()
        if name == "img_in.weight":  # [64, 64] stored as [32, 128] Q8_0
            raw = quants.quantize(data.reshape(32, 128), GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, raw, raw_dtype=GGMLQuantizationType.Q8_0)
            writer.add_array(f"comfy.gguf.orig_shape.{name}", list(data.shape))
            dequantized[name] = torch.from_numpy(quants.dequantize(raw, GGMLQuantizationType.Q8_0)).reshape(64, 64)
        else:
            writer.add_tensor(name, data)
            dequantized[name] = tensor.float()
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert read_gguf(path)["img_in.weight"].shape == (64, 64)
    loaded = load_transformer(path, dtype=torch.float32)
    exact = load_transformer(tf.write_file(tmp_path / "dequantized.safetensors", dequantized), dtype=torch.float32)
    inputs = tf.example_inputs(reference)
    torch.testing.assert_close(
        tf.forward(loaded.network, inputs), tf.forward(exact.network, inputs), rtol=1e-5, atol=1e-5
    )


def test_sampling_a_gguf_flux_equals_sampling_its_dequantized_weights(tiny_flow_root: Path, tmp_path: Path) -> None:
    """The whole graph (UnetLoaderGGUF → KSampler with FLUX text encoders): the latent equals the one the
    same graph makes from a safetensors file of the dequantized weights."""
    import nodes.folders

    root = tmp_path / "models"
    _, dequantized = write_gguf(root / "unet" / "dev-Q4_0.gguf", tf.flux_to_original(tf.tiny_flux(7)), "Q4_0")
    tf.write_file(root / "diffusion_models" / "dev-dequantized.safetensors", dequantized)
    nodes.folders.configure(extra_roots=[str(tiny_flow_root), str(root)])
    try:
        latents = []
        for loader, values in (
            ("UnetLoaderGGUF", {"unet_name": "dev-Q4_0.gguf"}),
            ("UNETLoader", {"unet_name": "dev-dequantized.safetensors", "weight_dtype": "default"}),
        ):
            g = Graph()
            unet = g.add_node(loader, values).id
            clip = g.add_node(
                "DualCLIPLoader",
                {
                    "clip_name1": FLOW_FILES["t5xxl_fp16.safetensors"],
                    "clip_name2": FLOW_FILES["clip_l.safetensors"],
                    "type": "flux",
                },
            ).id
            pos = g.add_node("CLIPTextEncode", {"text": "a cat"}).id
            g.add_link(clip, "CLIP", pos, "clip", "CLIP")
            latent = g.add_node("EmptySD3LatentImage", {"width": 64, "height": 64, "batch_size": 1}).id
            params = {"seed": 3, "steps": 3, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}
            ks = g.add_node("KSampler", params).id
            for src, out, inp in [
                (unet, "MODEL", "model"),
                (pos, "CONDITIONING", "positive"),
                (pos, "CONDITIONING", "negative"),
                (latent, "LATENT", "latent_image"),
            ]:
                g.add_link(src, out, ks, inp, out)
            result = Executor(builtin_registry(), output_dir=tmp_path).run(g, targets=[ks])
            assert result.status == "done", result.error
            latents.append(result.outputs[ks][0]["samples"])
    finally:
        nodes.folders.configure()
    assert latents[0].abs().max() > 0
    torch.testing.assert_close(latents[0], latents[1], rtol=1e-4, atol=1e-4)
