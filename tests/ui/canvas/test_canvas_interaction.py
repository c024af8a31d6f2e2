"""Real mouse and keyboard events on the canvas, each checked against the model (the `Graph`).

Positions are computed from item geometry (socket centres, widget rectangles), never guessed, and every
test asserts a changed model state, so none of them can pass by doing nothing.
"""

from __future__ import annotations

import pytest
from canvas_helpers import click, drag, vp
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QContextMenuEvent, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLineEdit, QPlainTextEdit

from graph_engine import Graph, NodeMode
from graph_engine.serialization import graph_to_dict
from ui.canvas import GraphView

LEFT = Qt.MouseButton.LeftButton


def add(graph: Graph, registry, type_: str, pos: tuple[float, float], **values) -> int:
    return graph.add_node(type_, registry.get(type_).default_values() | values, pos=pos).id


def wheel(view: GraphView, scene_pos: QPointF | tuple[float, float], notches: float) -> None:
    p = QPointF(vp(view, scene_pos))
    ev = QWheelEvent(
        p,
        QPointF(view.viewport().mapToGlobal(p.toPoint())),
        QPoint(0, 0),
        QPoint(0, int(120 * notches)),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(view.viewport(), ev)


def editor_widget(view: GraphView):
    assert view._editor is not None, "no inline editor opened"
    return view._editor.widget


# ---- building -------------------------------------------------------------------------------------


def test_tab_search_typing_and_enter_adds_node_at_cursor(view: GraphView, graph: Graph, registry) -> None:
    target = QPointF(120, 140)
    QTest.mouseMove(view.viewport(), vp(view, target))
    QTest.keyClick(view, Qt.Key.Key_Tab)
    popup = view.search_popup
    assert popup.isVisible()
    QTest.keyClicks(popup.edit, "ksam")
    assert popup.shown_types()[0] == "Sampler"
    QTest.keyClick(popup.edit, Qt.Key.Key_Return)
    assert not popup.isVisible()
    (node,) = graph.nodes.values()
    assert node.type == "Sampler"
    assert node.values == registry.get("Sampler").default_values()
    assert node.pos == pytest.approx((target.x(), target.y()), abs=1.5)
    assert view.selected_node_ids() == [node.id]


def test_search_keyboard_navigation_and_escape(view: GraphView, graph: Graph) -> None:
    QTest.mouseDClick(view.viewport(), LEFT, Qt.KeyboardModifier.NoModifier, vp(view, (300, 300)))
    popup = view.search_popup
    assert popup.isVisible()
    QTest.keyClicks(popup.edit, "latent")
    shown = popup.shown_types()
    assert len(shown) >= 2
    QTest.keyClick(popup.edit, Qt.Key.Key_Down)
    QTest.keyClick(popup.edit, Qt.Key.Key_Return)
    (node,) = graph.nodes.values()
    assert node.type == shown[1]
    QTest.keyClick(view, Qt.Key.Key_Tab)
    assert popup.isVisible()
    QTest.keyClick(popup.edit, Qt.Key.Key_Escape)
    assert not popup.isVisible()
    assert len(graph.nodes) == 1


def test_right_click_menu_adds_node_by_category(view: GraphView, graph: Graph) -> None:
    p = vp(view, (200, 200))
    w = view.viewport()
    QTest.mouseMove(w, p)
    QTest.mouseClick(w, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, p)
    # QTest does not synthesize the context-menu event a window system sends after a right click
    QApplication.sendEvent(w, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, p, w.mapToGlobal(p)))
    menu = view.active_menu
    assert menu is not None
    add_menu = next(a.menu() for a in menu.actions() if a.text() == "Add node")
    categories = {a.text(): a.menu() for a in add_menu.actions()}
    assert {"math", "latent", "sampling", "utils"} <= set(categories)
    next(a for a in categories["math"].actions() if a.text() == "Add").trigger()
    (node,) = graph.nodes.values()
    assert node.type == "Add"
    assert node.pos == pytest.approx((200, 200), abs=1.5)
    menu.close()


# ---- wiring ---------------------------------------------------------------------------------------


