"""Reroutes and Primitives on the canvas: putting a reroute on a wire, wiring a primitive to a widget,
and finding what a Primitive's value reaches.

Double-clicking a wire puts a Reroute there (the wire is split in two through it), as one undo step.
The Reroute is drawn as a small pill by `NodeItem`; the engine looks through it (`graph_engine.reroute`).
Wiring an empty Primitive to a widget gives it that widget's value (as ComfyUI does), in the same undo
step, so converting a widget to a primitive never changes what the node gets.
"""

from __future__ import annotations

from typing import Any

from graph_engine.model import Graph
from graph_engine.node_spec import MISSING, NodeRegistry
from graph_engine.reroute import REROUTE, REROUTE_INPUT, REROUTE_OUTPUT, reroute_origin
from graph_engine.value_sources import VALUE
from ui import commands as cmds
from ui.canvas.layout import REROUTE_SIZE
from ui.clipboard import link_record


def _link(link_id: int, src: int, out: str, dst: int, inp: str, typ: str) -> dict[str, Any]:
    return {
        "id": link_id,
        "src_node": src,
        "src_output": out,
        "dst_node": dst,
        "dst_input": inp,
        "type": typ,
        "extra": {},
    }


def insert_reroute_command(
    graph: Graph, registry: NodeRegistry, link_id: int, center: tuple[float, float]
) -> cmds.GraphCommand:
    """Split link `link_id` with a new Reroute centred at `center`; both new links keep the wire's type."""
    lk = graph.links[link_id]
    w, h = REROUTE_SIZE
    rec = cmds.new_node_record(graph, registry, REROUTE, (center[0] - w / 2, center[1] - h / 2))
    rid = rec["id"]
    first = graph.next_link_id
    edits: list[cmds.Edit] = [
        cmds.AddNode(rec),
        cmds.RemoveLink(link_record(lk)),
        cmds.AddLink(_link(first, lk.src_node, lk.src_output, rid, REROUTE_INPUT, lk.type)),
        cmds.AddLink(_link(first + 1, rid, REROUTE_OUTPUT, lk.dst_node, lk.dst_input, lk.type)),
    ]
    return cmds.GraphCommand(graph, "Add Reroute", edits)


def reroute_consumers(graph: Graph, node_id: int) -> set[int]:
    """The nodes an output of `node_id` feeds, looking through reroutes (and the reroutes on the way)."""
    found: set[int] = set()
    todo = [node_id]
    while todo:
        for lk in graph.links_from(todo.pop()):
            if lk.dst_node not in found:
                found.add(lk.dst_node)
                if graph.nodes[lk.dst_node].type == REROUTE:
                    todo.append(lk.dst_node)
    return found


def adopt_widget_value_edits(
    graph: Graph, registry: NodeRegistry, src: int, out: str, dst: int, inp: str
) -> list[cmds.Edit]:
    """When a value-less Primitive (possibly behind reroutes) is wired to a widget: take its value."""
    origin = reroute_origin(graph, src, out)
    if origin is None:
        return []
    prim = graph.nodes[origin[0]]
    spec, consumer = registry.get(prim.type), registry.get(graph.nodes[dst].type)
    widget = consumer.input(inp) if consumer is not None else None
    if spec is None or not spec.value_source or VALUE in prim.values or widget is None or not widget.is_widget:
        return []
    value = graph.nodes[dst].values.get(inp, widget.default)
    if value is MISSING:
        return []
    return [cmds.SetValue(prim.id, VALUE, cmds.ABSENT, value)]
