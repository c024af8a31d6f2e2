"""Issue 10, bug 8: nothing on screen describes a run or a graph that is no longer there.

After a cancel the preview of the half-finished image goes; after an edit (or its undo) the nodes it
affects lose their done/cached badges while the rest keep theirs; the status bar's node count follows
undo and redo.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gui_toy_nodes import RAN
from PySide6.QtCore import QPointF, Qt

from tests.ui.app.test_main_window import build_chain, wait_for
from ui.commands import set_value_command
from ui.main_window import MainWindow

CTRL = Qt.KeyboardModifier.ControlModifier


def test_cancel_clears_the_in_progress_preview(
    toy_window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    win = toy_window
    ids = build_chain(win, slow_steps=300, delay=0.01)
    task = win.run()
    wait_for(qloop, lambda: win.images.preview_caption.text() != "")
    win.view.setFocus()
    qtbot.keyClick(win.view, Qt.Key.Key_Escape)
    result = qloop.run_until_complete(task)
    assert result.status == "cancelled"
    assert ("SavePNG", ids["save"]) not in RAN
    assert win.images.preview_caption.text() == ""


def test_an_edit_and_its_undo_clear_the_badges_downstream_only(
    toy_window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    win = toy_window
    ids = build_chain(win, slow_steps=2, delay=0.0)
    result = qloop.run_until_complete(win.run())
    assert result.status == "done"
    states = {role: win.view.node_item(nid).run_state for role, nid in ids.items()}
    assert set(states.values()) == {"done"}

    # An edit as the inline editor makes it: one undo step setting Slow's steps.
    win.undo_stack.push(set_value_command(win.graph, ids["slow"], "steps", 3))
    assert win.view.node_item(ids["const"]).run_state == "done"  # upstream: still the result shown
    assert win.view.node_item(ids["slow"]).run_state == ""
    assert win.view.node_item(ids["save"]).run_state == ""

    qloop.run_until_complete(win.run())
    assert win.view.node_item(ids["slow"]).run_state == "done"
    win.view.setFocus()
    qtbot.keyClick(win.view, Qt.Key.Key_Z, CTRL)  # undo the edit: steps is 2 again
    assert win.graph.nodes[ids["slow"]].values["steps"] == 2
    assert win.view.node_item(ids["slow"]).run_state == ""
    assert win.view.node_item(ids["save"]).run_state == ""
    assert win.view.node_item(ids["const"]).run_state in ("done", "cached")


def test_status_bar_node_count_follows_delete_undo_and_redo(toy_window: MainWindow, qtbot: Any) -> None:
    win = toy_window
    build_chain(win)
    assert "3 nodes" in win.status.text()
    win.view.select_nodes(list(win.graph.nodes)[:1])
    win.view.setFocus()
    qtbot.keyClick(win.view, Qt.Key.Key_Delete)
    assert len(win.graph.nodes) == 2 and "2 nodes" in win.status.text()
    qtbot.keyClick(win.view, Qt.Key.Key_Z, CTRL)
    assert len(win.graph.nodes) == 3 and "3 nodes" in win.status.text()
    qtbot.keyClick(win.view, Qt.Key.Key_Z, CTRL | Qt.KeyboardModifier.ShiftModifier)
    assert "2 nodes" in win.status.text()
    win.add_node("Const", QPointF(500, 500))
    assert "3 nodes" in win.status.text()