def test_drag_output_to_input_connects(view: GraphView, graph: Graph, registry) -> None:
    a = add(graph, registry, "Number", (0, 0))
    b = add(graph, registry, "Add", (320, 40))
    drag(view, view.node_item(a).output_pos("INT"), view.node_item(b).input_pos("b"))
    (link,) = graph.links.values()
    assert (link.src_node, link.src_output, link.dst_node, link.dst_input, link.type) == (a, "INT", b, "b", "INT")
    assert view.last_refusal_reason is None
    assert view.undo_stack.count() == 1


def test_drag_from_input_back_to_output_connects(view: GraphView, graph: Graph, registry) -> None:
    d = add(graph, registry, "Decode", (0, 0))
    i = add(graph, registry, "Image", (320, 0))
    drag(view, view.node_item(i).input_pos("image"), view.node_item(d).output_pos("IMAGE"))
    (link,) = graph.links.values()
    assert (link.src_node, link.src_output, link.dst_node, link.dst_input) == (d, "IMAGE", i, "image")


def test_refused_type_creates_no_link_and_shows_reason(view: GraphView, graph: Graph, registry) -> None:
    lat = add(graph, registry, "Latent", (0, 0))
    img = add(graph, registry, "Image", (320, 0))
    before = graph_to_dict(graph)
    drag(view, view.node_item(lat).output_pos("LATENT"), view.node_item(img).input_pos("image"))
    assert graph.links == {}
    assert graph_to_dict(graph) == before
    assert view.last_refusal_reason == "LATENT cannot feed IMAGE"
    assert view._refusal_label.isVisible()
    assert "LATENT cannot feed IMAGE" in view._refusal_label.text()
    assert view.undo_stack.count() == 0


def test_reason_is_shown_while_hovering_a_refused_socket(view: GraphView, graph: Graph, registry) -> None:
    lat = add(graph, registry, "Latent", (0, 0))
    img = add(graph, registry, "Image", (320, 0))
    w = view.viewport()
    QTest.mousePress(w, LEFT, Qt.KeyboardModifier.NoModifier, vp(view, view.node_item(lat).output_pos("LATENT")))
    QTest.mouseMove(w, vp(view, (200, 100)))
    QTest.mouseMove(w, vp(view, view.node_item(img).input_pos("image")))
    assert view.last_refusal_reason == "LATENT cannot feed IMAGE"
    assert view._refusal_label.isVisible()
    QTest.mouseMove(w, vp(view, (200, 300)))  # away from any socket: nothing refused
    assert view.last_refusal_reason is None
    QTest.keyClick(view, Qt.Key.Key_Escape)
    QTest.mouseRelease(w, LEFT, Qt.KeyboardModifier.NoModifier, vp(view, (200, 300)))
    assert graph.links == {}


def test_drag_that_would_make_a_cycle_is_refused(view: GraphView, graph: Graph, registry) -> None:
    a = add(graph, registry, "Add", (0, 0))
    b = add(graph, registry, "Add", (320, 0))
    graph.add_link(a, "INT", b, "a", "INT")
    drag(view, view.node_item(b).output_pos("INT"), view.node_item(a).input_pos("b"))
    assert len(graph.links) == 1
    assert view.last_refusal_reason == "would make a cycle"


def test_dropping_on_a_connected_input_replaces_the_link(view: GraphView, graph: Graph, registry) -> None:
    n1 = add(graph, registry, "Number", (0, 0))
    n2 = add(graph, registry, "Number", (0, 160))
    s = add(graph, registry, "Add", (320, 60))
    old = graph.add_link(n1, "INT", s, "a", "INT")
    drag(view, view.node_item(n2).output_pos("INT"), view.node_item(s).input_pos("a"))
    (link,) = graph.links.values()
    assert link.id != old.id
    assert (link.src_node, link.dst_node, link.dst_input) == (n2, s, "a")
    assert view.undo_stack.count() == 1
    view.undo_stack.undo()
    assert list(graph.links.values()) == [old]


def test_picking_up_a_connected_input_and_dropping_on_empty_canvas_disconnects(
    view: GraphView, graph: Graph, registry
) -> None:
    n = add(graph, registry, "Number", (0, 0))
    s = add(graph, registry, "Add", (320, 0))
    graph.add_link(n, "INT", s, "a", "INT")
    drag(view, view.node_item(s).input_pos("a"), (600, 400))
    assert graph.links == {}
    assert not view.search_popup.isVisible()


