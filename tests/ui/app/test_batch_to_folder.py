"""Run ▸ Batch to Folder… driven through the real window (toy nodes, no torch): the dialog opened by its
shortcut and by the Run bar's button, its folder chooser starting where the other dialogs start, jobs
written with a manifest while the Run bar counts them, a second ask that runs nothing, and Esc in the
middle keeping what finished (asking again runs only the rest)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gui_toy_nodes import RAN
from PySide6.QtCore import QPointF, Qt, QTimer
from PySide6.QtWidgets import QApplication

from app.batch.manifest import MANIFEST_NAME, Manifest
from ui import file_dialogs
from ui.batch_run import BatchDialog
from ui.commands import connect_command
from ui.main_window import MainWindow

ROOT = Path(__file__).parents[3]
CTRL_SHIFT = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier


def wait_for(qloop: asyncio.AbstractEventLoop, condition: Any, timeout: float = 15.0) -> None:
    async def poll() -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not condition():
            assert loop.time() < end, "timed out"
            await asyncio.sleep(0.01)

    qloop.run_until_complete(poll())


def seeded_chain(win: MainWindow, *, steps: int, delay: float) -> dict[str, int]:
    """Seeded (increment) → Slow → SavePNG, built with undoable commands as the canvas would."""
    seed = win.add_node("Seeded", QPointF(0, 0))
    slow = win.add_node("Slow", QPointF(250, 0))
    save = win.add_node("SavePNG", QPointF(500, 0))
    assert seed is not None and slow is not None and save is not None
    win.graph.nodes[seed].extra["control_after_generate"] = "increment"
    win.graph.set_value(slow, "steps", steps)
    win.graph.set_value(slow, "delay", delay)
    win.undo_stack.push(connect_command(win.graph, seed, "INT", slow, "x", "INT"))
    win.undo_stack.push(connect_command(win.graph, slow, "INT", save, "x", "INT"))
    return {"seed": seed, "slow": slow, "save": save}


def fill_batch_dialog(qtbot: Any, count: int | None, seen: list[int]) -> None:
    """When the Batch dialog opens: note the count it offers, Choose… (the patched folder dialog
    answers), type the count, OK."""
    deadline = time.monotonic() + 10.0

    def poll() -> None:
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, BatchDialog):
            seen.append(dialog.count.value())
            qtbot.mouseClick(dialog.choose, Qt.MouseButton.LeftButton)
            if count is not None:
                dialog.count.lineEdit().selectAll()
                qtbot.keyClicks(dialog.count, str(count))
            ok = dialog.buttons.button(dialog.buttons.StandardButton.Ok)
            qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)
        elif time.monotonic() < deadline:
            QTimer.singleShot(10, poll)

    QTimer.singleShot(0, poll)


def patch_folder_dialog(monkeypatch: Any, folder: Path, starts: list[str]) -> None:
    def choose(_parent: Any, _caption: str, start: str) -> str:
        starts.append(start)
        folder.mkdir(exist_ok=True)  # the folder chooser picks (or makes) an existing folder
        return str(folder)

    monkeypatch.setattr(file_dialogs, "folder_dialog", choose)


def log_texts(win: MainWindow) -> list[str]:
    return [win.log.list.item(i).text() for i in range(win.log.list.count())]


def test_batch_to_folder_writes_the_runs_with_a_manifest_and_asking_again_runs_nothing(
    toy_window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop, tmp_path: Path, monkeypatch: Any
) -> None:
    win = toy_window
    ids = seeded_chain(win, steps=3, delay=0.02)
    folder = tmp_path / "batch"
    starts: list[str] = []
    patch_folder_dialog(monkeypatch, folder, starts)
    progress: list[tuple[int, int, str]] = []
    win.controller.batchProgress.connect(
        lambda n, total: QTimer.singleShot(0, lambda: progress.append((n, total, win.run_bar.time_label.text())))
    )
    reports: list[Any] = []
    win.controller.batchFinished.connect(reports.append)
    offered: list[int] = []

    start = str(file_dialogs.start_folder())  # where Open and Save would start now
    fill_batch_dialog(qtbot, 3, offered)
    qtbot.keyClick(win.view, Qt.Key.Key_B, CTRL_SHIFT)
    wait_for(qloop, lambda: bool(reports))

    assert starts == [start]
    assert file_dialogs.last_folder() == folder.resolve()  # ... and the next dialog starts here
    report = reports[0]
    assert len(report.done) == 3 and not report.failed and report.skipped == 0
    pngs = sorted(p.name for p in folder.glob("*.png"))
    records = Manifest(folder).records()
    assert len(pngs) == 3 and sorted(f["name"] for r in records for f in r["files"]) == pngs
    assert [r["overrides"] for r in records] == [[[ids["seed"], "seed", v]] for v in (5, 6, 7)]
    assert [(n, total) for n, total, _ in progress] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert all(text.startswith(f"job {n} of 3 · ") for n, _, text in progress[1:-1]), progress
    assert win.graph.nodes[ids["seed"]].values.get("seed", 5) == 5  # the same graph names the same jobs
    assert any(f"the files are in {folder}" in t and "3 made" in t for t in log_texts(win))
    wait_for(qloop, lambda: win.run_bar.time_label.text() == "" and not win.controller.running)

    # Asking again, from the Run bar's button beside ×N: every job is done, nothing runs.
    RAN.clear()
    fill_batch_dialog(qtbot, None, offered)
    win.run_bar.count.setValue(3)
    qtbot.mouseClick(win.run_bar.batch_button, Qt.MouseButton.LeftButton)
    wait_for(qloop, lambda: len(reports) == 2)
    assert offered == [1, 3]  # the dialog starts at the Run bar's ×N count
    assert reports[1].skipped == 3 and not reports[1].done and RAN == []
    assert len(list(folder.glob("*.png"))) == 3 and len(Manifest(folder).records()) == 3
    assert any("3 already there" in t for t in log_texts(win))


def test_escape_mid_batch_keeps_what_finished_and_asking_again_runs_the_rest(
    toy_window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop, tmp_path: Path, monkeypatch: Any
) -> None:
    win = toy_window
    ids = seeded_chain(win, steps=40, delay=0.01)
    folder = tmp_path / "batch"
    patch_folder_dialog(monkeypatch, folder, [])
    reports: list[Any] = []
    win.controller.batchFinished.connect(reports.append)
    finished: list[int] = []
    win.controller.batchProgress.connect(lambda n, _total: finished.append(n))

    fill_batch_dialog(qtbot, 3, [])
    qtbot.keyClick(win.view, Qt.Key.Key_B, CTRL_SHIFT)
    wait_for(qloop, lambda: finished and finished[-1] == 1)  # the first job is done, the second is going
    assert win.controller.running and win.act_cancel.isEnabled()
    qtbot.keyClick(win.view, Qt.Key.Key_Escape)
    wait_for(qloop, lambda: bool(reports))

    report = reports[0]
    assert len(report.done) == 1 and report.cancelled >= 1 and not report.finished
    kept = list(folder.glob("*.png"))
    assert len(kept) == 1 and Manifest(folder).done() == set(report.done)
    assert any("not run" in t and "ask again" in t for t in log_texts(win))
    assert (folder / MANIFEST_NAME).exists()

    RAN.clear()
    win.activateWindow()  # the closed dialog gave activation back, as a window manager would
    qtbot.waitUntil(win.isActiveWindow)
    fill_batch_dialog(qtbot, 3, [])
    qtbot.keyClick(win.view, Qt.Key.Key_B, CTRL_SHIFT)
    wait_for(qloop, lambda: len(reports) == 2)
    assert reports[1].skipped == 1 and len(reports[1].done) == 2 and reports[1].finished
    assert RAN.count(("SavePNG", ids["save"])) == 2  # only the two missing jobs ran
    assert len(list(folder.glob("*.png"))) == 3


def test_failed_jobs_are_named_in_the_log_and_run_again_when_asked_again(
    toy_window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop, tmp_path: Path, monkeypatch: Any
) -> None:
    win = toy_window
    seed = win.add_node("Seeded", QPointF(0, 0))
    fail = win.add_node("Fail", QPointF(250, 0))
    save = win.add_node("SavePNG", QPointF(500, 0))
    assert seed is not None and fail is not None and save is not None
    win.graph.nodes[seed].extra["control_after_generate"] = "increment"
    win.undo_stack.push(connect_command(win.graph, seed, "INT", fail, "x", "INT"))
    win.undo_stack.push(connect_command(win.graph, fail, "INT", save, "x", "INT"))
    folder = tmp_path / "batch"
    patch_folder_dialog(monkeypatch, folder, [])
    reports: list[Any] = []
    win.controller.batchFinished.connect(reports.append)

    fill_batch_dialog(qtbot, 2, [])
    qtbot.keyClick(win.view, Qt.Key.Key_B, CTRL_SHIFT)
    wait_for(qloop, lambda: bool(reports))

    assert [o.job.label for o in reports[0].failed] == ["seed=5", "seed=6"] and not reports[0].done
    errors = [t for t in log_texts(win) if "the value is not acceptable" in t]
    assert [e.split("  ", 1)[1].split(" (")[0] for e in errors] == [f"job {o.job.id}" for o in reports[0].failed]
    assert all(f"node {fail} (" in e for e in errors)
    assert any("2 failed" in t and str(folder) in t for t in log_texts(win))
    assert not list(folder.glob("*.png"))

    RAN.clear()
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow)
    fill_batch_dialog(qtbot, 2, [])
    qtbot.keyClick(win.view, Qt.Key.Key_B, CTRL_SHIFT)
    wait_for(qloop, lambda: len(reports) == 2)
    assert reports[1].skipped == 0 and len(reports[1].failed) == 2  # a failed job is not done: it runs again
    assert RAN.count(("Fail", fail)) == 2


def test_the_dialog_and_the_sweep_jobs_import_neither_ray_nor_torch(tmp_path: Path) -> None:
    """Opening the dialog looks whether Ray is installed without importing it; making an XY Sweep's jobs
    on the Qt thread needs no torch (the workers import both when they start)."""
    code = (
        "import sys\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from nodes import builtin_registry\n"
        "from graph_engine import Graph\n"
        "from ui.batch_run import BatchDialog, ray_available\n"
        "from app.batch.jobs import xy_sweep_jobs\n"
        "dialog = BatchDialog(None, 3, ray=ray_available())\n"
        "g = Graph()\n"
        "sw = g.add_node('XYSweep', {'x_input': 'cfg', 'x_values': '1, 2'}).id\n"
        "try:\n"
        "    xy_sweep_jobs(g, builtin_registry(), str(sw))\n"
        "except Exception as exc:\n"
        "    assert 'model' in str(exc), exc  # its sockets are not wired: validation says so\n"
        "print(sorted(m for m in ('ray', 'torch', 'diffusers', 'transformers') if m in sys.modules))\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "SDGRAPH_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr
