"""Issue 10, bugs 1 and 2: files keep their format, and the canvas keeps its room.

A ComfyUI workflow opened in the window, edited with the mouse and saved with Ctrl+S must still be
a ComfyUI workflow with everything sdgraph does not model, and a ComfyUI API prompt stays an API
prompt. Opening anything (New, Open, drop, template, `sdgraph gui FILE`, crash restore) must leave
the docks where the user put them, and their layout survives a restart.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox

from app.settings import Settings
from graph_engine import comfy
from graph_engine.serialization import FORMAT
from nodes import builtin_registry
from tests.comfy.support import anchor_or_own
from tests.ui.app.test_main_window import answer_next_box, drag_and_drop
from ui.autosave import AutosaveStore
from ui.main_window import MainWindow

WORKFLOWS = Path(__file__).resolve().parents[3] / "workflows"
CTRL = Qt.KeyboardModifier.ControlModifier


def make_window(qtbot: Any, home: Path, tmp_path: Path) -> MainWindow:
    store = AutosaveStore(home / "autosave")
    store.start_session()
    win = MainWindow(builtin_registry(), Settings(output_dir=str(tmp_path / "out")), autosave=store)
    qtbot.addWidget(win, before_close_func=lambda w: setattr(w, "prompt_on_close", False))
    win.show()
    qtbot.waitExposed(win)
    return win


@pytest.fixture
def window(qtbot: Any, tmp_path: Path, sdgraph_home: Path) -> MainWindow:
    return make_window(qtbot, sdgraph_home, tmp_path)


def anchor_copy(tmp_path: Path, name: str) -> Path:
    """A copy of ComfyUI's default graph, or of the project's own twin of it where the anchors are absent."""
    target = tmp_path / name
    shutil.copyfile(anchor_or_own(name, name.replace("default_txt2img_sd15", "txt2img_sd15")), target)
    return target


def drop_file(qtbot: Any, win: MainWindow, path: Path) -> None:
    """Drop `path` on the canvas as a file manager would, and wait for the window to open it."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    assert drag_and_drop(win.view.viewport(), mime, QPoint(200, 200))
    qtbot.waitUntil(lambda: win.path == path, timeout=3000)