def test_picking_up_a_wire_and_moving_it_to_another_input(view: GraphView, graph: Graph, registry) -> None:
    n = add(graph, registry, "Number", (0, 0))
    s = add(graph, registry, "Add", (320, 0))
    graph.add_link(n, "INT", s, "a", "INT")
    drag(view, view.node_item(s).input_pos("a"), view.node_item(s).input_pos("b"))
    (link,) = graph.links.values()
    assert (link.src_node, link.dst_node, link.dst_input) == (n, s, "b")
    assert view.undo_stack.count() == 1


def test_wire_dropped_on_empty_canvas_opens_filtered_search_and_connects(
    view: GraphView, graph: Graph, registry
) -> None:
    lat = add(graph, registry, "Latent", (0, 0))
    drop = QPointF(420, 200)
    drag(view, view.node_item(lat).output_pos("LATENT"), drop)
    popup = view.search_popup
    assert popup.isVisible()
    shown = set(popup.shown_types())
    assert {"Decode", "Sampler"} <= shown
    assert not shown & {"Number", "Add", "Image", "Latent", "Note"}
    QTest.keyClicks(popup.edit, "decode")
    QTest.keyClick(popup.edit, Qt.Key.Key_Return)
    new = next(n for n in graph.nodes.values() if n.type == "Decode")
    (link,) = graph.links.values()
    assert (link.src_node, link.src_output, link.dst_node, link.dst_input) == (lat, "LATENT", new.id, "samples")
    assert abs(new.pos[0] - drop.x()) < 60 and abs(new.pos[1] - drop.y()) < 60
    assert view.undo_stack.count() == 1  # node and link in one step
    view.undo_stack.undo()
    assert set(graph.nodes) == {lat} and graph.links == {}


def test_wire_dragged_backwards_from_input_offers_producers(view: GraphView, graph: Graph, registry) -> None:
    img = add(graph, registry, "Image", (400, 0))
    drag(view, view.node_item(img).input_pos("image"), (60, 200))
    popup = view.search_popup
    assert popup.shown_types() == ["Decode"]
    QTest.keyClick(popup.edit, Qt.Key.Key_Return)
    new = next(n for n in graph.nodes.values() if n.type == "Decode")
    (link,) = graph.links.values()
    assert (link.src_node, link.src_output, link.dst_node, link.dst_input) == (new.id, "IMAGE", img, "image")


# ---- selecting, moving, deleting --------------------------------------------------------------------


def test_rubber_band_selects_and_delete_removes_nodes_and_links(view: GraphView, graph: Graph, registry) -> None:
    a = add(graph, registry, "Number", (0, 0))
    b = add(graph, registry, "Add", (300, 0))
    c = add(graph, registry, "Show", (650, 0))
    graph.add_link(a, "INT", b, "a", "INT")
    keep = graph.add_link(b, "INT", c, "value", "INT")
    seen: list[list[int]] = []
    view.nodeSelectionChanged.connect(seen.append)
    # from empty canvas above-left of a, to below-right of a: only a is fully inside, b is not touched
    drag(view, (-20, -30), (230, 200))
    assert view.selected_node_ids() == [a]
    assert seen and seen[-1] == [a]
    QTest.keyClick(view, Qt.Key.Key_Delete)
    assert set(graph.nodes) == {b, c}
    assert list(graph.links) == [keep.id]
    assert view.undo_stack.count() == 1


def test_rubber_band_over_two_nodes_then_delete(view: GraphView, graph: Graph, registry) -> None:
    a = add(graph, registry, "Number", (0, 0))
    b = add(graph, registry, "Add", (300, 0))
    c = add(graph, registry, "Show", (300, 300))
    graph.add_link(a, "INT", b, "a", "INT")
    graph.add_link(b, "INT", c, "value", "INT")
    drag(view, (-20, -30), (560, 150))
    assert view.selected_node_ids() == [a, b]
    QTest.keyClick(view, Qt.Key.Key_Backspace)
    assert set(graph.nodes) == {c}
    assert graph.links == {}


