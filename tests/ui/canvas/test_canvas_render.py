"""Pixels, run-state display, level of detail, model resets and the 500-node budget."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest
from canvas_helpers import demo_graph
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QColor, QImage, QUndoStack

from graph_engine import Graph
from graph_engine.validation import Problem
from ui import theme
from ui.canvas import GraphView

REPO = Path(__file__).resolve().parents[3]


def near(c: QColor, ref: QColor, tol: int = 24) -> bool:
    return abs(c.red() - ref.red()) <= tol and abs(c.green() - ref.green()) <= tol and abs(c.blue() - ref.blue()) <= tol


def test_screenshot_is_legible(view: GraphView, graph: Graph, registry, tmp_path: Path, qtbot) -> None:
    ids = demo_graph(graph, registry)
    view.set_node_state(ids["sampler"], "running", progress=(7, 20), elapsed=3.4)
    view.set_node_state(ids["decode"], "error", message="CUDA out of memory while decoding; try a tiled decode")
    img = QImage(256, 192, QImage.Format.Format_RGB32)
    img.fill(QColor("#3a7bd5"))
    view.set_node_images(ids["image"], [img])
    view.set_problems([Problem("missing_input", "required INT input is not connected", ids["add"], "Add", "b")])
    view.resize(1100, 620)
    view.fit_all()
    qtbot.wait(10)
    pix = view.grab()
    pix.save(str(tmp_path / "canvas.png"))
    if os.environ.get("SDGRAPH_SAVE_SCREENSHOTS"):
        out = REPO / "docs" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        pix.save(str(out / "canvas-dev.png"))
    image = view.viewport().grab().toImage()
    colors = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colors) > 50, "the canvas rendered (nearly) uniform"
    # a LATENT output socket is drawn in the LATENT colour
    sock = view.mapFromScene(view.node_item(ids["latent"]).output_pos("LATENT"))
    assert near(image.pixelColor(sock), theme.type_color("LATENT"))
    # the empty right end of a title bar shows the category colour
    item = view.node_item(ids["latent"])
    spot = view.mapFromScene(item.mapToScene(QPointF(item.layout.width - 20, 8)))
    assert near(image.pixelColor(spot), theme.category_color("latent"))
    # the thumbnail is shown inside the Save/Preview-like node
    sink = view.node_item(ids["image"])
    thumb = view.mapFromScene(sink.mapToScene(sink.layout.image_rect.center()))
    assert near(image.pixelColor(thumb), QColor("#3a7bd5"))


def test_problem_outline_stays_visible_when_zoomed_out(view: GraphView, graph: Graph, registry) -> None:
    n = graph.add_node("Number", {"value": 1}, pos=(0, 0)).id
    view.resetTransform()
    view.scale(0.12, 0.12)
    view.centerOn(100, 40)
    item = view.node_item(n)
    rect = item.mapRectToScene(item.layout.rect)

    def red_pixels() -> int:
        image = view.viewport().grab().toImage()
        top = view.mapFromScene(QPointF(rect.center().x(), rect.top()))
        return sum(
            near(image.pixelColor(top.x() + dx, top.y() + dy), theme.PROBLEM, 40)
            for dx in range(-6, 7)
            for dy in range(-8, 3)
        )

    assert red_pixels() == 0
    view.set_problems([Problem("bad_value", "101 is above the maximum 100", n, "Number", "value")])
    assert theme.problem_pen().isCosmetic()
    assert red_pixels() >= 13  # a continuous line a few device pixels thick, not a hairline
    assert "value: 101 is above the maximum 100" in item.toolTip()
    view.clear_run_state()
    assert red_pixels() == 0 and item.toolTip() == ""


def test_level_of_detail_never_changes_geometry(view: GraphView, graph: Graph, registry) -> None:
    ids = demo_graph(graph, registry)
    item = view.node_item(ids["sampler"])
    before = (item.boundingRect(), item.layout.rect, item.input_pos("latent"))
    view.resetTransform()
    view.scale(0.2, 0.2)
    view.viewport().grab()
    assert (item.boundingRect(), item.layout.rect, item.input_pos("latent")) == before


def test_run_state_images_and_wires_follow(view: GraphView, graph: Graph, registry) -> None:
    ids = demo_graph(graph, registry)
    dec = view.node_item(ids["decode"])
    h0, b0 = dec.layout.height, dec.boundingRect()
    view.set_node_state(ids["decode"], "error", message="it broke")
    assert dec.run_state == "error" and dec.boundingRect().height() > b0.height()
    img_item = view.node_item(ids["image"])
    img = QImage(512, 512, QImage.Format.Format_RGB32)
    view.set_node_images(ids["image"], [img])
    assert img_item.layout.image_rect is not None and img_item.layout.height > h0
    view.set_node_state(ids["sampler"], "running", progress=(3, 10), elapsed=1.25)
    view.clear_run_state()
    assert (dec.run_state, dec.message, dec.boundingRect()) == ("", None, b0)
    assert view.node_item(ids["sampler"]).progress is None
    assert img_item.layout.image_rect is not None  # results stay until replaced
    view.set_node_state(9999, "done")  # a node deleted mid-run is ignored


def test_view_rebuilds_on_replace_with(view: GraphView, graph: Graph, registry) -> None:
    demo_graph(graph, registry)
    view.select_nodes([1])
    other = Graph()
    a = other.add_node("Number", {"value": 2}, pos=(10, 10)).id
    b = other.add_node("Add", {"a": 0, "b": 0}, pos=(300, 10)).id
    other.add_link(a, "INT", b, "a", "INT")
    graph.replace_with(other)
    assert set(view._nodes) == {a, b} and set(view._wires) == set(graph.links) and view._groups == {}
    assert view.node_item(b).pos().toTuple() == (300, 10)


def test_unknown_node_type_still_draws_its_wires(view: GraphView, graph: Graph, registry) -> None:
    n = graph.add_node("Number", {"value": 1}, pos=(0, 0)).id
    ghost = graph.add_node("NotInstalled", pos=(300, 0)).id
    graph.add_link(n, "INT", ghost, "amount", "INT")
    item = view.node_item(ghost)
    assert "amount" in item.layout.inputs
    wire = view.wire_item(next(iter(graph.links)))
    assert wire.boundingRect().contains(wire.mapFromScene(item.input_pos("amount")))


def test_500_nodes_load_fast_and_repaint_within_a_frame(qtbot, registry) -> None:
    graph = Graph()
    prev = None
    for i in range(500):
        nid = graph.add_node("Add", {"a": i, "b": 1}, pos=((i % 25) * 260.0, (i // 25) * 160.0)).id
        if prev is not None and i % 25:
            graph.add_link(prev, "INT", nid, "a", "INT")
        prev = nid
    stack = QUndoStack()
    t0 = time.perf_counter()
    view = GraphView(graph, registry, stack)
    load = time.perf_counter() - t0
    qtbot.addWidget(view)
    view.resize(1280, 800)
    view.show()
    qtbot.waitExposed(view)
    assert len(view._nodes) == 500 and len(view._wires) == len(graph.links)

    def repaint_ms() -> float:
        """Median time to render the whole viewport (grab() paints it synchronously into a pixmap)."""
        view.viewport().grab()  # warm the item caches at this zoom, as the first frame after a zoom would
        times = []
        for _ in range(7):
            t = time.perf_counter()
            view.viewport().grab()
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)

    view.fit_all()  # every node on screen, below the LOD threshold
    whole = repaint_ms()
    view.resetTransform()
    view.centerOn(QRectF(0, 0, 1280, 800).center())  # 100%: full detail on the visible part
    detail = repaint_ms()
    print(f"load {load * 1000:.0f} ms, repaint all {whole:.1f} ms, repaint 100% {detail:.1f} ms")
    assert load < 1.0
    # 16 ms is the target; the bound leaves room for a loaded 2-core test machine
    assert whole < 40 and detail < 40


@pytest.fixture(autouse=True)
def _no_leaks(qtbot):
    yield


def test_titles_stay_readable_when_zoomed_out(view: GraphView, graph: Graph, registry) -> None:
    """Below the detail zoom a node used to be a blank coloured box; its title is now drawn in a font
    scaled to stay `theme.FAR_TEXT_PX` tall on screen, and a failed node's error line under it."""
    n = graph.add_node("Number", {"value": 1}, pos=(0, 0)).id
    view.resetTransform()
    view.scale(0.3, 0.3)
    assert view.zoom() < theme.LOD_THRESHOLD  # the far drawing path
    view.centerOn(100, 40)
    item = view.node_item(n)

    def pixels_near(color: QColor, top: float, bottom: float) -> int:
        rect = item.mapRectToScene(item.layout.rect)  # an error message makes the node taller
        image = view.viewport().grab().toImage()
        a = view.mapFromScene(QPointF(rect.left(), rect.top() + top))
        b = view.mapFromScene(QPointF(rect.right(), rect.top() + bottom))
        return sum(near(image.pixelColor(x, y), color, 40) for x in range(a.x(), b.x()) for y in range(a.y(), b.y()))

    title_band = theme.FAR_TEXT_PX / view.zoom() + 6
    assert pixels_near(theme.TITLE_TEXT, 0, title_band) >= 15  # glyph strokes in the title colour
    pink_before = pixels_near(theme.ERROR_TEXT, 0, item.layout.height)  # a few antialiased edge pixels
    view.set_node_state(n, "error", message="value is out of range")
    assert pixels_near(theme.ERROR_TEXT, 0, item.layout.height) >= pink_before + 10
    assert pixels_near(theme.TITLE_TEXT, 0, item.layout.height) >= 15  # the title shares the room
