"""The whole program at once: build txt2img in the window with its own commands, run it with the real
Ctrl+Return shortcut on tiny checkpoints, and see the image in the Save Image node and the image panel."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPointF, Qt, QTimer
from PySide6.QtGui import QImage

from app.settings import Settings
from nodes import builtin_registry
from tests.support.graphs import TXT2IMG_LINKS
from tests.support.model_root import TINY_NAMES
from ui.autosave import AutosaveStore
from ui.commands import connect_command, set_value_command
from ui.main_window import MainWindow


@pytest.fixture
def window(qtbot: Any, tmp_path: Path, sdgraph_home: Path, tiny_models: Path) -> MainWindow:
    store = AutosaveStore(sdgraph_home / "autosave")
    store.start_session()
    win = MainWindow(builtin_registry(), Settings(output_dir=str(tmp_path / "out")), autosave=store)
    qtbot.addWidget(win, before_close_func=lambda w: setattr(w, "prompt_on_close", False))
    win.show()
    qtbot.waitExposed(win)
    win.new_document()
    return win


def build_txt2img(win: MainWindow) -> dict[str, int]:
    """Every node added and wired through the window's undoable commands, as the library and canvas do."""
    nodes = {
        "ckpt": ("CheckpointLoaderSimple", (0, 0), {"ckpt_name": TINY_NAMES["sd1"]}),
        "pos": ("CLIPTextEncode", (300, -100), {"text": "a red fox in the snow"}),
        "neg": ("CLIPTextEncode", (300, 150), {"text": "blurry"}),
        "empty": ("EmptyLatentImage", (300, 350), {"width": 64, "height": 64}),
        "ks": ("KSampler", (650, 0), {"steps": 6, "seed": 11}),
        "dec": ("VAEDecode", (950, 0), {}),
        "out": ("SaveImage", (1200, 0), {"filename_prefix": "gui"}),
    }
    ids: dict[str, int] = {}
    for role, (type_, pos, values) in nodes.items():
        nid = win.add_node(type_, QPointF(*pos))
        assert nid is not None
        for key, value in values.items():
            win.undo_stack.push(set_value_command(win.graph, nid, key, value))
        ids[role] = nid
    for a, out, b, inp, t in [*TXT2IMG_LINKS, ("ckpt", "CLIP", "neg", "clip", "CLIP")]:
        win.undo_stack.push(connect_command(win.graph, ids[a], out, ids[b], inp, t))
    return ids


def test_txt2img_from_the_window(window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop) -> None:
    ids = build_txt2img(window)
    assert window.is_dirty()
    previews: list[QImage] = []
    window.controller.previewChanged.connect(lambda nid, img: previews.append(img))
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)

    results: list[Any] = []
    window.controller.finished.connect(results.append)
    window.view.setFocus()
    qtbot.keyClick(window.view.viewport(), Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)

    async def until_done() -> None:
        deadline = time.perf_counter() + 240
        while not results and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)

    qloop.run_until_complete(until_done())
    timer.stop()
    (result,) = results
    assert result.status == "done", result.error
    # The image is in the Save Image node and in the image panel, and it is a real picture.
    (image,) = window.view.node_item(ids["out"]).images
    assert (image.width(), image.height()) == (64, 64)
    (path,) = window.images.image_paths()
    assert Path(path).name == "gui_00001_.png"
    colors = {image.pixel(x, y) for x in range(0, 64, 8) for y in range(0, 64, 8)}
    assert len(colors) > 10
    # Live previews of the latent arrived while sampling, and the window never froze.
    assert previews and previews[-1].width() == 8
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(gaps) < 0.1, f"the event loop stalled for {max(gaps) * 1000:.0f} ms"
    # Every node ended as done.
    assert {window.view.node_item(n).run_state for n in ids.values()} == {"done"}
    # The run is in the history, found by its checkpoint and its positive prompt (not the negative one).
    window.history.refresh()
    history = window.history_store
    assert history is not None
    (run,) = history.list(query="red fox", model=TINY_NAMES["sd1"])
    assert run.prompt == "a red fox in the snow" and history.list(query="blurry") == []
    assert [(Path(i.path).name, i.width, i.height, i.node_id) for i in run.images] == [
        ("gui_00001_.png", 64, 64, ids["out"])
    ]
    assert window.history.item_count() == 1
    # Its graph is the one that ran: the seed used, not the one the seed control moved on to since.
    recorded = history.workflow(run.id)
    assert recorded is not None
    (sampler,) = [n for n in recorded["nodes"] if n["type"] == "KSampler"]
    assert sampler["inputs"]["seed"] == 11