def test_click_ctrl_click_and_shift_click_selection(view: GraphView, graph: Graph, registry) -> None:
    a = add(graph, registry, "Number", (0, 0))
    b = add(graph, registry, "Number", (300, 0))
    c = add(graph, registry, "Number", (600, 0))
    title = lambda n: view.node_item(n).mapToScene(QPointF(60, 12))  # noqa: E731
    click(view, title(a))
    assert view.selected_node_ids() == [a]
    click(view, title(b), modifiers=Qt.KeyboardModifier.ControlModifier)
    assert view.selected_node_ids() == [a, b]
    click(view, title(c), modifiers=Qt.KeyboardModifier.ShiftModifier)
    assert view.selected_node_ids() == [a, b, c]
    click(view, title(b), modifiers=Qt.KeyboardModifier.ControlModifier)
    assert view.selected_node_ids() == [a, c]
    click(view, (400, 400))  # empty canvas clears
    assert view.selected_node_ids() == []


def test_dragging_a_node_moves_it_and_the_selection_in_one_undo_step(view: GraphView, graph: Graph, registry) -> None:
    a = add(graph, registry, "Number", (0, 0))
    b = add(graph, registry, "Number", (300, 0))
    view.select_nodes([a, b])
    drag(view, view.node_item(a).mapToScene(QPointF(60, 12)), view.node_item(a).mapToScene(QPointF(110, 92)))
    assert graph.nodes[a].pos == pytest.approx((50, 80))
    assert graph.nodes[b].pos == pytest.approx((350, 80))
    assert view.node_item(a).pos().toTuple() == pytest.approx((50, 80))
    assert view.undo_stack.count() == 1
    view.undo_stack.undo()
    assert graph.nodes[a].pos == (0, 0) and graph.nodes[b].pos == (300, 0)


def test_bypass_and_mute_shortcuts_toggle(view: GraphView, graph: Graph, registry) -> None:
    a = add(graph, registry, "Number", (0, 0))
    view.select_nodes([a])
    QTest.keyClick(view, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)
    assert graph.nodes[a].mode == NodeMode.BYPASS
    QTest.keyClick(view, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier)
    assert graph.nodes[a].mode == NodeMode.MUTE
    QTest.keyClick(view, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier)
    assert graph.nodes[a].mode == NodeMode.ACTIVE


