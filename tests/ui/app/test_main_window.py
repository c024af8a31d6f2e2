"""The main window with the real canvas: files, dirty state, drops, runs, and what the user is told.

Interactions go through real events (key clicks on the canvas, mouse clicks on panel items, drag
and drop events on the canvas viewport); assertions are on the model, the files, and what the
window shows. Modal message boxes are answered by a timer that finds the box and clicks a button,
so the code under test runs exactly as it does for a person.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gui_toy_nodes import RAN, chain, toy_registry
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from app.settings import Settings
from graph_engine import Graph
from graph_engine.serialization import graph_to_dict, save
from ui import file_dialogs
from ui.autosave import AutosaveStore
from ui.commands import connect_command
from ui.main_window import MainWindow
from ui.panels import NODE_TYPE_MIME

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _clear_ran() -> None:
    RAN.clear()


@pytest.fixture
def window(qtbot: Any, tmp_path: Path, sdgraph_home: Path) -> MainWindow:
    store = AutosaveStore(sdgraph_home / "autosave")
    store.start_session()
    settings = Settings(output_dir=str(tmp_path / "out"))
    win = MainWindow(toy_registry(), settings, autosave=store, templates_dir=tmp_path / "templates")
    # pytest-qt closes the window before this fixture's teardown runs; no unsaved-changes prompt then.
    qtbot.addWidget(win, before_close_func=lambda w: setattr(w, "prompt_on_close", False))
    win.show()
    qtbot.waitExposed(win)
    return win


def answer_next_box(qtbot: Any, button: QMessageBox.StandardButton, seen: list[str]) -> None:
    """When the next modal message box opens, record its text and press `button` on it."""

    def poll() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            seen.append(box.text())
            box.button(button).click()
        else:
            QTimer.singleShot(10, poll)

    QTimer.singleShot(0, poll)


def drag_and_drop(widget: Any, mime: QMimeData, at: QPoint) -> bool:
    """A drop as Qt delivers it: an accepted DragEnter first (Qt ignores a Drop without one)."""
    buttons, mods = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(at, Qt.DropAction.CopyAction, mime, buttons, mods)
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(QPointF(at), Qt.DropAction.CopyAction, mime, buttons, mods)
    QApplication.sendEvent(widget, drop)
    return drop.isAccepted()


def build_chain(win: MainWindow, **kw: Any) -> dict[str, int]:
    """Put a Const → Slow → (Fail →) SavePNG chain in the window's graph as undoable edits."""
    scratch = Graph()
    ids = chain(scratch, **kw)
    mapping: dict[int, int] = {}
    for nid, node in scratch.nodes.items():
        new_id = win.add_node(node.type, QPointF(*node.pos))
        assert new_id is not None
        for key, value in node.values.items():
            win.graph.set_value(new_id, key, value)
        mapping[nid] = new_id
    for link in scratch.links.values():
        win.undo_stack.push(
            connect_command(
                win.graph, mapping[link.src_node], link.src_output, mapping[link.dst_node], link.dst_input, link.type
            )
        )
    return {role: mapping[nid] for role, nid in ids.items()}