def drag_node_title(win: MainWindow, node_id: int, delta: tuple[float, float]) -> None:
    """Press on the node's title bar, move with the button held, release: a real mouse drag."""
    view = win.view
    item = view.node_item(node_id)
    a = view.mapFromScene(item.mapToScene(QPointF(40, 10)))
    b = a + QPoint(int(delta[0] * view.transform().m11()), int(delta[1] * view.transform().m22()))
    w = view.viewport()
    QTest.mousePress(w, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    for i in range(1, 7):
        QTest.mouseMove(w, a + (b - a) * (i / 6))
    QTest.mouseRelease(w, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)


def by_id(doc: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    return {n["id"]: n for n in doc["nodes"]}


def modern_controls(values: list[Any] | None) -> list[Any] | None:
    """Old ComfyUI files store a seed's control as a boolean; the frontend reads it as randomize/fixed,
    and that is the one value the import writes back in its modern form (see graph_engine.comfy)."""
    if values is None:
        return None
    return [{True: "randomize", False: "fixed"}.get(v, v) if isinstance(v, bool) else v for v in values]


def test_ctrl_s_keeps_an_opened_comfyui_workflow_a_comfyui_workflow(
    window: MainWindow, qtbot: Any, tmp_path: Path
) -> None:
    path = anchor_copy(tmp_path, "default_txt2img_sd15.workflow.json")
    before = json.loads(path.read_text())
    drop_file(qtbot, window, path)
    sampler = next(n for n in window.graph.nodes.values() if n.type == "KSampler")
    start = sampler.pos
    drag_node_title(window, sampler.id, (120, 60))
    assert window.graph.nodes[sampler.id].pos != start
    assert window.is_dirty()

    QTest.keyClick(window.view, Qt.Key.Key_S, CTRL)

    assert not window.is_dirty()
    after = json.loads(path.read_text())
    assert comfy.detect_format(after) == "comfyui-ui"  # ComfyUI can still load it
    assert "format" not in after  # not rewritten as an sdgraph workflow
    # Everything sdgraph does not model is still there: top-level keys, the canvas offset, node ids,
    # widget values in ComfyUI's positional form, links.
    assert set(before) <= set(after)
    assert after["extra"]["ds"] == before["extra"]["ds"]
    assert sorted(after["links"]) == sorted(before["links"])
    old, new = by_id(before), by_id(after)
    assert set(old) == set(new)
    for key, node in old.items():
        assert new[key]["type"] == node["type"]
        if "widgets_values" in node:  # (a node saved without any gets the declared defaults written)
            assert new[key]["widgets_values"] == modern_controls(node["widgets_values"]), node["type"]
        if node["type"] != "KSampler":
            assert new[key]["pos"] == pytest.approx(node["pos"])
    moved = next(n for n in after["nodes"] if n["type"] == "KSampler")
    assert moved["pos"] == pytest.approx(list(window.graph.nodes[sampler.id].pos))
    assert moved["pos"] != pytest.approx(next(n for n in before["nodes"] if n["type"] == "KSampler")["pos"])
    assert "ComfyUI workflow" in window.windowTitle()


def test_an_api_prompt_is_saved_back_as_an_api_prompt(window: MainWindow, qtbot: Any, tmp_path: Path) -> None:
    path = anchor_copy(tmp_path, "default_txt2img_sd15.api.json")
    before = json.loads(path.read_text())
    drop_file(qtbot, window, path)
    sampler = next(n for n in window.graph.nodes.values() if n.type == "KSampler")
    drag_node_title(window, sampler.id, (80, 40))
    QTest.keyClick(window.view, Qt.Key.Key_S, CTRL)
    after = json.loads(path.read_text())
    assert comfy.detect_format(after) == "comfyui-api"
    assert set(after) == set(before)
    for key, entry in before.items():
        assert after[key]["class_type"] == entry["class_type"]
        assert after[key]["inputs"] == entry["inputs"]


def test_save_as_changes_the_format_only_when_asked(window: MainWindow, qtbot: Any, tmp_path: Path) -> None:
    path = anchor_copy(tmp_path, "default_txt2img_sd15.workflow.json")
    original = path.read_bytes()
    drop_file(qtbot, window, path)
    ours = tmp_path / "mine.json"
    assert window.save_as(ours, "sdgraph")
    assert json.loads(ours.read_text())["format"] == FORMAT
    assert path.read_bytes() == original  # the ComfyUI file is not touched by Save As
    drag_node_title(window, next(iter(window.graph.nodes)), (50, 50))
    QTest.keyClick(window.view, Qt.Key.Key_S, CTRL)
    assert json.loads(ours.read_text())["format"] == FORMAT  # Save now follows the new format
    api = tmp_path / "prompt.json"
    assert window.export(api, "comfy-api")
    assert comfy.detect_format(json.loads(api.read_text())) == "comfyui-api"
    assert window.path == ours  # exporting leaves the open file as it was


def test_a_graph_the_format_cannot_hold_is_never_written_over_the_file(
    window: MainWindow, qtbot: Any, tmp_path: Path
) -> None:
    path = anchor_copy(tmp_path, "default_txt2img_sd15.api.json")
    drop_file(qtbot, window, path)
    original = path.read_bytes()
    # A node type sdgraph does not have, with positional widget values: API format cannot name them.
    node = window.graph.add_node("SomeCustomNode", pos=(0, 0))
    node.extra["comfy"] = {"widgets_values": [1, 2]}
    window.doc.modified_outside_undo = True
    seen: list[str] = []
    answer_next_box(qtbot, QMessageBox.StandardButton.Cancel, seen)
    QTest.keyClick(window.view, Qt.Key.Key_S, CTRL)
    assert seen and "ComfyUI API prompt" in seen[0] and "SomeCustomNode" in seen[0]
    assert path.read_bytes() == original
    assert window.is_dirty()


def test_restoring_a_crashed_comfyui_workflow_saves_it_back_as_comfyui(
    qtbot: Any, tmp_path: Path, sdgraph_home: Path
) -> None:
    path = anchor_copy(tmp_path, "default_txt2img_sd15.workflow.json")
    crashed = AutosaveStore(sdgraph_home / "autosave", pid=999_999_999, session="crashed")
    crashed.start_session()
    from app.documents import open_document

    graph = open_document(path).graph
    next(n for n in graph.nodes.values() if n.type == "KSampler").pos = (900.0, 900.0)
    crashed.write(graph, crashed.name_for(path), path)
    import os
    import time

    os.utime(path, (time.time() - 3600, time.time() - 3600))  # the autosave is newer than the file

    win = make_window(qtbot, sdgraph_home, tmp_path)
    answer_next_box(qtbot, QMessageBox.StandardButton.Yes, [])
    assert win.offer_recovery() is not None
    win.activateWindow()  # the window manager does this when the question box closes
    qtbot.waitUntil(win.isActiveWindow)
    QTest.keyClick(win.view, Qt.Key.Key_S, CTRL)
    assert not win.is_dirty()
    after = json.loads(path.read_text())
    assert comfy.detect_format(after) == "comfyui-ui"
    assert next(n for n in after["nodes"] if n["type"] == "KSampler")["pos"] == pytest.approx([900.0, 900.0])


# ---- bug 2: the canvas keeps its room ------------------------------------------------------------


def drag_separator_right_of(win: MainWindow, dock: Any, dx: int) -> None:
    """Drag the splitter between a left dock and the canvas with the mouse, as a person resizes it.

    QMainWindow applies separator moves from a zero timer, so events are processed between moves.
    """
    edge = dock.geometry().right()
    y = dock.geometry().center().y()
    at = QPoint(edge + 3, y)
    QTest.mouseMove(win, at)
    QTest.mousePress(win, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at)
    for i in range(1, 7):
        QTest.mouseMove(win, at + QPoint(dx * i // 6, 0))
        QTest.qWait(5)
    QTest.mouseRelease(win, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at + QPoint(dx, 0))


def widths(win: MainWindow) -> tuple[int, int, int]:
    return win.view.width(), win.library_dock.width(), win.images_dock.width()


def test_opening_anything_leaves_the_canvas_and_docks_where_they_were(
    window: MainWindow, qtbot: Any, tmp_path: Path
) -> None:
    window.load_default()
    qtbot.wait(50)
    before = window.library_dock.width()
    drag_separator_right_of(window, window.library_dock, -40)
    qtbot.wait(50)
    layout = widths(window)
    assert layout[1] < before  # the mouse drag did resize the dock
    assert layout[0] > max(layout[1], layout[2])  # the canvas is wider than either dock

    comfy_file = anchor_copy(tmp_path, "default_txt2img_sd15.workflow.json")
    steps = [
        ("new", lambda: QTest.keyClick(window.view, Qt.Key.Key_N, CTRL)),
        ("drop", lambda: drop_file(qtbot, window, comfy_file)),
        ("template", lambda: window.open_template(WORKFLOWS / "sdxl.json")),
        ("gui FILE", lambda: window.load_document(WORKFLOWS / "img2img.json")),
        ("recent", lambda: window.open_file(str(comfy_file))),
    ]
    for name, step in steps:
        window.prompt_on_close = False
        window.doc.undo.setClean()
        window.doc.modified_outside_undo = False
        step()
        qtbot.wait(50)
        assert widths(window) == layout, name


def test_dock_layout_is_remembered_between_launches(qtbot: Any, tmp_path: Path, sdgraph_home: Path) -> None:
    first = make_window(qtbot, sdgraph_home, tmp_path)
    first.load_default()
    qtbot.wait(50)
    before = first.library_dock.width()
    drag_separator_right_of(first, first.library_dock, -40)
    qtbot.wait(50)
    dock_width = first.library_dock.width()
    assert dock_width < before
    first.log_dock.hide()
    first.close_without_prompt()

    second = make_window(qtbot, sdgraph_home, tmp_path)
    second.load_default()
    qtbot.wait(50)
    assert second.library_dock.width() == dock_width
    assert not second.log_dock.isVisible()


def test_the_images_dock_can_be_dragged_narrow(window: MainWindow, qtbot: Any) -> None:
    """Issue 10, bug 11: the Images/Timeline dock used to refuse to go below ~560 px."""
    window.load_default()
    window.timeline_dock.raise_()  # the wider of the two tabs decides the dock's minimum
    qtbot.wait(50)
    dock = window.timeline_dock
    at = dock.geometry().topLeft() + QPoint(-3, dock.height() // 2)
    QTest.mousePress(window, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at)
    for i in range(1, 13):
        QTest.mouseMove(window, at + QPoint(50 * i, 0))
        QTest.qWait(5)
    QTest.mouseRelease(window, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at + QPoint(600, 0))
    qtbot.wait(50)
    assert dock.width() <= 260
    assert window.view.width() > dock.width()