def test_copy_paste_keeps_internal_links_remaps_ids_and_lands_at_cursor(
    view: GraphView, graph: Graph, registry
) -> None:
    a = add(graph, registry, "Number", (0, 0), value=7)
    b = add(graph, registry, "Add", (300, 0))
    outside = add(graph, registry, "Number", (0, 200))
    graph.add_link(a, "INT", b, "a", "INT")
    graph.add_link(outside, "INT", b, "b", "INT")
    view.select_nodes([a, b])
    QTest.keyClick(view, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    QTest.mouseMove(view.viewport(), vp(view, (100, 400)))
    QTest.keyClick(view, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    new_ids = sorted(set(graph.nodes) - {a, b, outside})
    assert len(new_ids) == 2
    na, nb = new_ids
    assert graph.nodes[na].type == "Number" and graph.nodes[na].values == {"value": 7}
    assert graph.nodes[na].pos == pytest.approx((100, 400), abs=1.5)
    assert graph.nodes[nb].pos == pytest.approx((400, 400), abs=1.5)
    new_links = [lk for lk in graph.links.values() if lk.dst_node in new_ids or lk.src_node in new_ids]
    assert [(lk.src_node, lk.dst_node, lk.dst_input) for lk in new_links] == [(na, nb, "a")]
    assert view.selected_node_ids() == new_ids
    assert view.undo_stack.count() == 1


def test_cut_and_duplicate(view: GraphView, graph: Graph, registry) -> None:
    a = add(graph, registry, "Number", (0, 0))
    b = add(graph, registry, "Add", (300, 0))
    graph.add_link(a, "INT", b, "a", "INT")
    view.select_nodes([a, b])
    QTest.keyClick(view, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    assert len(graph.nodes) == 4 and len(graph.links) == 2
    dup = sorted(set(graph.nodes) - {a, b})
    assert graph.nodes[dup[0]].pos == pytest.approx((30, 30))
    QTest.keyClick(view, Qt.Key.Key_X, Qt.KeyboardModifier.ControlModifier)  # cuts the duplicates
    assert set(graph.nodes) == {a, b} and len(graph.links) == 1
    QTest.keyClick(view, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert len(graph.nodes) == 4 and len(graph.links) == 2


# ---- inline parameter editing ---------------------------------------------------------------------


def test_number_drag_changes_value_by_step_within_min_max(view: GraphView, graph: Graph, registry) -> None:
    n = add(graph, registry, "Number", (0, 0))  # value 1, min 0, max 100
    rect = view.node_item(n).widget_scene_rect("value")
    c = rect.center()
    drag(view, c, c + QPointF(60, 0))  # 6 px per step -> +10
    assert graph.nodes[n].values["value"] == 11
    assert view.undo_stack.count() == 1
    drag(view, c, c + QPointF(900, 0), steps=12)
    assert graph.nodes[n].values["value"] == 100
    drag(view, c, c - QPointF(900, 0), steps=12)
    assert graph.nodes[n].values["value"] == 0
    assert view.undo_stack.count() == 3
    view.undo_stack.undo()
    assert graph.nodes[n].values["value"] == 100


def test_number_arrows_scroll_and_typing(view: GraphView, graph: Graph, registry) -> None:
    s = add(graph, registry, "Sampler", (0, 0))  # cfg 7.0 step 0.5 in [0, 30]
    item = view.node_item(s)
    rect = item.widget_scene_rect("cfg")
    click(view, QPointF(rect.right() - 5, rect.center().y()))
    assert graph.nodes[s].values["cfg"] == 7.5
    click(view, QPointF(rect.left() + 5, rect.center().y()))
    click(view, QPointF(rect.left() + 5, rect.center().y()))
    assert graph.nodes[s].values["cfg"] == 6.5
    wheel(view, rect.center(), 3)
    assert graph.nodes[s].values["cfg"] == 8.0
    wheel(view, rect.center(), -100)
    assert graph.nodes[s].values["cfg"] == 0.0  # clamped at min
    # a click in the middle opens a text field; typing replaces the value, out-of-range input is clamped
    click(view, rect.center())
    editor = editor_widget(view)
    assert isinstance(editor, QLineEdit)
    editor.selectAll()
    QTest.keyClicks(editor, "99")
    QTest.keyClick(editor, Qt.Key.Key_Return)
    assert graph.nodes[s].values["cfg"] == 30.0
    assert view._editor is None


def test_wheel_on_empty_canvas_zooms_to_cursor(view: GraphView, graph: Graph, registry) -> None:
    add(graph, registry, "Number", (0, 0))
    anchor = QPointF(300, 200)
    before_vp = vp(view, anchor)
    z = view.zoom()
    wheel(view, anchor, 2)
    assert view.zoom() == pytest.approx(z * 1.15**2, rel=1e-3)
    assert (view.mapFromScene(anchor) - before_vp).manhattanLength() <= 2
    assert graph.nodes[1].pos == (0, 0)


def test_boolean_combo_text_and_seed_control(view: GraphView, graph: Graph, registry) -> None:
    s = add(graph, registry, "Sampler", (0, 0))
    item = view.node_item(s)
    click(view, item.widget_scene_rect("tiled").center())
    assert graph.nodes[s].values["tiled"] is True
    # combo: a menu of the computed choices
    click(view, item.widget_scene_rect("sampler").center())
    menu = view.active_menu
    assert menu is not None and menu.isVisible()
    assert [a.text() for a in menu.actions()] == ["euler", "euler_ancestral", "dpmpp_2m"]
    next(a for a in menu.actions() if a.text() == "dpmpp_2m").trigger()
    menu.close()
    assert graph.nodes[s].values["sampler"] == "dpmpp_2m"
    # multiline prompt: an inline text editor, Ctrl+Enter commits
    click(view, item.widget_scene_rect("prompt").center())
    editor = editor_widget(view)
    assert isinstance(editor, QPlainTextEdit)
    editor.selectAll()
    QTest.keyClicks(editor, "a dog")
    QTest.keyClick(editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert graph.nodes[s].values["prompt"] == "a dog"
    # seed control: stored in node.extra through an undo step
    row = item.layout.widgets["seed"]
    click(view, item.mapToScene(row.control_rect.center()))
    menu = view.active_menu
    assert [a.text() for a in menu.actions()] == ["fixed", "increment", "decrement", "randomize"]
    next(a for a in menu.actions() if a.text() == "increment").trigger()
    menu.close()
    assert graph.nodes[s].extra["control_after_generate"] == "increment"
    view.undo_stack.undo()
    assert "control_after_generate" not in graph.nodes[s].extra


def test_double_click_title_renames(view: GraphView, graph: Graph, registry) -> None:
    n = add(graph, registry, "Number", (0, 0))
    p = vp(view, view.node_item(n).mapToScene(QPointF(40, 12)))
    QTest.mouseDClick(view.viewport(), LEFT, Qt.KeyboardModifier.NoModifier, p)
    editor = editor_widget(view)
    editor.selectAll()
    QTest.keyClicks(editor, "Width")
    QTest.keyClick(editor, Qt.Key.Key_Return)
    assert graph.nodes[n].title == "Width"
    view.undo_stack.undo()
    assert graph.nodes[n].title is None


def test_note_text_is_edited_on_double_click(view: GraphView, graph: Graph, registry) -> None:
    n = add(graph, registry, "Note", (0, 0))
    item = view.node_item(n)
    assert item.note
    p = vp(view, item.widget_scene_rect("text").center())
    QTest.mouseDClick(view.viewport(), LEFT, Qt.KeyboardModifier.NoModifier, p)
    editor = editor_widget(view)
    QTest.keyClicks(editor, "remember the VAE")
    click(view, (700, 500))  # clicking elsewhere commits
    assert graph.nodes[n].values["text"] == "remember the VAE"


# ---- view navigation ------------------------------------------------------------------------------


def test_middle_drag_pans_without_touching_the_model(view: GraphView, graph: Graph, registry) -> None:
    add(graph, registry, "Number", (0, 0))
    before = graph_to_dict(graph)
    origin = view.mapFromScene(QPointF(0, 0))
    drag(view, (400, 300), (300, 250), button=Qt.MouseButton.MiddleButton)
    moved = view.mapFromScene(QPointF(0, 0)) - origin
    assert (moved.x(), moved.y()) == (-100, -50)
    assert graph_to_dict(graph) == before


def test_space_and_alt_drag_on_empty_canvas_pan(view: GraphView, graph: Graph) -> None:
    origin = view.mapFromScene(QPointF(0, 0))
    drag(view, (400, 300), (440, 300), modifiers=Qt.KeyboardModifier.AltModifier)
    assert (view.mapFromScene(QPointF(0, 0)) - origin).x() == 40
    QTest.keyPress(view, Qt.Key.Key_Space)
    drag(view, (400, 300), (400, 330))
    QTest.keyRelease(view, Qt.Key.Key_Space)
    assert (view.mapFromScene(QPointF(0, 0)) - origin).y() == 30


def test_fit_view_shows_every_node(view: GraphView, graph: Graph, registry) -> None:
    ids = [add(graph, registry, "Number", (x, y)) for x, y in [(-3000, -2000), (2500, 1800), (0, 0)]]
    QTest.keyClick(view, Qt.Key.Key_F)
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    for nid in ids:
        assert visible.contains(view.node_item(nid).sceneBoundingRect())


def test_group_title_drag_moves_group_and_contained_nodes(view: GraphView, graph: Graph, registry) -> None:
    inside = add(graph, registry, "Number", (20, 60))
    outside = add(graph, registry, "Number", (600, 60))
    gid = graph.add_group("G", (0, 0, 300, 200)).id
    drag(view, (150, 10), (190, 70))
    assert graph.groups[gid].bounding == pytest.approx((40, 60, 300, 200))
    assert graph.nodes[inside].pos == pytest.approx((60, 120))
    assert graph.nodes[outside].pos == (600, 60)
    assert view.undo_stack.count() == 1
    view.undo_stack.undo()
    assert graph.groups[gid].bounding == (0, 0, 300, 200)
    assert graph.nodes[inside].pos == (20, 60)
