"""Node colours against ComfyUI: a real ComfyUI workflow's colours are recognised, painted and written
back unchanged; a colour picked here is written as ComfyUI's own values; undoing one is exact."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtGui import QColor, QUndoStack

from graph_engine import Graph
from graph_engine.comfy import load_comfy
from graph_engine.comfy.export import to_ui
from graph_engine.serialization import graph_from_dict, graph_to_dict
from nodes import builtin_registry
from tests.comfy.support import ANCHORS, read_anchor
from tests.support.shared import ANCHORS_ABSENT
from ui.canvas import GraphView
from ui.canvas.colours import BY_NAME, PALETTE, group_swatch, node_bgcolor, node_swatch
from ui.commands import set_group_colors_command, set_node_colors_command

ANCHOR = "sdxl_base_refiner_ksampler_advanced.workflow.json"


@pytest.mark.skipif(not (ANCHORS / ANCHOR).is_file(), reason=ANCHORS_ABSENT)
def test_comfyui_workflow_colours_are_painted_and_written_back_exactly(qtbot) -> None:
    registry = builtin_registry()
    raw = read_anchor(ANCHOR)
    graph = load_comfy(raw, registry).graph
    coloured = {n["id"]: n for n in raw["nodes"] if "color" in n}
    assert len(coloured) >= 10  # the file colours many nodes (several palette colours)
    view = GraphView(graph, registry, QUndoStack())
    qtbot.addWidget(view)
    for nid, n in coloured.items():
        node = graph.nodes[nid]
        assert (node.color, node_bgcolor(node)) == (n["color"], n.get("bgcolor"))
        swatch = node_swatch(node)
        if swatch is not None:  # a palette colour: painted in this theme's version of it
            assert (swatch.color, swatch.bgcolor) == (n["color"], n.get("bgcolor"))
            assert view.node_item(nid).header_color() == swatch.title_color
        else:  # a custom colour: painted as it is
            assert view.node_item(nid).header_color() == QColor(n["color"])
    assert sum(node_swatch(graph.nodes[i]) is not None for i in coloured) >= 8
    assert group_swatch(graph.groups[1]) is BY_NAME["pale_blue"]  # "#3f789e"

    again = {n["id"]: n for n in to_ui(graph, registry)["nodes"]}
    for nid, n in coloured.items():
        assert (again[nid]["color"], again[nid].get("bgcolor")) == (n["color"], n.get("bgcolor"))
    assert [g.get("color") for g in to_ui(graph, registry)["groups"]] == [g.get("color") for g in raw["groups"]]


def test_picked_colour_is_comfyuis_and_undo_restores_the_exact_graph(tmp_path: Path) -> None:
    registry = builtin_registry()
    graph = Graph()
    node = graph.add_node("EmptyLatentImage", {"width": 512, "height": 512, "batch_size": 1}, pos=(0, 0))
    kept = graph.add_node("EmptyLatentImage", {"width": 512, "height": 512, "batch_size": 1}, pos=(0, 200))
    graph.set_extra(kept.id, "comfy", {"properties": {"Node name for S&R": "EmptyLatentImage"}, "order": 3})
    gid = graph.add_group("Latents", (-20, -40, 300, 400)).id
    before = graph_to_dict(graph)
    stack = QUndoStack()

    cyan = BY_NAME["cyan"]
    stack.push(set_node_colors_command(graph, [node.id, kept.id], cyan.color, cyan.bgcolor))
    stack.push(set_group_colors_command(graph, [gid], cyan.groupcolor))
    assert graph.nodes[kept.id].extra["comfy"]["order"] == 3  # the rest of "comfy" is untouched
    exported = {n["id"]: n for n in to_ui(graph, registry)["nodes"]}
    for nid in (node.id, kept.id):
        assert (exported[nid]["color"], exported[nid]["bgcolor"]) == ("#233", "#355")
    assert to_ui(graph, registry)["groups"][0]["color"] == "#8AA"
    back = load_comfy(to_ui(graph, registry), registry).graph
    assert (back.nodes[node.id].color, node_bgcolor(back.nodes[node.id])) == ("#233", "#355")
    assert back.groups[gid].color == "#8AA"
    # the sdgraph format keeps it too
    reread = graph_from_dict(graph_to_dict(graph))
    assert node_swatch(reread.nodes[kept.id]) is cyan and node_bgcolor(reread.nodes[kept.id]) == "#355"

    stack.undo()
    stack.undo()
    assert graph_to_dict(graph) == before
    stack.redo()
    assert node_swatch(graph.nodes[node.id]) is cyan


def test_palette_names_are_comfyuis_and_unique() -> None:
    names = [s.name for s in PALETTE]
    assert names == ["red", "brown", "green", "blue", "pale_blue", "cyan", "purple", "yellow", "black"]
    assert len({QColor(s.color).rgb() for s in PALETTE}) == len(PALETTE)  # a title colour names one swatch
    assert len({QColor(s.groupcolor).rgb() for s in PALETTE}) == len(PALETTE)
