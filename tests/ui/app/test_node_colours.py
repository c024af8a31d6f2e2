"""Node and group colours in the real window: right-click → Colour → a colour, clicked with the mouse in
the real popup menus; checked on the model, on the painted pixels, through Ctrl+Z and a save/reopen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QContextMenuEvent, QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMenu

from ui import theme
from ui.canvas.colours import BY_NAME, node_bgcolor
from ui.main_window import MainWindow

LEFT = Qt.MouseButton.LeftButton
NO_MOD = Qt.KeyboardModifier.NoModifier


def right_click(view: Any, scene_pos: QPointF) -> QMenu:
    """A right click on the canvas, and the context menu it opens (QTest sends no context-menu event)."""
    w = view.viewport()
    p = view.mapFromScene(scene_pos)
    QTest.mouseMove(w, p)
    QTest.mouseClick(w, Qt.MouseButton.RightButton, NO_MOD, p)
    QApplication.sendEvent(w, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, p, w.mapToGlobal(p)))
    menu = QApplication.activePopupWidget()
    assert isinstance(menu, QMenu) and menu is view.active_menu
    return menu


def click_menu_path(qtbot: Any, menu: QMenu, *texts: str) -> None:
    """Click the entries `texts` one after the other with the mouse: a submenu entry opens its submenu."""
    for text in texts:
        qtbot.waitUntil(menu.isVisible)
        action = next(a for a in menu.actions() if a.text() == text)
        pos = menu.actionGeometry(action).center()
        QTest.mouseMove(menu, pos)
        QTest.mouseClick(menu, LEFT, NO_MOD, pos)
        if action.menu() is not None:
            menu = action.menu()
            qtbot.waitUntil(menu.isVisible)


def title_pixel(window: MainWindow, node_id: int) -> QColor:
    """The painted colour at the right end of a node's title bar (away from its text)."""
    view = window.view
    item = view.node_item(node_id)
    lay = item.layout
    at = item.mapToScene(QPointF(lay.width - 10, theme.TITLE_HEIGHT / 2))
    image: QImage = view.viewport().grab().toImage()
    return image.pixelColor(view.mapFromScene(at))


def body_pixel(window: MainWindow, node_id: int) -> QColor:
    view = window.view
    item = view.node_item(node_id)
    lay = item.layout
    at = item.mapToScene(QPointF(lay.width - 6, lay.height - 4))
    return view.viewport().grab().toImage().pixelColor(view.mapFromScene(at))


def close(a: QColor, b: QColor, tol: int = 3) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a.getRgb()[:3], b.getRgb()[:3], strict=True))


def test_colour_a_node_from_its_menu_undo_and_reopen(toy_window: MainWindow, qtbot: Any, tmp_path: Path) -> None:
    window = toy_window
    graph = window.graph
    graph.replace_with(type(graph)())
    n = graph.add_node("Const", {"value": 3}, pos=(0, 0)).id
    other = graph.add_node("Const", {"value": 4}, pos=(0, 200)).id
    window.view.resetTransform()
    window.view.centerOn(200, 150)
    default_title = title_pixel(window, n)
    green = BY_NAME["green"]
    assert not close(default_title, green.title_color)

    item = window.view.node_item(n)
    menu = right_click(window.view, item.mapToScene(QPointF(40, theme.TITLE_HEIGHT / 2)))
    click_menu_path(qtbot, menu, "Colour", "Green")

    node = graph.nodes[n]
    assert node.color == "#232"  # ComfyUI's green, as ComfyUI stores it
    assert node_bgcolor(node) == "#353"
    assert graph.nodes[other].color is None  # only the clicked (selected) node
    assert close(title_pixel(window, n), green.title_color)
    assert close(body_pixel(window, n), green.body_color)
    assert close(title_pixel(window, other), default_title)

    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert graph.nodes[n].color is None and "comfy" not in graph.nodes[n].extra
    assert close(title_pixel(window, n), default_title)
    QTest.keyClick(window.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert graph.nodes[n].color == "#232"

    path = tmp_path / "coloured.json"
    assert window.save_as(path, "sdgraph")
    assert window.load_document(path)
    reopened = window.graph.nodes[n]
    assert reopened.color == "#232" and node_bgcolor(reopened) == "#353"
    window.view.resetTransform()
    window.view.centerOn(200, 150)
    assert close(title_pixel(window, n), green.title_color)


def test_colour_applies_to_every_selected_node_as_one_undo_step(toy_window: MainWindow, qtbot: Any) -> None:
    window = toy_window
    graph = window.graph
    graph.replace_with(type(graph)())
    a = graph.add_node("Const", {}, pos=(0, 0)).id
    b = graph.add_node("Const", {}, pos=(300, 0)).id
    c = graph.add_node("Const", {}, pos=(0, 250)).id
    graph.set_color(b, "#123456")  # a custom colour (not in the palette) that must come back on undo
    window.view.resetTransform()
    window.view.centerOn(300, 200)
    window.view.select_nodes([a, b])

    item = window.view.node_item(b)
    menu = right_click(window.view, item.mapToScene(QPointF(40, theme.TITLE_HEIGHT / 2)))
    colour_menu = next(act.menu() for act in menu.actions() if act.text() == "Colour")
    assert not any(act.isChecked() for act in colour_menu.actions())  # mixed: nothing is checked
    click_menu_path(qtbot, menu, "Colour", "Purple")
    assert graph.nodes[a].color == graph.nodes[b].color == "#323"
    assert graph.nodes[c].color is None
    assert window.undo_stack.count() == 1

    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert graph.nodes[a].color is None and graph.nodes[b].color == "#123456"

    # "No colour" clears; the menu shows the current colour checked
    window.view.select_nodes([b])
    menu = right_click(window.view, item.mapToScene(QPointF(40, theme.TITLE_HEIGHT / 2)))
    click_menu_path(qtbot, menu, "Colour", "Purple")
    menu = right_click(window.view, item.mapToScene(QPointF(40, theme.TITLE_HEIGHT / 2)))
    colour_menu = next(act.menu() for act in menu.actions() if act.text() == "Colour")
    assert [act.text() for act in colour_menu.actions() if act.isChecked()] == ["Purple"]
    click_menu_path(qtbot, menu, "Colour", "No colour")
    assert graph.nodes[b].color is None and node_bgcolor(graph.nodes[b]) is None


def test_colour_a_group_from_its_context_menu(toy_window: MainWindow, qtbot: Any) -> None:
    window = toy_window
    graph = window.graph
    graph.replace_with(type(graph)())
    graph.add_node("Const", {}, pos=(20, 60))
    gid = graph.add_group("Inputs", (0, 0, 320, 220)).id
    window.view.resetTransform()
    window.view.centerOn(200, 150)
    gitem = window.view.group_item(gid)
    title_at = gitem.mapToScene(QPointF(200, theme.GROUP_TITLE_HEIGHT / 2))

    menu = right_click(window.view, title_at)
    click_menu_path(qtbot, menu, "Colour", "Blue")
    assert graph.groups[gid].color == "#88A"  # ComfyUI's group blue
    image = window.view.viewport().grab().toImage()
    painted = image.pixelColor(window.view.mapFromScene(title_at + QPointF(60, 0)))
    assert painted.blue() > painted.red() + 8  # the title band is tinted blue

    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert graph.groups[gid].color is None
