"""Two graphs sampling one shared UNet with different LoRAs at once, on two threads, must not mix.

The patches are hooks on the shared modules; each thread must see only the patches of the handle it is
running. Each thread calls ``predict`` through its own handle many times while the other does the same;
every result must equal the one that handle gives when run alone.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch
from torch import Tensor

from nodes.diffusion.lora import apply_lora, load_lora
from nodes.diffusion.model import DiffusionModel
from tests.nodes.lora.lora_support import KOHYA_DIFFUSERS_NAMES, LoraWriter, unet_out
from tests.support.tiny_sd import TinyModels

ROUNDS = 12


def test_two_threads_with_different_loras(sd1: TinyModels, sd1_model: DiffusionModel, tmp_path: Path) -> None:
    handles: list[DiffusionModel] = [sd1_model]
    for seed in (1, 2):
        w = LoraWriter(seed=seed)
        for base, module in KOHYA_DIFFUSERS_NAMES:
            w.kohya(sd1.unet, module, base, alpha=4.0)
        handles.append(apply_lora(sd1_model, None, load_lora(w.save(tmp_path / f"{seed}.safetensors")), 1.0, 0.0)[0])
    with torch.inference_mode():
        alone = [unet_out(h) for h in handles]
    for i in range(3):
        for j in range(i):
            assert (alone[i] - alone[j]).abs().max() > 1e-2  # three really different models

    results: dict[int, list[Tensor]] = {i: [] for i in range(len(handles))}
    errors: list[BaseException] = []
    start = threading.Barrier(len(handles))

    def run(i: int) -> None:
        try:
            start.wait()
            with torch.inference_mode():
                for _ in range(ROUNDS):
                    results[i].append(unet_out(handles[i]))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(handles))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    for i, outs in results.items():
        assert len(outs) == ROUNDS
        worst = max(float((o - alone[i]).abs().max()) for o in outs)
        assert worst <= 1e-6, f"handle {i} mixed with another thread's LoRA (max diff {worst})"
    # Nothing is left hooked on the shared modules afterwards.
    assert all(not m._forward_hooks for m in sd1.unet.modules())
