"""The Queue dock on the real window: queued runs with what each changes, reorder, cancel one, pause.

Runs go through the window's RunController on the toy nodes (Const → Slow → SavePNG, pure Python),
so the order the runs finish in is the order the engine ran them. Everything the user does in the
panel is a real mouse click on its buttons and rows, or a real key press on its list.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gui_toy_nodes import RAN, chain
from PySide6.QtCore import QModelIndex, QPointF, Qt

from graph_engine import Graph
from graph_engine.serialization import graph_from_dict
from ui.commands import connect_command, set_values_command
from ui.main_window import MainWindow
from ui.panels.queue import FIRST_RUN, QueuePanel
from ui.run_controller import CompletedRun


def wait_for(qloop: asyncio.AbstractEventLoop, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not condition():
            assert loop.time() < end, "timed out"
            await asyncio.sleep(0.01)

    qloop.run_until_complete(poll())


def settle(qloop: asyncio.AbstractEventLoop, seconds: float) -> None:
    qloop.run_until_complete(asyncio.sleep(seconds))


def build_chain(win: MainWindow, **kw: Any) -> dict[str, int]:
    """Const → Slow → SavePNG in the window's graph, as undoable edits."""
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


def set_value(win: MainWindow, node_id: int, key: str, value: Any) -> None:
    win.undo_stack.push(set_values_command(win.graph, [(node_id, key)], value, f"Set {key}"))


def finished_values(win: MainWindow, node_id: int, key: str = "value") -> list[int]:
    """One node's value in every run that completes from now on (as the run ran it), in order."""
    seen: list[int] = []

    def completed(run: CompletedRun) -> None:
        seen.append(graph_from_dict(run.workflow).nodes[node_id].values[key])

    win.controller.runCompleted.connect(completed)
    return seen


def panel_of(win: MainWindow, qtbot: Any) -> QueuePanel:
    win.queue_dock.show()
    win.queue_dock.raise_()
    qtbot.waitUntil(lambda: win.queue.isVisible())
    return win.queue


