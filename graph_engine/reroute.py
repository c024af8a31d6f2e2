"""Reroute nodes: a dot on a wire that only changes where the wire runs (ComfyUI's `Reroute`).

A reroute has one input of any type and one output that passes it through. It never runs: the engine
looks through it (`validation.resolve_source` follows its input like a bypass), so a link out of a
reroute is checked and executed with the type and value of whatever really feeds it. A chain of
reroutes is followed to its end; a reroute with nothing plugged in gives its consumers "no source".

The type is known by name here (not by a spec flag) because `resolve_source` has no registry: the
reroute is a fixed part of the graph model, like a link, not a node pack's node.
"""

from __future__ import annotations

from graph_engine.model import Graph
from graph_engine.node_spec import NodeRegistry
from graph_engine.types import ANY

REROUTE = "Reroute"
REROUTE_INPUT = "input"
REROUTE_OUTPUT = "output"


def is_reroute(graph: Graph, node_id: int) -> bool:
    node = graph.nodes.get(node_id)
    return node is not None and node.type == REROUTE


def reroute_origin(graph: Graph, node_id: int, output_id: str) -> tuple[int, str] | None:
    """The (node, output) an output really comes from once reroutes are looked through; None when a
    reroute on the way has no input (or reroutes form a loop)."""
    seen: set[int] = set()
    while is_reroute(graph, node_id):
        if node_id in seen:
            return None
        seen.add(node_id)
        feeding = graph.link_into(node_id, REROUTE_INPUT)
        if feeding is None:
            return None
        node_id, output_id = feeding.src_node, feeding.src_output
    return node_id, output_id


def output_type(graph: Graph, registry: NodeRegistry, node_id: int, output_id: str) -> str:
    """The type an output carries: a reroute's is the type of what feeds it (ANY while unplugged); a
    value source's is the type of the widget it feeds."""
    from graph_engine.value_sources import effective_spec  # value_sources imports this module

    origin = reroute_origin(graph, node_id, output_id)
    if origin is None:
        return ANY
    node = graph.nodes.get(origin[0])
    spec = effective_spec(graph, registry, node) if node is not None else None
    out = spec.output(origin[1]) if spec is not None else None
    return out.type if out is not None else ANY
