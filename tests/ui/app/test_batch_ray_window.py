"""Run ▸ Batch to Folder… on a Ray cluster, from the real window: tick "On a Ray cluster" in the dialog,
and the runs are made by Ray actors (other processes) on the tiny SD checkpoint, with the same files and
manifest as in-process; the window keeps painting while the workers start. Slow: actors load torch."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication
from test_batch_to_folder import patch_folder_dialog, wait_for
from test_gui_txt2img import build_txt2img, window  # noqa: F401  (the fixture)

from app.batch.manifest import Manifest
from ui.batch_run import BatchDialog, ray_available
from ui.main_window import MainWindow

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'sdgraph[cluster]'")
pytestmark = pytest.mark.slow


def test_batch_to_folder_on_a_ray_cluster(
    window: MainWindow,  # noqa: F811
    qtbot: Any,
    qloop: asyncio.AbstractEventLoop,
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    win = window
    ids = build_txt2img(win)
    win.graph.set_value(ids["ks"], "steps", 1)
    win.graph.nodes[ids["ks"]].extra["control_after_generate"] = "increment"
    folder = tmp_path / "batch"
    patch_folder_dialog(monkeypatch, folder, [])
    # A cluster of 2 CPUs (2 actors) that the batch joins with "auto", as it would join RAY_ADDRESS's.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    reports: list[Any] = []
    win.controller.batchFinished.connect(reports.append)
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(20)
    ray_box: list[bool] = []

    def answer() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, BatchDialog):
            QTimer.singleShot(10, answer)
            return
        ray_box.append(dialog.use_ray.isEnabled())
        qtbot.mouseClick(dialog.choose, Qt.MouseButton.LeftButton)
        dialog.count.lineEdit().selectAll()
        qtbot.keyClicks(dialog.count, "2")
        qtbot.mouseClick(dialog.use_ray, Qt.MouseButton.LeftButton)
        assert dialog.use_ray.isChecked() and dialog.address.isEnabled() and dialog.address.text() == "auto"
        qtbot.mouseClick(dialog.buttons.button(dialog.buttons.StandardButton.Ok), Qt.MouseButton.LeftButton)

    try:
        QTimer.singleShot(0, answer)
        qtbot.keyClick(win.view, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
        wait_for(qloop, lambda: bool(reports), timeout=300)
    finally:
        timer.stop()
        ray.shutdown()

    assert ray_box == [ray_available()] == [True]
    report = reports[0]
    assert len(report.done) == 2 and not report.failed, [o.describe_error() for o in report.failed]
    records = Manifest(folder).records()
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(f["name"] for r in records for f in r["files"])
    workers = {r["worker"].rsplit(":", 1)[1] for r in records}
    assert str(os.getpid()) not in workers  # made by the actors, not by the window's process
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert gaps and max(gaps) < 2.0, max(gaps)  # the window kept its event loop while Ray started and ran
