"""Issue 10, bug 10: the SDXL base+refiner ComfyUI workflow in the real window.

Its "Step Control" group holds two Primitive nodes that feed both samplers (steps, and the step where
the base hands over to the refiner). They must arrive as real nodes inside their group, drawn as the
widget they feed; editing one with the mouse changes what both samplers get (the engine's analysis is
the judge), and a ComfyUI save keeps them. The refiner's prompt boxes must not overlap. Reroutes are
real nodes too: double-clicking a wire puts one there, and a ComfyUI save keeps it.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QLineEdit

from app.workflow_formats import COMFY_API, COMFY_UI
from graph_engine import comfy
from graph_engine.validation import analyze
from nodes import builtin_registry
from tests.ui.app.test_document_formats import anchor_copy, make_window
from tests.ui.canvas.canvas_helpers import click, vp
from ui.main_window import MainWindow

SDXL = "sdxl_base_refiner_ksampler_advanced.workflow.json"
STEPS, SPLIT = 45, 47  # the Step Control primitives
BASE, REFINER = 10, 11


@pytest.fixture
def window(qtbot: Any, tmp_path: Path, sdgraph_home: Path) -> MainWindow:
    return make_window(qtbot, sdgraph_home, tmp_path)


def open_sdxl(window: MainWindow, tmp_path: Path) -> Path:
    path = anchor_copy(tmp_path, SDXL)
    assert window.open_file(path)
    return path


def sampler_steps(window: MainWindow) -> dict[int, tuple[Any, Any, Any]]:
    """What a run gives each sampler: steps, start and end step (from validation's analysis)."""
    analysis = analyze(window.graph, builtin_registry())
    return {
        nid: tuple(analysis.inputs[nid][k].value for k in ("steps", "start_at_step", "end_at_step"))
        for nid in (BASE, REFINER)
    }


def test_step_control_group_holds_its_primitives_drawn_as_the_widgets_they_feed(
    window: MainWindow, tmp_path: Path
) -> None:
    open_sdxl(window, tmp_path)
    view, graph = window.view, window.graph
    (group,) = [g for g in graph.groups.values() if g.title == "Step Control"]
    x, y, w, h = group.bounding
    for nid, (title, lo) in {STEPS: ("steps", 1), SPLIT: ("end_at_step", 0)}.items():
        node = graph.nodes[nid]
        assert (node.type, node.title) == ("PrimitiveNode", title)
        item = view.node_item(nid)
        body = item.body_scene_rect()
        assert x <= body.left() and body.right() <= x + w and y <= body.top() and body.bottom() <= y + h
        # Drawn as the sampler's own INT widget, with its range.
        (inp,) = item.spec.inputs
        assert (inp.type, inp.min, inp.max) == ("INT", lo, 10000)
        assert list(item.layout.widgets) == ["value"]
    # The samplers show those inputs as driven by the primitives (greyed, with the value).
    assert view.node_item(BASE).driven_values() == {"steps": 25, "end_at_step": 20}
    assert view.node_item(REFINER).driven_values() == {"steps": 25, "start_at_step": 20}
    # The prompt primitives are multiline text boxes.
    assert view.node_item(13).spec.inputs[0].multiline
    assert sampler_steps(window) == {BASE: (25, 0, 20), REFINER: (25, 20, 10000)}


def test_editing_a_primitive_on_the_canvas_changes_both_samplers_and_a_comfyui_save_keeps_it(
    window: MainWindow, qtbot: Any, tmp_path: Path
) -> None:
    path = open_sdxl(window, tmp_path)
    view = window.view
    view.resetTransform()
    view.center_on_node(STEPS)
    item = view.node_item(STEPS)
    rect = item.widget_scene_rect("value")
    click(view, QPointF(rect.right() - 5, rect.center().y()))  # the ▶ arrow
    assert window.graph.nodes[STEPS].values["value"] == 26
    assert sampler_steps(window)[BASE][0] == sampler_steps(window)[REFINER][0] == 26
    # Typed: the split step moves for both samplers at once.
    view.center_on_node(SPLIT)
    split_rect = view.node_item(SPLIT).widget_scene_rect("value")
    click(view, split_rect.center())
    editor = view._editor.widget if view._editor is not None else None
    assert isinstance(editor, QLineEdit)
    editor.selectAll()
    QTest.keyClicks(editor, "18")
    QTest.keyClick(editor, Qt.Key.Key_Return)
    assert sampler_steps(window) == {BASE: (26, 0, 18), REFINER: (26, 18, 10000)}
    # Undo is one step per edit.
    view.undo_stack.undo()
    assert sampler_steps(window)[BASE][2] == 20
    view.undo_stack.redo()

    # Saved as a ComfyUI workflow (the file's own format), the primitives are ComfyUI PrimitiveNodes.
    QTest.keyClick(window.view, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    saved = json.loads(path.read_text())
    assert comfy.detect_format(saved) == "comfyui-ui"
    nodes = {n["id"]: n for n in saved["nodes"]}
    assert (nodes[STEPS]["type"], nodes[STEPS]["widgets_values"]) == ("PrimitiveNode", [26, "fixed"])
    assert nodes[SPLIT]["widgets_values"] == [18, "fixed"]
    # Reopened: still primitives, in their group, with their values and both samplers fed.
    assert window.open_file(path)
    assert window.graph.nodes[STEPS].type == "PrimitiveNode"
    assert sampler_steps(window) == {BASE: (26, 0, 18), REFINER: (26, 18, 10000)}
    # The API prompt has the values inlined and no primitive.
    api_path = tmp_path / "prompt.json"
    assert window.export(api_path, COMFY_API)
    api = json.loads(api_path.read_text())
    assert str(STEPS) not in api and api[str(REFINER)]["inputs"]["start_at_step"] == 18


def test_no_nodes_overlap_after_opening_the_sdxl_workflow(window: MainWindow, tmp_path: Path) -> None:
    """Bodies (what is drawn: title bar to bottom edge) of two nodes never intersect unless the file's own
    boxes (ComfyUI's pos and size, title bar above pos) already did; each text box lies inside its node."""
    path = open_sdxl(window, tmp_path)
    raw = {n["id"]: n for n in json.loads(path.read_text())["nodes"]}
    view = window.view

    def source_box(nid: int) -> tuple[float, float, float, float]:
        n = raw[nid]
        size = n["size"]
        w, h = (size["0"], size["1"]) if isinstance(size, dict) else size
        return n["pos"][0], n["pos"][1] - 30, w, h + 30  # litegraph draws the title above pos

    def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]

    clashes = []
    for a, b in itertools.combinations(sorted(window.graph.nodes), 2):
        ra, rb = view.node_item(a).body_scene_rect(), view.node_item(b).body_scene_rect()
        if ra.intersects(rb) and not overlap(source_box(a), source_box(b)):
            clashes.append((a, b))
    assert clashes == []
    for nid in window.graph.nodes:
        item = view.node_item(nid)
        for row in item.layout.widgets.values():
            if row.input.multiline:
                assert item.body_scene_rect().contains(item.widget_scene_rect(row.input.id)), nid
    # The refiner's two prompt encoders in particular (the bug report).
    assert not view.node_item(15).body_scene_rect().intersects(view.node_item(16).body_scene_rect())


def test_double_click_on_a_wire_inserts_a_reroute_that_a_comfyui_save_keeps(
    window: MainWindow, qtbot: Any, tmp_path: Path
) -> None:
    open_sdxl(window, tmp_path)
    view, graph = window.view, window.graph
    view.resetTransform()
    link = graph.inputs_of(19)["images"]  # VAE Decode → Save Image
    a = view.node_item(link.src_node).output_pos(link.src_output)
    b = view.node_item(link.dst_node).input_pos(link.dst_input)
    mid = QPointF((a.x() + b.x()) / 2, (a.y() + b.y()) / 2)
    view.centerOn(mid)
    before = set(graph.nodes)
    QTest.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, vp(view, mid))
    (rid,) = set(graph.nodes) - before
    assert graph.nodes[rid].type == "Reroute"
    into, out = graph.inputs_of(rid)["input"], graph.inputs_of(19)["images"]
    assert (into.src_node, out.src_node) == (17, rid)
    pill = view.node_item(rid).body_scene_rect()
    assert pill.width() <= 48 and pill.height() <= 24 and pill.contains(mid)
    # The run still decodes into Save Image through it.
    assert [p for p in analyze(graph, builtin_registry()).problems if p.input != "ckpt_name"] == []
    assert window.save_as(tmp_path / "with_reroute.json", COMFY_UI)
    saved = json.loads((tmp_path / "with_reroute.json").read_text())
    assert next(n for n in saved["nodes"] if n["id"] == rid)["type"] == "Reroute"
    assert window.open_file(tmp_path / "with_reroute.json")
    assert window.graph.nodes[rid].type == "Reroute" and window.graph.inputs_of(19)["images"].src_node == rid
