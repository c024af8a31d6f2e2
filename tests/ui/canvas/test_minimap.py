"""The minimap, driven with real mouse events and checked on its painted pixels and on the real view.

The graphs here are wider than the 1000×700 canvas, so the minimap is needed; where it is painted is
checked by reading its pixels (a node's colour where its centre maps, the frame's bright edge where the
visible scene rectangle maps), and a click in it is checked by what the canvas then shows."""

from __future__ import annotations

import math

from canvas_helpers import drag
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtTest import QTest

from graph_engine import Graph
from ui.canvas import GraphView
from ui.canvas.colours import BY_NAME
from ui.canvas.minimap import Minimap

LEFT = Qt.MouseButton.LeftButton
NO_MOD = Qt.KeyboardModifier.NoModifier


def add(graph: Graph, registry, type_: str, pos: tuple[float, float]) -> int:
    return graph.add_node(type_, registry.get(type_).default_values(), pos=pos).id


def settle(qtbot, minimap: Minimap) -> None:
    """Let the canvas repaint and the minimap's coalescing timer run (it catches up ms after a change)."""
    qtbot.wait(40)
    qtbot.waitUntil(lambda: not minimap._timer.isActive(), timeout=2000)
    qtbot.wait(5)


def image_of(minimap: Minimap) -> QImage:
    return minimap.grab().toImage()


def px(p: QPointF) -> QPoint:
    """The pixel a point of the minimap falls in (not the nearest pixel corner, as `toPoint` gives)."""
    return QPoint(math.floor(p.x()), math.floor(p.y()))


def near(a: QColor, b: QColor, tol: int) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a.getRgb()[:3], b.getRgb()[:3], strict=True))


def node_centre(view: GraphView, nid: int) -> QPointF:
    item = view.node_item(nid)
    return item.mapRectToScene(item.layout.rect).center()


def visible_scene_rect(view: GraphView) -> QRectF:
    return view.mapToScene(view.viewport().rect()).boundingRect()


def wide_graph(graph: Graph, registry) -> dict[str, int]:
    ids = {"near": add(graph, registry, "Number", (0, 0)), "mid": add(graph, registry, "Add", (1400, 600))}
    ids["far"] = add(graph, registry, "Sampler", (3200, 1400))
    graph.set_color(ids["far"], BY_NAME["red"].color)
    return ids


def test_minimap_shows_nodes_and_the_visible_area(view: GraphView, graph: Graph, registry, qtbot) -> None:
    ids = wide_graph(graph, registry)
    minimap = view.minimap
    settle(qtbot, minimap)
    assert minimap.isVisible()
    # in the bottom-right corner of the canvas
    corner = view.viewport().rect().bottomRight()
    assert (corner - minimap.geometry().bottomRight()).manhattanLength() < 40
    image = image_of(minimap)
    # the far node is painted in its (red) title colour where its centre maps
    far_at = px(minimap.scene_to_map(node_centre(view, ids["far"])))
    assert near(image.pixelColor(far_at), BY_NAME["red"].title_color, 30)
    empty_at = px(minimap.scene_to_map(QPointF(3200, 300)))  # nothing there
    assert not near(image.pixelColor(empty_at), BY_NAME["red"].title_color, 30)
    # the frame's top edge lies where the visible scene rectangle maps
    shown = visible_scene_rect(view)
    top_left = minimap.scene_to_map(shown.topLeft())
    bottom_right = minimap.scene_to_map(shown.bottomRight())
    mid_x = (top_left.x() + bottom_right.x()) / 2
    edge = image.pixelColor(px(QPointF(mid_x, top_left.y())))
    inside = image.pixelColor(px(QPointF(mid_x, top_left.y() + 4)))
    assert min(edge.red(), edge.green(), edge.blue()) > 150, edge.name()
    assert max(inside.red(), inside.green(), inside.blue()) < 120, inside.name()
    left_edge = image.pixelColor(px(QPointF(top_left.x(), (top_left.y() + bottom_right.y()) / 2)))
    assert min(left_edge.red(), left_edge.green(), left_edge.blue()) > 150


