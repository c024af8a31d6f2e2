"""Issue 10, editor frictions around running: the Run bar (Run, ×N, overall progress with elapsed and
remaining time), file dialogs that start somewhere sensible, seeds a run moves on without making the
document unsaved, and Run ×N on a fixed seed asking first.

Everything is driven through the real window with real mouse and key events on the toy nodes (no
torch); modal boxes are answered by a timer that clicks a button on them, as a person would.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gui_toy_nodes import RAN
from PySide6.QtCore import QPointF, Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from ui.commands import connect_command
from ui.main_window import MainWindow

CTRL = Qt.KeyboardModifier.ControlModifier


def wait_for(qloop: asyncio.AbstractEventLoop, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not condition():
            assert loop.time() < end, "timed out"
            await asyncio.sleep(0.01)

    qloop.run_until_complete(poll())


def seeded_graph(win: MainWindow, mode: str, *, slow_steps: int = 0, delay: float = 0.01) -> dict[str, int]:
    """Seeded (control after generate = `mode`) → [Slow →] SavePNG, built with undoable commands."""
    seed = win.add_node("Seeded", QPointF(0, 0))
    assert seed is not None
    win.graph.nodes[seed].extra["control_after_generate"] = mode
    last, last_out = seed, "INT"
    ids = {"seed": seed}
    if slow_steps:
        slow = win.add_node("Slow", QPointF(250, 0))
        assert slow is not None
        win.graph.set_value(slow, "steps", slow_steps)
        win.graph.set_value(slow, "delay", delay)
        win.undo_stack.push(connect_command(win.graph, seed, "INT", slow, "x", "INT"))
        last = ids["slow"] = slow
    save = win.add_node("SavePNG", QPointF(500, 0))
    assert save is not None
    win.undo_stack.push(connect_command(win.graph, last, last_out, save, "x", "INT"))
    ids["save"] = save
    return ids


def run_with_keys(win: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop) -> Any:
    """Ctrl+Enter on the canvas, then wait for that run to end; returns its result."""
    results: list[Any] = []
    win.controller.finished.connect(results.append)
    win.view.setFocus()
    qtbot.keyClick(win.view, Qt.Key.Key_Return, CTRL)
    wait_for(qloop, lambda: bool(results))
    return results[0]


# ---- 3: a run that moves a seed on does not make the document unsaved ------------------------------


def test_a_run_that_moves_the_seed_on_leaves_the_document_saved(
    toy_window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    win = toy_window
    ids = seeded_graph(win, "increment")  # randomize behaves the same; increment is deterministic
    path = tmp_path / "seeded.json"
    assert win.save_as(path)
    assert win.windowTitle() == "seeded.json — sdgraph"
    undo_index = win.undo_stack.index()
    before = win.graph.nodes[ids["seed"]].values.get("seed", 5)

    result = run_with_keys(win, qtbot, qloop)
    assert result.status == "done"
    qtbot.wait(20)
    after = win.graph.nodes[ids["seed"]].values["seed"]
    assert after == before + 1
    assert not win.is_dirty()
    assert win.windowTitle() == "seeded.json — sdgraph"
    assert win.undo_stack.index() == undo_index and win.undo_stack.isClean()

    # Nothing asks to be saved on close, yet a Save writes the new seed.
    win.view.setFocus()
    qtbot.keyClick(win.view, Qt.Key.Key_S, CTRL)
    saved = json.loads(path.read_text())
    (node,) = [n for n in saved["nodes"] if n["type"] == "Seeded"]
    assert node["inputs"]["seed"] == after


# ---- 2: Open/Save dialogs start in Documents, then in the last folder used --------------------------


def test_file_dialogs_start_in_documents_then_in_the_last_folder_used(
    toy_window: MainWindow, qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gui_toy_nodes import toy_registry

    from app.settings import Settings
    from graph_engine import Graph
    from graph_engine.serialization import save
    from ui import file_dialogs

    user = tmp_path / "user"
    (user / "Documents").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(user))  # QStandardPaths reads it on every call
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user / ".config"))
    work = tmp_path / "work"
    work.mkdir()
    graph = Graph()
    graph.add_node("Const", {"value": 7})
    save(graph, work / "a.json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    asked: list[tuple[str, str]] = []
    answers: list[str] = [str(work / "a.json"), ""]
    saves: list[tuple[str, str]] = []

    def fake_open(_parent: Any, caption: str, directory: str, _filters: str) -> tuple[str, str]:
        asked.append((caption, directory))
        return answers.pop(0), ""

    def fake_save(_parent: Any, caption: str, start: str, _filters: str, selected: str) -> tuple[str, str]:
        saves.append((caption, start))
        return str(elsewhere / "b.json"), selected

    monkeypatch.setattr(file_dialogs, "open_dialog", fake_open)
    monkeypatch.setattr(file_dialogs, "save_dialog", fake_save)
    win = toy_window
    win.view.setFocus()
    qtbot.keyClick(win.view, Qt.Key.Key_O, CTRL)
    assert asked == [("Open workflow", str(user / "Documents"))]  # first time: Documents, not the cwd
    assert win.path == work / "a.json"

    qtbot.keyClick(win.view, Qt.Key.Key_N, CTRL)  # an untitled document: no folder of its own
    assert win.path is None
    qtbot.keyClick(win.view, Qt.Key.Key_O, CTRL)  # cancelled in the dialog
    assert asked[1] == ("Open workflow", str(work))
    win.add_node("Const")
    qtbot.keyClick(win.view, Qt.Key.Key_S, CTRL)  # untitled: Save asks where, starting in the last folder
    assert saves == [("Save workflow", str(work / "untitled.json"))]
    assert (elsewhere / "b.json").is_file()

    # The last folder is kept between launches.
    again = MainWindow(toy_registry(), Settings(), templates_dir=tmp_path / "templates")
    qtbot.addWidget(again, before_close_func=lambda w: setattr(w, "prompt_on_close", False))
    again.show()
    qtbot.waitExposed(again)
    answers.append("")
    again.view.setFocus()
    qtbot.keyClick(again.view, Qt.Key.Key_O, CTRL)
    assert asked[2] == ("Open workflow", str(elsewhere))


# ---- 1: the Run bar ----------------------------------------------------------------------------------


def chain_graph(win: MainWindow, *, steps: int, delay: float) -> dict[str, int]:
    """Const → Slow → SavePNG, as undoable edits."""
    ids = {}
    for role, type_, x in (("const", "Const", 0), ("slow", "Slow", 250), ("save", "SavePNG", 500)):
        nid = win.add_node(type_, QPointF(x, 0))
        assert nid is not None
        ids[role] = nid
    win.graph.set_value(ids["slow"], "steps", steps)
    win.graph.set_value(ids["slow"], "delay", delay)
    win.undo_stack.push(connect_command(win.graph, ids["const"], "INT", ids["slow"], "x", "INT"))
    win.undo_stack.push(connect_command(win.graph, ids["slow"], "INT", ids["save"], "x", "INT"))
    return ids


def test_the_run_button_runs_and_the_bar_shows_progress_and_time(
    toy_window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    win = toy_window
    bar = win.run_bar
    assert bar.isVisible() and bar.run_button.isVisible() and bar.count.value() == 1
    chain_graph(win, steps=60, delay=0.03)
    finished: list[Any] = []
    win.controller.finished.connect(finished.append)
    seen: list[tuple[int, str]] = []
    win.controller.nodeProgress.connect(lambda *_: seen.append((bar.progress.value(), bar.time_label.text())))

    qtbot.mouseClick(bar.run_button, Qt.MouseButton.LeftButton)
    wait_for(qloop, lambda: bar.progress.value() > 0 and "elapsed" in bar.time_label.text())
    first = bar.progress.value()
    wait_for(qloop, lambda: "left" in bar.time_label.text() and bar.progress.value() > first)
    text = bar.time_label.text()
    assert text.startswith("0:0") and " elapsed, ~" in text and text.endswith(" left"), text
    assert 0 < bar.progress.value() < bar.progress.maximum()
    wait_for(qloop, lambda: bool(finished))
    assert finished[0].status == "done"
    values = [v for v, _ in seen]
    assert values == sorted(values)  # it only ever moves forward
    wait_for(qloop, lambda: bar.time_label.text() == "" and bar.progress.value() == 0)  # cleared after


def test_run_times_three_from_the_bar_queues_three_runs(
    toy_window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    win = toy_window
    bar = win.run_bar
    chain_graph(win, steps=20, delay=0.02)
    finished: list[Any] = []
    win.controller.finished.connect(finished.append)
    texts: list[str] = []
    win.controller.started.connect(lambda: QTimer.singleShot(0, lambda: texts.append(bar.time_label.text())))

    # type the count into the spin box, as a person would
    qtbot.mouseClick(bar.count, Qt.MouseButton.LeftButton)
    bar.count.lineEdit().selectAll()
    qtbot.keyClicks(bar.count, "3")
    assert bar.count.value() == 3
    qtbot.mouseClick(bar.run_button, Qt.MouseButton.LeftButton)
    wait_for(qloop, lambda: win.controller.running)
    assert win.controller.queued == 2
    wait_for(qloop, lambda: len(finished) == 3 and win.controller.idle)
    assert [r.status for r in finished] == ["done"] * 3
    assert [t.split(" · ")[0] for t in texts] == ["run 1 of 3", "run 2 of 3", "run 3 of 3"]
    wait_for(qloop, lambda: bar.time_label.text() == "")


# ---- 4: Run ×N with every seed fixed asks first -------------------------------------------------------


def answer_box_with(qtbot: Any, text: str, seen: list[str], give_up_s: float = 10.0) -> None:
    """When the next modal message box opens (within `give_up_s`), note its text and click its button
    labelled `text`."""
    deadline = time.monotonic() + give_up_s

    def poll() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            seen.append(box.text())
            (button,) = [b for b in box.buttons() if b.text().replace("&", "") == text]
            qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        elif time.monotonic() < deadline:
            QTimer.singleShot(10, poll)

    QTimer.singleShot(0, poll)


def click_run_times(win: MainWindow, qtbot: Any, count: int) -> None:
    bar = win.run_bar
    qtbot.mouseClick(bar.count, Qt.MouseButton.LeftButton)
    bar.count.lineEdit().selectAll()
    qtbot.keyClicks(bar.count, str(count))
    assert bar.count.value() == count
    qtbot.mouseClick(bar.run_button, Qt.MouseButton.LeftButton)


def saved_seeds(out: Path) -> list[int]:
    return sorted(int(p.stem.rsplit("_", 1)[1]) for p in out.glob("*.png"))


def test_run_times_three_with_a_fixed_seed_can_vary_it(
    toy_window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    win = toy_window
    ids = seeded_graph(win, "fixed")
    finished: list[Any] = []
    win.controller.finished.connect(finished.append)
    seen: list[str] = []
    answer_box_with(qtbot, "Vary the seed", seen)
    click_run_times(win, qtbot, 3)
    wait_for(qloop, lambda: len(finished) == 3 and win.controller.idle)

    assert len(seen) == 1 and "same image 3 times" in seen[0]
    assert [r.status for r in finished] == ["done"] * 3
    assert RAN.count(("Seeded", ids["seed"])) == 3  # three different seeds: nothing came from the cache
    assert saved_seeds(tmp_path / "out") == [5, 6, 7]
    assert win.graph.nodes[ids["seed"]].extra["control_after_generate"] == "fixed"  # the choice stays


def test_run_times_three_with_a_fixed_seed_can_run_anyway_or_be_cancelled(
    toy_window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    win = toy_window
    ids = seeded_graph(win, "fixed")
    finished: list[Any] = []
    win.controller.finished.connect(finished.append)
    seen: list[str] = []
    answer_box_with(qtbot, "Cancel", seen)
    click_run_times(win, qtbot, 3)
    qtbot.wait(50)
    assert len(seen) == 1 and win.controller.idle and not finished and not RAN

    answer_box_with(qtbot, "Run anyway", seen)
    qtbot.mouseClick(win.run_bar.run_button, Qt.MouseButton.LeftButton)
    wait_for(qloop, lambda: len(finished) == 3 and win.controller.idle)
    assert len(seen) == 2
    assert [r.status for r in finished] == ["done"] * 3
    assert RAN.count(("Seeded", ids["seed"])) == 1  # the same seed three times: two came from the cache
    assert saved_seeds(tmp_path / "out") == [5]
    assert win.graph.nodes[ids["seed"]].values.get("seed", 5) == 5


def test_run_times_three_with_a_moving_seed_does_not_ask(
    toy_window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    win = toy_window
    seeded_graph(win, "increment")
    finished: list[Any] = []
    win.controller.finished.connect(finished.append)
    seen: list[str] = []
    answer_box_with(qtbot, "Cancel", seen, give_up_s=2.0)  # a question would be seen (and cancelled)
    click_run_times(win, qtbot, 3)
    wait_for(qloop, lambda: len(finished) == 3 and win.controller.idle)
    assert seen == []
    assert [r.status for r in finished] == ["done"] * 3