def click_row(qtbot: Any, panel: QueuePanel, row: int) -> None:
    item = panel.list.item(row)
    qtbot.waitUntil(lambda: panel.list.visualItemRect(item).isValid())  # the list lays its rows out lazily
    panel.list.scrollToItem(item)  # the dock is short; scroll to the row as a person would
    rect = panel.list.visualItemRect(panel.list.item(row))
    assert panel.list.viewport().rect().contains(rect.center())
    qtbot.mouseClick(panel.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert panel.list.currentRow() == row


def test_the_queue_dock_is_tabbed_with_the_log_and_toggled_from_the_view_menu(toy_window: MainWindow) -> None:
    assert toy_window.queue_dock in toy_window.tabifiedDockWidgets(toy_window.log_dock)
    view_menu = next(a.menu() for a in toy_window.menuBar().actions() if a.text() == "&View")
    assert toy_window.queue_dock.toggleViewAction() in view_menu.actions()


def test_paused_queue_shows_changes_reorders_cancels_and_runs_in_the_new_order(
    toy_window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    win = toy_window
    ids = build_chain(win, slow_steps=3, delay=0.01)
    panel = panel_of(win, qtbot)
    done = finished_values(win, ids["const"])
    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    assert win.controller.paused and panel.pause_button.text() == "Resume"
    assert "queue paused" in win.status.text()

    tasks = []
    for value in (3, 4, 5, 6):
        set_value(win, ids["const"], "value", value)
        tasks.append(win.run())
    set_value(win, ids["slow"], "steps", 9)  # after the last Run: no queued run has it
    settle(qloop, 0.4)
    assert RAN == [] and not win.controller.running  # paused: nothing started
    assert panel.list.count() == 4
    assert panel.changes() == [FIRST_RUN, "Const.value 3 → 4", "Const.value 4 → 5", "Const.value 5 → 6"]
    assert panel.state.text() == "idle · 4 waiting · queue paused"

    click_row(qtbot, panel, 2)  # the run with 5: up to the front
    qtbot.mouseClick(panel.up_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(panel.up_button, Qt.MouseButton.LeftButton)
    assert panel.list.currentRow() == 0
    assert panel.changes() == [FIRST_RUN, "Const.value 5 → 3", "Const.value 3 → 4", "Const.value 4 → 6"]
    click_row(qtbot, panel, 2)  # the run with 4: down with the keyboard
    qtbot.keyClick(panel.list, Qt.Key.Key_Down, Qt.KeyboardModifier.ControlModifier)
    assert panel.changes() == [FIRST_RUN, "Const.value 5 → 3", "Const.value 3 → 6", "Const.value 6 → 4"]
    click_row(qtbot, panel, 2)  # the run with 6: dropped with Del
    qtbot.keyClick(panel.list, Qt.Key.Key_Delete)
    assert panel.changes() == [FIRST_RUN, "Const.value 5 → 3", "Const.value 3 → 4"]
    assert win.controller.queued == 3
    assert win.statusBar().currentMessage().startswith("Dropped queued run")

    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    results = [qloop.run_until_complete(t) for t in tasks]

    assert done == [5, 3, 4]  # the new order; each ran the document as it was queued
    assert [r.status if r else None for r in results] == ["done", "done", "done", None]  # 6 was dropped
    assert ("Slow", ids["slow"]) in RAN and win.graph.nodes[ids["slow"]].values["steps"] == 9
    assert panel.list.count() == 0 and panel.state.text() == "idle · nothing waiting"
    assert not win.controller.paused and "queue paused" not in win.status.text()


def test_pause_while_running_lets_the_run_finish_and_holds_the_next_until_resumed(
    toy_window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    win = toy_window
    ids = build_chain(win, slow_steps=30, delay=0.01)
    panel = panel_of(win, qtbot)
    done = finished_values(win, ids["const"])
    first = win.run()
    wait_for(qloop, lambda: win.view.node_item(ids["slow"]).progress is not None)
    set_value(win, ids["const"], "value", 7)
    set_value(win, ids["slow"], "steps", 5)
    second = win.run()
    wait_for(qloop, lambda: win.controller.queued == 1)
    assert panel.current.text() == "▶ run"
    assert panel.changes() == ["Const.value 3 → 7, Slow.steps 30 → 5"]
    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    assert panel.state.text() == "running · 1 waiting · queue paused"

    assert qloop.run_until_complete(first).status == "done"
    settle(qloop, 0.3)
    assert done == [3] and not win.controller.running and win.controller.queued == 1
    assert "queue paused, 1 waiting" in win.status.text()
    assert panel.changes() == ["Const.value 3 → 7, Slow.steps 30 → 5"]  # compared with the last run now

    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    assert qloop.run_until_complete(second).status == "done"
    assert done == [3, 7]


def test_the_panel_follows_the_open_document(toy_window: MainWindow, qtbot: Any) -> None:
    panel = panel_of(toy_window, qtbot)
    old = toy_window.controller
    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    assert old.paused
    toy_window.new_document()
    assert panel.controller is toy_window.controller is not old
    assert panel.pause_button.text() == "Pause" and "paused" not in panel.state.text()


def test_seeds_with_a_control_are_drawn_when_the_run_starts_and_fixed_ones_as_queued(
    toy_window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    win = toy_window
    seeded = win.add_node("Seeded", QPointF(0, 0))
    save = win.add_node("SavePNG", QPointF(300, 0))
    assert seeded is not None and save is not None
    win.undo_stack.push(connect_command(win.graph, seeded, "INT", save, "x", "INT"))
    win.graph.set_extra(seeded, "control_after_generate", "increment")
    set_value(win, seeded, "seed", 5)
    panel = panel_of(win, qtbot)
    ran = finished_values(win, seeded, "seed")
    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    tasks = [win.run(), win.run()]
    wait_for(qloop, lambda: win.controller.queued == 2)
    assert panel.changes() == [FIRST_RUN, "Seeded.seed +1"]  # not "5 → 5": the value is drawn at start
    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    for task in tasks:
        qloop.run_until_complete(task)
    assert ran == [5, 6] and win.graph.nodes[seeded].values["seed"] == 7

    win.graph.set_extra(seeded, "control_after_generate", "fixed")
    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    tasks = [win.run()]
    set_value(win, seeded, "seed", 11)
    tasks.append(win.run())
    set_value(win, seeded, "seed", 12)  # after both were queued: neither runs it
    wait_for(qloop, lambda: win.controller.queued == 2)
    assert panel.changes() == ["Seeded.seed 6 → 7", "Seeded.seed 7 → 11"]  # compared with the last run (6)
    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    for task in tasks:
        qloop.run_until_complete(task)
    assert ran == [5, 6, 7, 11]


def test_a_row_dragged_to_another_place_moves_that_run_in_the_queue(
    toy_window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    """Offscreen Qt ends a QDrag at once, so the drop is given as QListWidget's internal-move drop applies
    it: the list model moves the row (rowsMoved); the panel must carry that move over to the queue."""
    win = toy_window
    ids = build_chain(win, slow_steps=2, delay=0.01)
    panel = panel_of(win, qtbot)
    done = finished_values(win, ids["const"])
    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    tasks = []
    for value in (3, 4, 5):
        set_value(win, ids["const"], "value", value)
        tasks.append(win.run())
    wait_for(qloop, lambda: win.controller.queued == 3)
    assert panel.list.model().moveRows(QModelIndex(), 2, 1, QModelIndex(), 0)  # the 5 dropped above the 3
    qtbot.waitUntil(lambda: panel.changes() == [FIRST_RUN, "Const.value 5 → 3", "Const.value 3 → 4"])
    assert panel.list.currentRow() == 0
    qtbot.mouseClick(panel.pause_button, Qt.MouseButton.LeftButton)
    for task in tasks:
        qloop.run_until_complete(task)
    assert done == [5, 3, 4]
