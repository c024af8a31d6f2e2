"""The timeline panel after a real (tiny) sampler run: scrub, labels, VAE decode on the worker, export,
and the docs screenshot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtGui import QUndoStack

from graph_engine import Executor, Graph
from nodes import builtin_registry
from tests.support.graphs import txt2img_graph
from tests.support.model_root import TINY_NAMES
from ui.canvas import GraphView
from ui.images import qimage_to_array
from ui.panels.timeline import TimelinePanel, attach, find_vae_source
from ui.run_controller import RunController

ROOT = Path(__file__).parents[3]
STEPS = 6


def sampler_graph(size: int = 128) -> tuple[Graph, int]:
    g, ids = txt2img_graph(
        TINY_NAMES["sd1"], prompt="a lighthouse at dusk", size=size, output="PreviewImage", seed=4, steps=STEPS, cfg=7.5
    )
    ks = ids["ks"]
    return g, ks


@pytest.fixture
def session(qtbot, qloop, tiny_models, tmp_path):
    graph, ks = sampler_graph()
    registry = builtin_registry()
    stack = QUndoStack()
    view = GraphView(graph, registry, stack)
    qtbot.addWidget(view)
    controller = RunController(graph, registry, view, executor=Executor(registry, output_dir=tmp_path / "out"))
    panel = TimelinePanel()
    panel.resize(560, 420)
    qtbot.addWidget(panel)
    attach(panel, controller, live=False)
    result = qloop.run_until_complete(controller.run())
    assert result is not None and result.status == "done", result and result.error
    yield panel, controller, ks, qloop, stack
    controller.shutdown()


def test_panel_scrubs_the_recorded_run(session):
    panel = session[0]
    assert len(panel.frames) == STEPS + 1
    assert panel.current == STEPS  # it opens on the result
    assert panel.labels()["step"] == f"step {STEPS} / {STEPS}"
    assert panel.labels()["sigma"] == "σ 0.0000"
    panel.slider.setValue(0)
    assert panel.labels()["step"] == f"step 0 / {STEPS}"
    assert float(panel.labels()["t"].split()[1]) == pytest.approx(999, abs=0.1)
    assert panel.x0_view.image().isNull()  # nothing predicted before the first step
    assert not panel.x_view.image().isNull()
    panel.slider.setValue(3)
    t3 = float(panel.labels()["t"].split()[1])
    assert 0 < t3 < 999
    assert qimage_to_array(panel.x_view.image()).shape == (16, 16, 3)


def test_decode_with_vae_runs_on_the_worker(session, qtbot):
    panel, controller, _, qloop, _ = session
    panel.slider.setValue(STEPS)
    assert panel.decode_button.isEnabled()
    with qtbot.waitSignal(panel.decoded, timeout=60_000):
        task = panel.request_decode()
        assert task is not None
        qloop.run_until_complete(task)
    decoded = qimage_to_array(panel.x0_view.image())
    assert decoded.shape == (128, 128, 3)
    # The VAE came from the cache of the run's executor: the checkpoint was not loaded again.
    assert find_vae_source(controller.graph, panel._node_id) == (1, "VAE")


def test_export_gif_has_one_frame_per_step_plus_start(session, tmp_path):
    panel = session[0]
    path = tmp_path / "timeline.gif"
    assert panel.export(path) == STEPS + 1
    with Image.open(path) as img:
        assert img.n_frames == STEPS + 1
        assert img.size == panel.image_size == (128, 128)  # the image's size, not the latent previews'


def test_screenshot_for_the_docs(session, qtbot, tmp_path):
    panel, _, _, qloop, _ = session
    panel.slider.setValue(STEPS // 2)
    panel.show()
    qtbot.waitExposed(panel)
    with qtbot.waitSignal(panel.decoded, timeout=60_000):
        qloop.run_until_complete(panel.request_decode())
    qtbot.wait(50)
    # The docs' copy is refreshed only on request, so a test run never edits the repository.
    folder = ROOT / "docs" / "screenshots" if os.environ.get("SDGRAPH_SAVE_SCREENSHOTS") else tmp_path
    out = folder / "timeline.png"
    assert panel.grab().save(str(out))
    image = Image.open(out)
    assert image.size[0] >= 400
    assert len(set(image.convert("RGB").getdata())) > 50  # a drawn panel with pictures, not a blank widget


def test_find_vae_source_follows_the_latent():
    graph, ks = sampler_graph()
    assert find_vae_source(graph, ks) == (1, "VAE")
    assert find_vae_source(Graph(), None) is None
