"""Primitives and Reroutes on the canvas, driven by real mouse and key events.

A Primitive wired to a widget takes that widget's shape (type, range, a seed's control selector) and its
value; the widget it drives is shown greyed with the value it gets. A Reroute sits on a wire (double-
click the wire), is drawn as a small pill, and passes the real type on: the editor refuses what the
source could not feed. The add-node search finds both.
"""

from __future__ import annotations

import pytest
from canvas_helpers import drag, vp
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from graph_engine import Graph, NodeRegistry
from graph_engine.validation import analyze
from nodes.primitive import primitive
from nodes.reroute import reroute
from tests.ui.canvas.conftest import make_registry
from ui.canvas import GraphView


@pytest.fixture
def registry() -> NodeRegistry:
    reg = make_registry()
    reg.register(primitive)
    reg.register(reroute)
    return reg


def add(graph: Graph, registry: NodeRegistry, type_: str, pos: tuple[float, float], **values: object) -> int:
    return graph.add_node(type_, registry.get(type_).default_values() | values, pos=pos).id


def wire(view: GraphView, src: int, out: str, dst: int, inp: str) -> None:
    drag(view, view.node_item(src).output_pos(out), view.node_item(dst).input_pos(inp))


def test_a_primitive_wired_to_a_seed_becomes_that_seed_and_drives_it(
    view: GraphView, graph: Graph, registry: NodeRegistry
) -> None:
    p = add(graph, registry, "PrimitiveNode", (20, 40))
    s = add(graph, registry, "Sampler", (360, 20), seed=7)
    item = view.node_item(p)
    assert item.spec.inputs == () and item.layout.widgets == {}
    wire(view, p, "value", s, "seed")
    link = graph.inputs_of(s)["seed"]
    assert (link.src_node, link.type) == (p, "INT")
    # The primitive took the seed's shape and value; the sampler's seed is driven by it.
    (inp,) = item.spec.inputs
    assert (inp.type, inp.min, inp.max, inp.control_after_generate) == ("INT", 0, 2**32 - 1, True)
    assert graph.nodes[p].values == {"value": 7}
    row = item.layout.widgets["value"]
    assert row.control_rect is not None
    assert view.node_item(s).driven_values() == {"seed": 7}
    # Editing the primitive with the mouse (the ▶ arrow) changes what the sampler gets.
    rect = item.widget_scene_rect("value")
    QTest.mouseClick(
        view.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
        vp(view, QPointF(rect.right() - 5, rect.center().y())),
    )
    assert graph.nodes[p].values["value"] == 8
    assert analyze(graph, registry, targets=[s]).inputs[s]["seed"].value == 8  # what a run gives it
    assert view.node_item(s).driven_values() == {"seed": 8}
    # One undo takes the edit back, the next the wire (and the adopted value with it).
    view.undo_stack.undo()
    view.undo_stack.undo()
    assert "seed" not in graph.inputs_of(s) and "value" not in graph.nodes[p].values
    assert view.node_item(p).spec.inputs == ()


def test_a_primitive_refuses_a_socket_and_a_widget_of_another_type(
    view: GraphView, graph: Graph, registry: NodeRegistry
) -> None:
    p = add(graph, registry, "PrimitiveNode", (20, 40))
    s = add(graph, registry, "Sampler", (360, 20))
    d = add(graph, registry, "Decode", (360, 420))
    wire(view, p, "value", s, "steps")
    assert graph.inputs_of(s)["steps"].src_node == p
    wire(view, p, "value", s, "prompt")
    assert "prompt" not in graph.inputs_of(s) and "INT cannot feed STRING" in (view.last_refusal_reason or "")
    wire(view, p, "value", d, "samples")
    assert "samples" not in graph.inputs_of(d)


def test_double_click_on_a_wire_puts_a_reroute_there_which_passes_the_real_type_on(
    view: GraphView, graph: Graph, registry: NodeRegistry
) -> None:
    lat = add(graph, registry, "Latent", (20, 40))
    dec = add(graph, registry, "Decode", (420, 40))
    sink = add(graph, registry, "Image", (420, 300))
    graph.add_link(lat, "LATENT", dec, "samples", "LATENT")
    a, b = view.node_item(lat).output_pos("LATENT"), view.node_item(dec).input_pos("samples")
    mid = QPointF((a.x() + b.x()) / 2, (a.y() + b.y()) / 2)
    QTest.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, vp(view, mid))
    (r,) = [nid for nid, n in graph.nodes.items() if n.type == "Reroute"]
    assert graph.inputs_of(r)["input"].src_node == lat and graph.inputs_of(dec)["samples"].src_node == r
    pill = view.node_item(r).body_scene_rect()
    assert pill.contains(mid) and pill.width() <= 48 and pill.height() <= 24
    # Its output carries LATENT: an IMAGE input refuses it, a LATENT one takes it.
    wire(view, r, "output", sink, "image")
    assert "image" not in graph.inputs_of(sink)
    assert "LATENT cannot feed IMAGE" in (view.last_refusal_reason or "")
    # Dragging the pill by its middle moves it (it is all title).
    drag(view, pill.center(), pill.center() + QPointF(0, 60))
    assert (
        graph.nodes[r].pos[1] == pytest.approx(view.node_item(r).pos().y())
        and view.node_item(r).pos().y() > pill.top() + 40
    )
    # Undo: the move, then the reroute (one step), and the wire is whole again.
    view.undo_stack.undo()
    view.undo_stack.undo()
    assert r not in graph.nodes and graph.inputs_of(dec)["samples"].src_node == lat


def test_search_finds_reroute_and_primitive(view: GraphView, graph: Graph, registry: NodeRegistry) -> None:
    for text, type_ in (("rerou", "Reroute"), ("primit", "PrimitiveNode")):
        QTest.mouseMove(view.viewport(), vp(view, (200, 200)))
        view.setFocus()
        QTest.keyClick(view, Qt.Key.Key_Tab)
        popup = view.search_popup
        QTest.keyClicks(popup.edit, text)
        assert popup.shown_types()[0] == type_
        QTest.keyClick(popup.edit, Qt.Key.Key_Return)
        assert any(n.type == type_ for n in graph.nodes.values())


def test_a_primitive_feeding_a_seed_steps_after_a_run_like_the_seed(graph: Graph, registry: NodeRegistry) -> None:
    from ui.canvas import apply_seed_control

    p = add(graph, registry, "PrimitiveNode", (0, 0), value=41)
    s = add(graph, registry, "Sampler", (300, 0))
    graph.add_link(p, "value", s, "seed", "INT")
    graph.nodes[p].extra["control_after_generate"] = "increment"
    assert apply_seed_control(graph, p, registry) == {"value": 42}
    assert apply_seed_control(graph, s, registry) == {}  # the sampler's own seed is driven, not stepped
