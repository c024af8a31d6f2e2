"""The sampler's per-step preview is rendered off the sampling thread, from a copy of the step's x0."""

from __future__ import annotations

import threading

import numpy as np
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