def test_click_in_minimap_centres_the_canvas_there(view: GraphView, graph: Graph, registry, qtbot) -> None:
    ids = wide_graph(graph, registry)
    minimap = view.minimap
    settle(qtbot, minimap)
    far = view.node_item(ids["far"])
    assert not visible_scene_rect(view).intersects(far.sceneBoundingRect())
    at = minimap.scene_to_map(node_centre(view, ids["far"])).toPoint()
    QTest.mouseClick(minimap, LEFT, NO_MOD, at)
    centre = view.mapToScene(view.viewport().rect().center())
    assert far.mapRectToScene(far.layout.rect).contains(centre)
    assert graph.nodes[ids["far"]].pos == (3200, 1400)  # the click moved the view, not the node
    settle(qtbot, minimap)
    # the frame on screen followed: it was repainted for the new visible area, centred on that spot
    assert minimap.painted_rect == visible_scene_rect(view)
    assert (minimap.frame_rect().center() - QPointF(at)).manhattanLength() < 3

    # dragging in the map pans continuously
    start = minimap.scene_to_map(node_centre(view, ids["near"])).toPoint()
    end = minimap.scene_to_map(node_centre(view, ids["mid"])).toPoint()
    QTest.mousePress(minimap, LEFT, NO_MOD, start)
    centre = view.mapToScene(view.viewport().rect().center())
    assert view.node_item(ids["near"]).mapRectToScene(view.node_item(ids["near"]).layout.rect).contains(centre)
    for i in range(1, 5):
        QTest.mouseMove(minimap, start + (end - start) * (i / 4))
    QTest.mouseRelease(minimap, LEFT, NO_MOD, end)
    centre = view.mapToScene(view.viewport().rect().center())
    mid = view.node_item(ids["mid"])
    assert mid.mapRectToScene(mid.layout.rect).contains(centre)


def test_minimap_follows_the_graph_and_the_view(view: GraphView, graph: Graph, registry, qtbot) -> None:
    ids = wide_graph(graph, registry)
    minimap = view.minimap
    settle(qtbot, minimap)
    rebuilds = minimap.rebuilds

    # panning and zooming repaint the frame on screen, without redrawing the nodes
    before = minimap.painted_rect
    assert before == visible_scene_rect(view)
    view.centerOn(1500, 700)
    settle(qtbot, minimap)
    assert minimap.painted_rect == visible_scene_rect(view)
    assert minimap.painted_rect.center().x() > before.center().x() + 500
    # the view scrolls its viewport's children with the scene; the minimap stays in its corner
    corner = view.viewport().rect().bottomRight()
    assert (corner - minimap.geometry().bottomRight()).manhattanLength() < 40
    view.scale(0.5, 0.5)
    settle(qtbot, minimap)
    assert minimap.painted_rect == visible_scene_rect(view)
    assert minimap.painted_rect.width() > 1.9 * before.width()
    assert minimap.rebuilds == rebuilds

    # a node dragged on the canvas moves in the map
    view.resetTransform()
    view.centerOn(node_centre(view, ids["mid"]))
    mid = view.node_item(ids["mid"])
    title = mid.mapToScene(QPointF(60, 10))
    drag(view, title, title + QPointF(0, 300))
    assert graph.nodes[ids["mid"]].pos == (1400, 900)
    settle(qtbot, minimap)
    image = image_of(minimap)
    moved_at = px(minimap.scene_to_map(node_centre(view, ids["mid"])))
    assert near(image.pixelColor(moved_at), mid.header_color(), 30)

    # a burst of additions is drawn once
    rebuilds = minimap.rebuilds
    for k in range(200):
        add(graph, registry, "Number", (k * 40.0, 2200.0))
    settle(qtbot, minimap)
    assert minimap.rebuilds == rebuilds + 1
    image = image_of(minimap)
    added = view.node_item(max(graph.nodes))
    added_at = px(minimap.scene_to_map(node_centre(view, added.node_id)))
    assert near(image.pixelColor(added_at), added.header_color(), 30)


def test_minimap_hides_when_the_graph_fits_or_is_switched_off(view: GraphView, graph: Graph, registry, qtbot) -> None:
    add(graph, registry, "Number", (0, 0))
    add(graph, registry, "Add", (300, 100))
    minimap = view.minimap
    settle(qtbot, minimap)
    assert not minimap.isVisible()  # everything is on screen already
    far = add(graph, registry, "Number", (2600, 900))
    settle(qtbot, minimap)
    assert minimap.isVisible()
    minimap.set_wanted(False)
    assert not minimap.isVisible()
    view.fit_all()
    minimap.set_wanted(True)
    assert not minimap.isVisible()  # fitted: the whole graph is visible
    view.resetTransform()
    view.centerOn(node_centre(view, far))
    view.viewport().repaint()
    settle(qtbot, minimap)
    assert minimap.isVisible()


def test_minimap_shrinks_on_a_small_canvas(view: GraphView, graph: Graph, registry, qtbot) -> None:
    ids = wide_graph(graph, registry)
    minimap = view.minimap
    settle(qtbot, minimap)
    assert (minimap.width(), minimap.height()) == (200, 140)
    view.resize(420, 330)
    settle(qtbot, minimap)
    assert minimap.isVisible()
    assert minimap.width() <= 0.35 * view.viewport().width() + 1 and minimap.height() < 140
    corner = view.viewport().rect().bottomRight()
    assert (corner - minimap.geometry().bottomRight()).manhattanLength() < 40
    # redrawn for its new size: the far node is still where its centre maps
    image = image_of(minimap)
    far_at = px(minimap.scene_to_map(node_centre(view, ids["far"])))
    assert minimap.rect().contains(far_at)
    assert near(image.pixelColor(far_at), BY_NAME["red"].title_color, 30)