def wait_for(qloop: asyncio.AbstractEventLoop, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not condition():
            assert loop.time() < end, "timed out"
            await asyncio.sleep(0.01)

    qloop.run_until_complete(poll())


# ---- files ----------------------------------------------------------------------------------------


def test_save_then_reopen_gives_the_same_graph(window: MainWindow, tmp_path: Path) -> None:
    build_chain(window)
    path = tmp_path / "flow.json"
    assert window.save_as(path)
    saved = graph_to_dict(window.graph)
    assert window.windowTitle() == "flow.json — sdgraph"

    assert window.new_document()
    assert window.graph.nodes == {}
    assert window.open_file(path)
    assert graph_to_dict(window.graph) == saved
    assert window.path == path and not window.is_dirty()
    assert str(path.resolve()) == window.settings.recent_files[0]
    assert Settings.load().recent_files[0] == str(path.resolve())  # remembered across sessions


def test_dirty_title_follows_undo_with_real_keys(window: MainWindow, qtbot: Any, tmp_path: Path) -> None:
    window.save_as(tmp_path / "a.json")
    assert window.windowTitle() == "a.json — sdgraph"
    window.add_node("Const")
    assert window.is_dirty() and window.windowTitle() == "a.json* — sdgraph"

    window.view.setFocus()
    qtbot.keyClick(window.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.graph.nodes == {}
    assert not window.is_dirty() and window.windowTitle() == "a.json — sdgraph"
    qtbot.keyClick(window.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert len(window.graph.nodes) == 1 and window.windowTitle() == "a.json* — sdgraph"
    qtbot.keyClick(window.view, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert not window.is_dirty()
    assert len(json.loads((tmp_path / "a.json").read_text())["nodes"]) == 1


def test_a_file_that_fails_to_load_leaves_the_graph_alone(window: MainWindow, qtbot: Any, tmp_path: Path) -> None:
    build_chain(window)
    window.save_as(tmp_path / "good.json")
    graph, before = window.graph, graph_to_dict(window.graph)
    bad = tmp_path / "broken.json"
    bad.write_text('{"format": "sdgraph.workflow", "schema_version": 1, "nodes": [{"id": "x"}]}')
    seen: list[str] = []
    answer_next_box(qtbot, QMessageBox.StandardButton.Ok, seen)

    assert window.open_file(bad) is False

    assert seen and "broken.json" in seen[0] and "nodes[0].id" in seen[0]
    assert window.graph is graph and graph_to_dict(window.graph) == before
    assert window.path == tmp_path / "good.json"
    assert any("broken.json" in text for text, _ in window.log.entries())


def test_unsaved_changes_prompt_cancel_keeps_and_discard_replaces(window: MainWindow, qtbot: Any) -> None:
    window.add_node("Const")
    seen: list[str] = []
    answer_next_box(qtbot, QMessageBox.StandardButton.Cancel, seen)
    assert window.new_document() is False
    assert len(window.graph.nodes) == 1 and "unsaved changes" in seen[0]

    answer_next_box(qtbot, QMessageBox.StandardButton.Discard, seen)
    assert window.new_document() is True
    assert window.graph.nodes == {} and not window.is_dirty()


def test_dropping_a_json_on_the_canvas_opens_it(window: MainWindow, qtbot: Any, tmp_path: Path) -> None:
    source = Graph()
    chain(source)
    path = tmp_path / "dropped.json"
    save(source, path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    assert drag_and_drop(window.view.viewport(), mime, window.view.viewport().rect().center())

    qtbot.waitUntil(lambda: window.path == path, timeout=3000)
    assert graph_to_dict(window.graph) == graph_to_dict(source)


def test_library_adds_nodes_by_double_click_and_by_drop(window: MainWindow, qtbot: Any) -> None:
    tree = window.library.tree
    item = window.library.item_for("Slow")
    assert item is not None
    rect = tree.visualItemRect(item)
    # A person's double-click is a click and then a double-click event; QTest's mouseDClick alone
    # skips the first press, which item views need to recognise the item.
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert [n.type for n in window.graph.nodes.values()] == ["Slow"]

    mime = QMimeData()
    mime.setData(NODE_TYPE_MIME, b"Const")
    at = QPoint(40, 50)
    assert drag_and_drop(window.view.viewport(), mime, at)
    const = next(n for n in window.graph.nodes.values() if n.type == "Const")
    expected = window.view.mapToScene(at)
    assert const.pos == pytest.approx((expected.x(), expected.y()))
    window.undo_stack.undo()
    assert [n.type for n in window.graph.nodes.values()] == ["Slow"]


# ---- runs -----------------------------------------------------------------------------------------


def test_failing_run_marks_the_node_and_the_log_leads_to_it(
    window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop, sdgraph_home: Path
) -> None:
    ids = build_chain(window, slow_steps=2, delay=0.01, fail=True)
    window.view.setFocus()
    qtbot.keyClick(window.view, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert len(window._tasks) == 1
    (task,) = window._tasks
    result = qloop.run_until_complete(task)

    assert result.status == "failed"
    item = window.view.node_item(ids["fail"])
    assert item.run_state == "error" and "the value is not acceptable" in item.message
    assert "Traceback" not in item.message
    assert window.view.node_item(ids["slow"]).run_state == "done"
    assert window.view.node_item(ids["save"]).run_state == ""
    assert list((sdgraph_home / "autosave").glob("untitled-*.json"))  # a run autosaves dirty work

    log = window.log.list
    row = next(i for i in range(log.count()) if log.item(i).data(Qt.ItemDataRole.UserRole) == ids["fail"])
    qtbot.mouseClick(log.viewport(), Qt.MouseButton.LeftButton, pos=log.visualItemRect(log.item(row)).center())
    assert window.view.selected_node_ids() == [ids["fail"]]

    window.add_node("Const")  # the graph is still an ordinary editable graph
    assert len(window.graph.nodes) == 5


def test_run_shows_images_and_a_click_enlarges_one(
    window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    ids = build_chain(window, slow_steps=3, delay=0.01)
    result = qloop.run_until_complete(window.run())
    assert result is not None and result.status == "done"
    (path,) = window.images.image_paths()
    assert Path(path).parent == Path(window.settings.output_dir)
    (image,) = window.view.node_item(ids["save"]).images
    assert (image.width(), image.height()) == (32, 24)

    gallery = window.images.gallery
    qtbot.mouseClick(
        gallery.viewport(), Qt.MouseButton.LeftButton, pos=gallery.visualItemRect(gallery.item(0)).center()
    )
    viewer = window.images.viewer
    assert viewer is not None and viewer.isVisible()
    assert viewer.view.image().size() == image.size()
    viewer.close()


def test_escape_on_the_canvas_cancels_the_run(window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop) -> None:
    ids = build_chain(window, slow_steps=300, delay=0.01)
    task = window.run()
    wait_for(qloop, lambda: window.view.node_item(ids["slow"]).progress is not None)
    assert window.act_cancel.isEnabled()
    window.view.setFocus()
    qtbot.keyClick(window.view, Qt.Key.Key_Escape)
    result = qloop.run_until_complete(task)

    assert result.status == "cancelled"
    assert ("SavePNG", ids["save"]) not in RAN
    assert not window.act_cancel.isEnabled()


def test_escape_cancels_only_the_current_run_and_says_the_queue_goes_on(
    window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    ids = build_chain(window, slow_steps=40, delay=0.01)
    task = window.run_many(3)
    wait_for(qloop, lambda: window.view.node_item(ids["slow"]).progress is not None)
    assert window.controller.queued == 2
    assert "2 queued" in window.status.text()
    window.view.setFocus()
    qtbot.keyClick(window.view, Qt.Key.Key_Escape)
    message = window.statusBar().currentMessage()
    results = qloop.run_until_complete(task)

    assert message == "Cancelled the running run; 2 queued runs still pending"
    assert [r.status for r in results] == ["cancelled", "done", "done"]
    assert ("SavePNG", ids["save"]) in RAN
    assert (message, None) in window.log.entries()


def test_shift_escape_cancels_the_run_and_drops_the_queue(
    window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    ids = build_chain(window, slow_steps=300, delay=0.01)
    task = window.run_many(3)
    wait_for(qloop, lambda: window.view.node_item(ids["slow"]).progress is not None)
    assert window.act_cancel_all.isEnabled() and window.act_cancel_next.isEnabled()
    window.view.setFocus()
    qtbot.keyClick(window.view, Qt.Key.Key_Escape, Qt.KeyboardModifier.ShiftModifier)
    message = window.statusBar().currentMessage()
    results = qloop.run_until_complete(task)

    assert message == "Cancelled the run and dropped 2 queued runs"
    assert [r.status for r in results] == ["cancelled"]
    assert RAN.count(("Slow", ids["slow"])) == 1
    assert ("SavePNG", ids["save"]) not in RAN
    assert (message, None) in window.log.entries()
    assert not window.act_cancel_all.isEnabled() and not window.act_cancel_next.isEnabled()


def test_cancel_one_queued_run_from_the_run_menu_lets_the_rest_run(
    window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    ids = build_chain(window, slow_steps=40, delay=0.01)
    task = window.run_many(4)
    wait_for(qloop, lambda: window.view.node_item(ids["slow"]).progress is not None)
    run_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Run")
    assert window.act_cancel_next in run_menu.actions() and window.act_cancel_all in run_menu.actions()
    window.queue_menu.aboutToShow.emit()  # what opening the submenu does
    entries = window.queue_menu.actions()
    assert [a.text() for a in entries] == ["#1: run 2 of 4", "#2: run 3 of 4", "#3: run 4 of 4"]
    entries[1].trigger()
    one = window.statusBar().currentMessage()
    window.act_cancel_next.trigger()
    next_one = window.statusBar().currentMessage()
    results = qloop.run_until_complete(task)

    assert one == "Dropped queued run 3 of 4; 2 queued runs still pending"
    assert next_one == "Dropped queued run 2 of 4; 1 queued run still pending"
    assert [r.status for r in results] == ["done", "done"]  # runs 1 and 4
    assert [text for text, _ in window.log.entries() if text.startswith("Dropped")] == [one, next_one]


def test_invalid_graph_is_outlined_and_does_not_run(window: MainWindow, qloop: asyncio.AbstractEventLoop) -> None:
    save_id = window.add_node("SavePNG")
    result = qloop.run_until_complete(window.run())
    assert result is None
    assert window.view.problem_node_ids() == {save_id}
    assert RAN == []
    assert any(nid == save_id for _, nid in window.log.entries())


# ---- recovery and start-up ------------------------------------------------------------------------


def test_after_a_crash_the_autosave_is_offered_and_restored(
    window: MainWindow, qtbot: Any, tmp_path: Path, sdgraph_home: Path
) -> None:
    original = tmp_path / "work.json"
    save(Graph(), original)
    crashed = AutosaveStore(sdgraph_home / "autosave", pid=2**22 + 12345, session="crashed")
    crashed.start_session()
    unsaved = Graph()
    chain(unsaved)
    crashed.write(unsaved, crashed.name_for(original), original)
    seen: list[str] = []
    answer_next_box(qtbot, QMessageBox.StandardButton.Yes, seen)

    restored = window.offer_recovery()

    assert restored is not None and "work.json" in seen[0]
    assert graph_to_dict(window.graph) == graph_to_dict(unsaved)
    assert window.path == original.resolve() and window.is_dirty()
    assert window.windowTitle() == "work.json* — sdgraph"
    assert window.offer_recovery() is None  # asked once


def test_templates_menu_opens_a_template_untitled(window: MainWindow, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    g = Graph()
    chain(g)
    save(g, templates / "toy_chain.json")
    window._fill_templates_menu()
    (action,) = [a for a in window.templates_menu.actions() if a.text() == "toy chain"]
    action.trigger()
    assert graph_to_dict(window.graph) == graph_to_dict(g)
    assert window.path is None  # Save must not overwrite the template


def test_the_app_shows_its_window_without_importing_torch(tmp_path: Path) -> None:
    env = {
        **__import__("os").environ,
        "QT_QPA_PLATFORM": "offscreen",
        "SDGRAPH_HOME": str(tmp_path),
        "SDGRAPH_STARTUP_PROBE": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", "from app.gui import main; raise SystemExit(main())"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    shown = [line for line in proc.stdout.splitlines() if line.startswith("SDGRAPH_SHOWN")]
    assert proc.returncode == 0, proc.stderr
    assert shown and shown[0].endswith("torch=0"), proc.stdout + proc.stderr
    assert not list((tmp_path / "autosave").glob("session-*.lock"))  # it exited cleanly


def test_opening_another_workflow_during_a_run_stops_it_quietly(
    window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    ids = build_chain(window, slow_steps=300, delay=0.01)
    task = window.run()
    wait_for(qloop, lambda: window.view.node_item(ids["slow"]).progress is not None)
    answer_next_box(qtbot, QMessageBox.StandardButton.Discard, [])
    assert window.new_document()

    result = qloop.run_until_complete(task)  # the old run ends at its next step, without errors

    assert result.status == "cancelled"
    assert ("SavePNG", ids["save"]) not in RAN
    assert window.graph.nodes == {} and window.images.image_paths() == []
    assert not any("failed" in text for text, _ in window.log.entries())
    assert not window.act_cancel.isEnabled()


def test_export_png_embeds_the_workflow_and_opens_again(window: MainWindow, tmp_path: Path) -> None:
    build_chain(window)
    picture = tmp_path / "graph.png"
    assert window.export(picture)
    from PIL import Image

    with Image.open(picture) as img:
        assert img.width > 200 and img.height > 100
    exported = graph_to_dict(window.graph)
    window.undo_stack.setClean()
    assert window.new_document() and window.graph.nodes == {}
    assert window.open_file(picture)
    assert graph_to_dict(window.graph) == exported
    assert window.path is None  # a picture is not where Save writes the workflow


def test_closing_with_unsaved_changes_asks_and_a_clean_exit_removes_the_session_lock(
    window: MainWindow, qtbot: Any, sdgraph_home: Path
) -> None:
    lock = window.autosaver.store.lock_path  # type: ignore[union-attr]
    assert lock.exists()
    window.add_node("Const")
    answer_next_box(qtbot, QMessageBox.StandardButton.Cancel, [])
    assert window.close() is False
    assert window.isVisible() and lock.exists()

    answer_next_box(qtbot, QMessageBox.StandardButton.Discard, [])
    assert window.close() is True
    assert not lock.exists()
    assert not list((sdgraph_home / "autosave").glob("*.json"))


def test_a_template_opened_by_path_opens_untitled_and_save_never_writes_over_it(
    window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sdgraph gui sdxl` resolves a shipped template to its file; the user's Save must ask for a new
    place (as File > Templates does), not write the edited graph into the templates folder."""
    window.templates_dir.mkdir()
    graph = Graph()
    chain(graph)
    template = window.templates_dir / "chain.json"
    save(graph, template)
    before = template.read_bytes()
    assert window.load_document(template)
    assert window.doc is not None and window.doc.path is None
    assert file_dialogs.start_folder().resolve() != window.templates_dir.resolve()  # Save As starts elsewhere
    build_chain(window)  # an edit
    asked: list[bool] = []
    monkeypatch.setattr(window, "save_as", lambda *a, **k: asked.append(True) or False)
    window.save()
    assert asked == [True] and template.read_bytes() == before
    elsewhere = tmp_path / "mine.json"  # the same file anywhere else is the user's own: saved in place
    elsewhere.write_bytes(before)
    assert window.load_document(elsewhere)
    assert window.doc is not None and window.doc.path == elsewhere
