"""A transformer larger than the model budget is streamed block by block from its file, not refused.

The oracle for the numbers is the same file loaded whole: streaming changes where each weight lives
between calls, never what a call computes, so the outputs must be bit-identical. The memory check
runs a mid-size FLUX-shaped model (about 1 GB in bf16) in a fresh process and compares the growth of
its peak RSS during one forward pass, streamed and loaded whole; the whole model touches every page
of the mapped file, the streamed one about one block at a time.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from graph_engine import ExecutionContext
from nodes.diffusion import runtime
from nodes.diffusion.dit.loading import load_transformer
from nodes.diffusion.dit.streaming import blocks_of
from nodes.diffusion.loading import load_diffusion_model
from nodes.folders import model_folders
from tests.support import tiny_flow as tf
from tests.support.model_root import FLOW_FILES

ROOT = Path(__file__).resolve().parents[3]
CTX = ExecutionContext(node_id=1, title="Load Diffusion Model")
FAMILIES = {
    "flux": (tf.tiny_flux, tf.flux_to_original),
    "sd3": (tf.tiny_sd3, tf.sd3_to_original),
    "z_image": (tf.tiny_z_image, tf.z_image_to_original),
}


@pytest.fixture
def flow_models(tiny_model_root: Path, tiny_flow_root: Path) -> Iterator[Path]:
    import nodes.folders

    nodes.folders.configure(extra_roots=[str(tiny_model_root), str(tiny_flow_root)])
    yield tiny_flow_root
    nodes.folders.configure()


def _in_dtype(inputs: dict, dtype: torch.dtype) -> dict:
    def cast(v: object) -> object:
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v.to(dtype)
        if isinstance(v, list):
            return [cast(x) for x in v]
        return v

    return {k: cast(v) for k, v in inputs.items()}


@pytest.mark.parametrize("compute", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_streamed_transformer_computes_exactly_what_the_loaded_one_does(
    tmp_path: Path, family: str, compute: torch.dtype
) -> None:
    builder, to_original = FAMILIES[family]
    reference = builder(3)
    path = tf.write_file(tmp_path / "model_bf16.safetensors", to_original(reference), dtype=torch.bfloat16)
    whole = load_transformer(path, dtype=compute)
    streamed = load_transformer(path, dtype=compute, stream=True)
    assert whole.streamer is None and streamed.streamer is not None
    inputs = _in_dtype(tf.example_inputs(reference, seed=1), compute)
    want = tf.forward(whole.network, inputs)
    first, second = tf.forward(streamed.network, inputs), tf.forward(streamed.network, inputs)
    assert first.dtype == compute
    assert torch.equal(first, want) and torch.equal(second, want)
    # Between calls every block holds its weights as the file stores them (bf16, mapped), and the
    # pages a call touched were handed back.
    for block in blocks_of(streamed.network):
        assert {p.dtype for p in block.parameters()} == {torch.bfloat16}
    assert streamed.streamer.released_bytes > 0
    # The manager budgets what stays resident: less than the whole model in the compute dtype.
    tensors = [*whole.network.parameters(), *whole.network.buffers()]
    assert streamed.nbytes() < sum(t.numel() for t in tensors) * compute.itemsize


@pytest.mark.parametrize("kind", ["gguf_q8_0", "scaled_fp8"])
def test_quantized_files_stream_to_the_same_output(tmp_path: Path, kind: str) -> None:
    """GGUF linears (uint8 blocks dequantized per call) and scaled fp8 linears (own dtypes) are moved,
    never cast, by the streamer: the output equals the whole model's."""
    from safetensors.torch import save_file

    from tests.support.gguf_files import write_gguf
    from tests.support.scaled_fp8_files import to_scaled_fp8

    reference = tf.tiny_flux(5)
    original = tf.flux_to_original(reference)
    if kind == "gguf_q8_0":
        path, _ = write_gguf(tmp_path / "flux-Q8_0.gguf", original, "Q8_0")
    else:
        scaled, _ = to_scaled_fp8({k: v.contiguous() for k, v in original.items()})
        path = tmp_path / "flux_fp8_scaled.safetensors"
        save_file(scaled, str(path))
    inputs = _in_dtype(tf.example_inputs(reference, seed=2), torch.bfloat16)
    whole = load_transformer(path, dtype=torch.bfloat16)
    streamed = load_transformer(path, dtype=torch.bfloat16, stream=True)
    want = tf.forward(whole.network, inputs)
    assert torch.equal(tf.forward(streamed.network, inputs), want)
    assert torch.equal(tf.forward(streamed.network, inputs), want)


def test_a_model_over_the_budget_is_streamed_and_the_user_told_once(
    flow_models: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runtime.manager(), "budget_bytes", 1024)
    name = FLOW_FILES["flux1-dev.safetensors"]
    with caplog.at_level(logging.WARNING, logger="nodes.diffusion.loading"):
        model = load_diffusion_model(CTX, name, "default")
        again = load_diffusion_model(CTX, name, "default")
    told = [r.getMessage() for r in caplog.records if "larger than the model budget" in r.getMessage()]
    size = model_folders().resolve("diffusion_models", name).stat().st_size
    assert told == [
        f"{name} ({size / 1e9:.1f} GB) is larger than the model budget (0.0 GB): streaming its layers "
        "from disk; expect slower steps"
    ]
    assert again.unet is model.unet  # cached like any model
    assert getattr(model.unet, "_sdgraph_streamer", None) is not None


_MEASURE = """
import json, os, sys, torch
from nodes.diffusion.dit.loading import load_transformer
torch.set_num_threads(1)
def peak():
    with open("/proc/self/status") as f:
        return int(next(x for x in f if x.startswith("VmHWM:")).split()[1]) * 1024
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
path, width = sys.argv[1], int(sys.argv[2])
g = torch.Generator().manual_seed(0)
inputs = dict(hidden_states=torch.randn(1, 16, 64, generator=g, dtype=torch.float32).bfloat16(),
    encoder_hidden_states=torch.randn(1, 8, 512, generator=g).bfloat16(),
    pooled_projections=torch.randn(1, 64, generator=g).bfloat16(), timestep=torch.tensor([0.5]).bfloat16(),
    img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(8, 3))
out = {}
for stream in (True, False):  # streamed first: the whole model's peak would hide it
    loaded = load_transformer(path, dtype=torch.bfloat16, stream=stream)
    base = rss()
    with torch.inference_mode():
        loaded.network(**inputs)
    out["streamed" if stream else "whole"] = peak() - base
    del loaded
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the peak RSS")
def test_streaming_bounds_the_memory_a_forward_pass_touches(tmp_path: Path) -> None:
    from diffusers import FluxTransformer2DModel

    width = 768  # 6 double + 10 single blocks: ~0.21 B parameters, ~0.43 GB in bf16
    config = dict(tf.tiny_flux_config(guidance=False), num_layers=6, num_single_layers=10)
    config.update(attention_head_dim=128, num_attention_heads=width // 128, joint_attention_dim=512)
    config.update(axes_dims_rope=(16, 56, 56))
    with torch.device("meta"):
        model = FluxTransformer2DModel.from_config(config)
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.02, 0.02)
    path = tf.write_file(tmp_path / "mid_flux.safetensors", tf.flux_to_original(model))
    del model
    size = path.stat().st_size
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), str(width)], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert run.returncode == 0, run.stderr[-2000:]
    grew = json.loads(run.stdout.strip().splitlines()[-1])
    assert grew["whole"] > 0.8 * size  # the check can fail: loaded whole, a pass touches every page
    assert grew["streamed"] < 0.25 * size, (grew, size)
