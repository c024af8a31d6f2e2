"""View ▸ Minimap in the real window: clicked with the mouse in the menu bar, it hides the canvas's
minimap, and the choice is remembered by the next window (and kept across New/Open)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gui_toy_nodes import toy_registry
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMenu

from app.settings import Settings
from ui.main_window import MainWindow

LEFT = Qt.MouseButton.LeftButton
NO_MOD = Qt.KeyboardModifier.NoModifier


def click_view_menu_entry(qtbot: Any, window: MainWindow, text: str) -> None:
    bar = window.menuBar()
    view_action = next(a for a in bar.actions() if a.text() == "&View")
    QTest.mouseClick(bar, LEFT, NO_MOD, bar.actionGeometry(view_action).center())
    menu = view_action.menu()
    assert isinstance(menu, QMenu)
    qtbot.waitUntil(menu.isVisible)
    entry = next(a for a in menu.actions() if a.text() == text)
    QTest.mouseClick(menu, LEFT, NO_MOD, menu.actionGeometry(entry).center())


def spread_graph(qtbot: Any, window: MainWindow) -> None:
    """Nodes far apart, and the canvas at 100% on the first one: most of the graph is off screen."""
    qtbot.wait(20)  # a new document's view fits itself to the graph once it has its size
    graph = window.graph
    for i in range(4):
        graph.add_node("Const", {"value": i}, pos=(i * 1500.0, i * 700.0))
    window.view.resetTransform()
    window.view.centerOn(100, 50)


def test_view_menu_toggles_the_minimap_and_remembers(toy_window: MainWindow, qtbot: Any, tmp_path: Path) -> None:
    window = toy_window
    spread_graph(qtbot, window)
    minimap = window.view.minimap
    qtbot.waitUntil(minimap.isVisible)
    assert window.act_minimap.isCheckable() and window.act_minimap.isChecked()

    click_view_menu_entry(qtbot, window, "&Minimap")
    assert not window.act_minimap.isChecked()
    assert not minimap.isVisible() and not minimap.wanted

    # a new document keeps the choice
    window.new_document()
    spread_graph(qtbot, window)
    qtbot.wait(60)
    assert not window.view.minimap.isVisible()  # (switched back on below, the same graph shows it)

    # and so does the next start
    other = MainWindow(toy_registry(), Settings(output_dir=str(tmp_path / "out")), templates_dir=tmp_path / "t")
    qtbot.addWidget(other, before_close_func=lambda w: setattr(w, "prompt_on_close", False))
    assert not other.act_minimap.isChecked() and not other.view.minimap.wanted
    other.close_without_prompt()

    click_view_menu_entry(qtbot, window, "&Minimap")
    assert window.act_minimap.isChecked()
    qtbot.waitUntil(window.view.minimap.isVisible)
