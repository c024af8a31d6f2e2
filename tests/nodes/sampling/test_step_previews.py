"""The sampler's per-step preview is rendered off the sampling thread, from a copy of the step's x0."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from graph_engine import ExecutionContext
from graph_engine.previews import PreviewWorker
from nodes.diffusion import ksampler
from nodes.diffusion.ksampler import step_reporter
from nodes.diffusion.previews import latent_to_rgb
from nodes.diffusion.sampling import StepInfo


def test_sampler_previews_render_on_the_preview_thread_and_show_the_last_step(monkeypatch) -> None:
    rendered_on: list[str] = []

    def spy(latent: torch.Tensor, family: str) -> np.ndarray:  # the real render, noting its thread
        rendered_on.append(threading.current_thread().name)
        return latent_to_rgb(latent, family)

    monkeypatch.setattr(ksampler, "latent_to_rgb", spy)
    gate = threading.Event()
    shown: list[tuple[str, np.ndarray]] = []

    def consumer(image: np.ndarray) -> None:
        assert gate.wait(30)
        shown.append((threading.current_thread().name, image))

    worker = PreviewWorker(consumer, name="preview-test")
    ctx = ExecutionContext(node_id=1, title="KSampler", on_preview=worker)
    steps = 6
    report = step_reporter(ctx, "sd1", steps)
    g = torch.Generator().manual_seed(0)
    latents = [torch.randn(2, 4, 8, 8, generator=g) for _ in range(steps)]
    buffer = torch.zeros(2, 4, 8, 8)
    for i, latent in enumerate(latents):  # the consumer is blocked for all of these: none may wait
        buffer.copy_(latent)  # one reused buffer, as a sampler may keep
        report(StepInfo(i=i, n=steps, x=buffer, sigma=1.0, sigma_next=0.5, denoised=buffer))
    buffer.zero_()  # what the preview shows must not change when the sampler reuses its buffer
    gate.set()
    worker.close()
    assert shown[-1][0] == "preview-test"
    assert rendered_on and set(rendered_on) == {"preview-test"}  # never on the sampling thread
    np.testing.assert_array_equal(shown[-1][1], latent_to_rgb(latents[-1], "sd1"))
    assert len(shown) <= 2  # the first frame in flight, then only the newest


def test_plain_callback_still_receives_a_picture() -> None:
    """Code that builds its own context with a plain callback (benchmarks, tools) gets the RGB array."""
    got: list[np.ndarray] = []
    ctx = ExecutionContext(node_id=1, title="KSampler", on_preview=got.append)
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    step_reporter(ctx, "sd1", 1)(StepInfo(i=0, n=1, x=latent, sigma=1.0, sigma_next=0.0, denoised=latent))
    assert got[0].dtype == np.uint8 and got[0].shape == (8, 8, 3)
    np.testing.assert_array_equal(got[0], latent_to_rgb(latent, "sd1"))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts the process's threads in /proc")
def test_rendering_a_preview_starts_no_threads_beside_the_sampler() -> None:
    """The preview thread runs while the sampler's next step does: a torch op there would start a second
    OpenMP team whose spinning threads take the sampler's cores (each SD1.5 step was ~15 % slower)."""
    script = """
import os, sys, threading, torch
sys.path.insert(0, sys.argv[1])
from nodes.diffusion.ksampler import step_reporter
from graph_engine import ExecutionContext
from graph_engine.previews import PreviewWorker
from nodes.diffusion.sampling import StepInfo

torch.randn(256, 256) @ torch.randn(256, 256)  # the sampling thread's own OpenMP team exists
tasks = lambda: len(os.listdir("/proc/self/task"))
seen = []
worker = PreviewWorker(lambda image: seen.append((tasks(), image.shape)), name="preview")
ctx = ExecutionContext(node_id=1, title="KSampler", on_preview=worker)
report = step_reporter(ctx, "flux", 3)
before = tasks()
latent = torch.randn(1, 16, 128, 128, dtype=torch.bfloat16)  # large enough for torch to go parallel
for i in range(3):
    report(StepInfo(i=i, n=3, x=latent, sigma=1.0, sigma_next=0.5, denoised=latent))
worker.close()
print(before, max(n for n, _ in seen), tasks(), seen[-1][1])
"""
    out = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parents[3])], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    before, during, _, shape = out.stdout.split(maxsplit=3)
    assert shape.strip() == "(128, 128, 3)"
    # Counted on the preview thread right after it rendered: itself is the only new thread. (After the
    # worker closes, its exited thread can linger in /proc for a moment: not counted.)
    assert int(during) == int(before) + 1, out.stdout
