"""Exact and fast modes on a tiny checkpoint (fast forced to bf16 even on a CPU that only emulates it),
and one copy of each model however many loader nodes name it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from graph_engine import Executor, Graph, ResultCache, make_plan
from graph_engine.events import NodeFinished
from nodes import builtin_registry
from nodes.diffusion import compile as sd_compile
from nodes.diffusion import prepack, runtime
from nodes.diffusion.devices import cpu_has_native_bf16
from nodes.diffusion.model_manager import ModelManager
from tests.support.graphs import txt2img_graph

# bf16 keeps 8 bits of mantissa (~2-3 significant digits): over 10 euler steps on the tiny random
# model the decoded images stay within this PSNR of the fp32 ones (measured 50.6 dB
# on the AVX2 EPYC; the bound leaves room for other CPUs' bf16 kernels).
MIN_PSNR_DB = 25.0


@pytest.fixture
def fresh_manager(monkeypatch) -> ModelManager:
    mgr = ModelManager()
    monkeypatch.setattr(runtime, "_manager", mgr)
    return mgr


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def decoded_image(tmp_path, settings: dict, **ks) -> tuple[torch.Tensor, torch.dtype]:
    image, model = decoded_image_and_model(tmp_path, settings, **ks)
    return image, model.dtype


def decoded_image_and_model(tmp_path, settings: dict, **ks) -> tuple[torch.Tensor, Any]:
    registry = builtin_registry()
    g, ids = txt2img_graph("tiny_sd1.safetensors", size=32, output="PreviewImage", seed=7, steps=4, cfg=5.0, **ks)
    executor = Executor(registry, output_dir=tmp_path, cache=ResultCache(), settings=settings)
    plan = make_plan(g, registry)
    got: dict[str, object] = {}

    def grab(event):
        if isinstance(event, NodeFinished) and event.node_id in (ids["dec"], ids["ckpt"]):
            got[event.node_id] = executor.cache.get(executor.signatures(plan)[event.node_id]).outputs

    result = executor.execute(plan, on_event=grab)
    assert result.status == "done", result.error
    return got[ids["dec"]][0], got[ids["ckpt"]][0]


def test_exact_and_fast_agree_within_tolerance(tiny_models, tmp_path, fresh_manager) -> None:
    exact, exact_dtype = decoded_image(tmp_path, {"precision": "exact"})
    fast, model = decoded_image_and_model(tmp_path, {"precision": "fast", "cpu_bf16": True})
    fast_dtype = model.dtype
    assert (exact_dtype, fast_dtype) == (torch.float32, torch.bfloat16)
    if cpu_has_native_bf16():  # there fast mode runs oneDNN-prepacked weights: that path made this image
        assert prepack.packed_nbytes(model.unet) > 0
    assert exact.shape == fast.shape == (1, 32, 32, 3)
    assert not torch.equal(exact, fast)  # the bf16 path really ran
    value = psnr(exact, fast)
    print(f"tiny sd1, 32x32, 4 steps: fp32 vs bf16 PSNR {value:.1f} dB")
    assert value >= MIN_PSNR_DB


@pytest.mark.slow
def test_compiled_fast_mode_agrees_with_exact(tiny_models, tmp_path, fresh_manager) -> None:
    """The real inductor compile (freezing) of the tiny UNet: a broken compiled path must not pass."""
    exact, _ = decoded_image(tmp_path, {"precision": "exact"})
    before = len(sd_compile.compile_log)
    compiled, _ = decoded_image_and_model(tmp_path, {"precision": "fast", "cpu_bf16": True, "compile": True})
    records = sd_compile.compile_log[before:]
    assert records and all(r.ok for r in records), records  # compiled, not the eager fallback
    value = psnr(exact, compiled)
    print(f"tiny sd1, 32x32, 4 steps: fp32 vs compiled bf16 PSNR {value:.1f} dB")
    assert value >= MIN_PSNR_DB


def test_two_loader_nodes_share_one_load(tiny_models, tmp_path, fresh_manager) -> None:
    registry = builtin_registry()
    g = Graph()
    a = g.add_node("CheckpointLoaderSimple", {"ckpt_name": "tiny_sd1.safetensors"}).id
    b = g.add_node("CheckpointLoaderSimple", {"ckpt_name": "tiny_sd1.safetensors"}).id

    def run(settings: dict) -> None:
        # ResultCache(0) keeps nothing, so both nodes really execute: only the manager can share.
        executor = Executor(registry, output_dir=tmp_path, cache=ResultCache(0), settings=settings)
        plan = make_plan(g, registry, targets=[a, b])

        result = executor.execute(plan)
        assert result.status == "done", result.error
        assert set(result.executed) == {a, b}

    run({"precision": "exact"})
    assert fresh_manager.loads == 1
    assert len(fresh_manager.loaded()) == 1
    run({"precision": "exact"})
    assert fresh_manager.loads == 1  # a second run reuses it too
    # Another precision is another model (other dtypes), loaded once more, and only once.
    run({"precision": "fast", "cpu_bf16": True})
    assert fresh_manager.loads == 2
