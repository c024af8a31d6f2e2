"""Every kind of edit undoes to exactly the serialized graph it started from, and redoes to exactly after.

This is the test NodeGraphQt lacked (its `is []` bug): do, undo, compare the whole serialized model,
including the id counters, then redo and compare again. The view is live throughout, so each step also
checks that the canvas items still mirror the model.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from graph_engine import Graph
from graph_engine.serialization import graph_to_dict
from ui import commands as cmds
from ui.canvas import GraphView
from ui.clipboard import selection_to_payload


def build(graph: Graph, registry) -> dict[str, int]:
    ids = {}
    for name, type_, pos in [
        ("latent", "Latent", (0, 0)),
        ("sampler", "Sampler", (250, 0)),
        ("decode", "Decode", (550, 0)),
        ("image", "Image", (800, 0)),
        ("number", "Number", (0, 300)),
        ("add", "Add", (250, 400)),
        ("number2", "Number", (0, 450)),
    ]:
        ids[name] = graph.add_node(type_, registry.get(type_).default_values(), pos=pos).id
    graph.add_link(ids["latent"], "LATENT", ids["sampler"], "latent", "LATENT")
    graph.add_link(ids["sampler"], "LATENT", ids["decode"], "samples", "LATENT")
    graph.add_link(ids["decode"], "IMAGE", ids["image"], "image", "IMAGE")
    graph.add_link(ids["number"], "INT", ids["add"], "a", "INT")
    graph.add_group("Maths", (-30, 260, 520, 360))
    return ids


def add(v: GraphView, ids: dict[str, int]) -> None:
    v.add_node_at("Sampler", (900, 300))


def remove_with_links(v: GraphView, ids: dict[str, int]) -> None:
    v.select_nodes([ids["sampler"], ids["number"]])
    v.delete_selected()


def move(v: GraphView, ids: dict[str, int]) -> None:
    # a drag: several merged steps
    for dx in (5, 20, 60):
        v.undo_stack.push(cmds.move_nodes_command(v.graph, {ids["add"]: (250 + dx, 400 + dx)}, merge_key=("move", 99)))
    assert v.undo_stack.count() == 1


def connect(v: GraphView, ids: dict[str, int]) -> None:
    v.undo_stack.push(cmds.connect_command(v.graph, ids["number2"], "INT", ids["add"], "b", "INT"))


def replace_connection(v: GraphView, ids: dict[str, int]) -> None:
    v.undo_stack.push(cmds.connect_command(v.graph, ids["number2"], "INT", ids["add"], "a", "INT"))


def disconnect(v: GraphView, ids: dict[str, int]) -> None:
    link = v.graph.link_into(ids["decode"], "samples")
    v.undo_stack.push(cmds.disconnect_command(v.graph, [link.id]))


def set_value(v: GraphView, ids: dict[str, int]) -> None:
    v.undo_stack.push(cmds.set_value_command(v.graph, ids["sampler"], "cfg", 8.5))


def set_value_new_key(v: GraphView, ids: dict[str, int]) -> None:
    # a value the node did not store before (an older file, see PREPARE): undo must remove it again
    v.undo_stack.push(cmds.set_value_command(v.graph, ids["sampler"], "steps", 30))


def set_title(v: GraphView, ids: dict[str, int]) -> None:
    v.undo_stack.push(cmds.set_title_command(v.graph, ids["decode"], "VAE decode"))


def bypass(v: GraphView, ids: dict[str, int]) -> None:
    v.select_nodes([ids["decode"], ids["add"]])
    v.toggle_mode("bypass")


def mute(v: GraphView, ids: dict[str, int]) -> None:
    v.select_nodes([ids["image"]])
    v.toggle_mode("mute")


def seed_control(v: GraphView, ids: dict[str, int]) -> None:
    v.undo_stack.push(cmds.set_extra_command(v.graph, ids["sampler"], "control_after_generate", "fixed"))


def paste(v: GraphView, ids: dict[str, int]) -> None:
    payload = selection_to_payload(v.graph, [ids["latent"], ids["sampler"], ids["decode"]])
    v.undo_stack.push(cmds.paste_command(v.graph, payload, (0, 900)))


def duplicate(v: GraphView, ids: dict[str, int]) -> None:
    v.select_nodes([ids["number"], ids["add"]])
    v.duplicate_selected()


def group_add(v: GraphView, ids: dict[str, int]) -> None:
    v.select_nodes([ids["decode"], ids["image"]])
    v.group_selected()


def group_move(v: GraphView, ids: dict[str, int]) -> None:
    g = v.graph.groups[1]
    x, y, w, h = g.bounding
    moves = {ids["number"]: (40, 340), ids["add"]: (290, 440)}
    v.undo_stack.push(cmds.move_group_command(v.graph, 1, (x + 40, y + 40, w, h), moves, merge_key=("g", 1)))


def group_remove(v: GraphView, ids: dict[str, int]) -> None:
    v.undo_stack.push(cmds.remove_groups_command(v.graph, [1]))


def group_rename(v: GraphView, ids: dict[str, int]) -> None:
    v.undo_stack.push(cmds.update_group_command(v.graph, 1, title="Numbers"))


EDITS: dict[str, Callable[[GraphView, dict[str, int]], None]] = {
    f.__name__: f
    for f in (
        add,
        remove_with_links,
        move,
        connect,
        replace_connection,
        disconnect,
        set_value,
        set_value_new_key,
        set_title,
        bypass,
        mute,
        seed_control,
        paste,
        duplicate,
        group_add,
        group_move,
        group_remove,
        group_rename,
    )
}


PREPARE: dict[str, Callable[[GraphView, dict[str, int]], object]] = {
    "set_value_new_key": lambda v, ids: v.graph.nodes[ids["sampler"]].values.pop("steps"),
}


def assert_mirrored(view: GraphView, graph: Graph) -> None:
    assert set(view._nodes) == set(graph.nodes)
    assert set(view._wires) == set(graph.links)
    assert set(view._groups) == set(graph.groups)
    for nid, node in graph.nodes.items():
        assert view.node_item(nid).pos().toTuple() == pytest.approx(node.pos)


@pytest.mark.parametrize("name", list(EDITS))
def test_undo_restores_exactly_and_redo_reapplies(view: GraphView, graph: Graph, registry, name: str) -> None:
    ids = build(graph, registry)
    view.fit_all()
    stack = view.undo_stack
    if name in PREPARE:
        PREPARE[name](view, ids)
    before = graph_to_dict(graph)
    EDITS[name](view, ids)
    after = graph_to_dict(graph)
    assert after != before, "the edit changed nothing"
    assert stack.count() == 1, "one gesture must be one undo step"
    assert_mirrored(view, graph)

    stack.undo()
    assert graph_to_dict(graph) == before
    assert_mirrored(view, graph)
    stack.redo()
    assert graph_to_dict(graph) == after
    assert_mirrored(view, graph)
    stack.undo()
    assert graph_to_dict(graph) == before
