"""An XY Sweep node's Run Cells as Batch…, in the real window on the tiny SD checkpoint: right-click the
node, click the entry, pick a folder; one file per cell, named by the cell's values, each with the
pixels of that cell in the grid the node itself makes (run with Ctrl+Return); asking again runs nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPointF, Qt, QTimer
from PySide6.QtWidgets import QApplication
from test_batch_to_folder import patch_folder_dialog, wait_for
from test_node_colours import click_menu_path, right_click

from app.batch.manifest import Manifest
from app.settings import Settings
from nodes import builtin_registry
from nodes.diffusion.grid import grid_layout
from tests.support.model_root import TINY_NAMES
from ui import theme
from ui.autosave import AutosaveStore
from ui.batch_run import BatchDialog
from ui.canvas.editing import RUN_CELLS_TEXT
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


def build_sweep(win: MainWindow) -> dict[str, int]:
    """Checkpoint, prompts, a 64 px latent → XY Sweep (cfg 1, 7.5 × seed 1, 2; one step) → Save Image."""
    nodes = {
        "ckpt": ("CheckpointLoaderSimple", (0, 0), {"ckpt_name": TINY_NAMES["sd1"]}),
        "pos": ("CLIPTextEncode", (300, -100), {"text": "a red fox in the snow"}),
        "neg": ("CLIPTextEncode", (300, 150), {"text": "blurry"}),
        "empty": ("EmptyLatentImage", (300, 350), {"width": 64, "height": 64}),
        "sweep": (
            "XYSweep",
            (650, 0),
            {"steps": 1, "x_input": "cfg", "x_values": "1, 7.5", "y_input": "seed", "y_values": "1, 2"},
        ),
        "out": ("SaveImage", (1000, 0), {"filename_prefix": "grid"}),
    }
    ids: dict[str, int] = {}
    for role, (type_, pos, values) in nodes.items():
        nid = win.add_node(type_, QPointF(*pos))
        assert nid is not None
        for key, value in values.items():
            win.undo_stack.push(set_value_command(win.graph, nid, key, value))
        ids[role] = nid
    for a, out, b, inp, t in [
        ("ckpt", "CLIP", "pos", "clip", "CLIP"),
        ("ckpt", "CLIP", "neg", "clip", "CLIP"),
        ("ckpt", "MODEL", "sweep", "model", "MODEL"),
        ("pos", "CONDITIONING", "sweep", "positive", "CONDITIONING"),
        ("neg", "CONDITIONING", "sweep", "negative", "CONDITIONING"),
        ("empty", "LATENT", "sweep", "latent_image", "LATENT"),
        ("ckpt", "VAE", "sweep", "vae", "VAE"),
        ("sweep", "IMAGE", "out", "images", "IMAGE"),
    ]:
        win.undo_stack.push(connect_command(win.graph, ids[a], out, ids[b], inp, t))
    return ids


def answer_dialog(qtbot: Any, offered_count: list[bool]) -> None:
    """When the dialog opens: note whether it asks for a count, Choose… (patched), OK."""
    deadline = time.monotonic() + 10.0

    def poll() -> None:
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, BatchDialog):
            offered_count.append(dialog.count.isVisible())
            qtbot.mouseClick(dialog.choose, Qt.MouseButton.LeftButton)
            qtbot.mouseClick(dialog.buttons.button(dialog.buttons.StandardButton.Ok), Qt.MouseButton.LeftButton)
        elif time.monotonic() < deadline:
            QTimer.singleShot(10, poll)

    QTimer.singleShot(0, poll)


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_run_cells_as_batch_from_the_sweep_nodes_menu(
    window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop, tmp_path: Path, monkeypatch: Any
) -> None:
    win = window
    ids = build_sweep(win)
    results: list[Any] = []
    win.controller.finished.connect(results.append)
    win.view.setFocus()
    qtbot.keyClick(win.view.viewport(), Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    wait_for(qloop, lambda: bool(results), timeout=240)
    assert results[0].status == "done", results[0].error
    (grid_file,) = (tmp_path / "out").glob("grid_*.png")
    grid = rgb(grid_file)

    folder = tmp_path / "cells"
    patch_folder_dialog(monkeypatch, folder, [])
    reports: list[Any] = []
    win.controller.batchFinished.connect(reports.append)
    offered: list[bool] = []
    answer_dialog(qtbot, offered)
    win.view.centerOn(win.view.node_item(ids["sweep"]).sceneBoundingRect().center())
    item = win.view.node_item(ids["sweep"])
    menu = right_click(win.view, item.mapToScene(QPointF(40, theme.TITLE_HEIGHT / 2)))
    click_menu_path(qtbot, menu, RUN_CELLS_TEXT)
    wait_for(qloop, lambda: bool(reports), timeout=240)

    assert offered == [False]  # the cells are as many as the node's values make: no count to ask
    report = reports[0]
    assert len(report.done) == 4 and not report.failed
    records = Manifest(folder).records()
    names = [r["files"][0]["name"] for r in records]
    assert [n.rsplit("-", 1)[0] for n in names] == ["cfg=1_seed=1", "cfg=7.5_seed=1", "cfg=1_seed=2", "cfg=7.5_seed=2"]
    lay = grid_layout(2, 2, 64, 64, ["cfg 1", "cfg 7.5"], ["seed 1", "seed 2"])
    assert grid.shape == (lay.size[1], lay.size[0], 3)
    for index, name in enumerate(names):
        x, y = lay.cell_origin(index % 2, index // 2)
        assert np.array_equal(rgb(folder / name), grid[y : y + 64, x : x + 64]), name
    assert win.graph.nodes[ids["sweep"]].type == "XYSweep"  # the document keeps its sweep node

    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow)
    answer_dialog(qtbot, offered)
    menu = right_click(win.view, item.mapToScene(QPointF(40, theme.TITLE_HEIGHT / 2)))
    click_menu_path(qtbot, menu, RUN_CELLS_TEXT)
    wait_for(qloop, lambda: len(reports) == 2, timeout=60)
    assert reports[1].skipped == 4 and not reports[1].done
