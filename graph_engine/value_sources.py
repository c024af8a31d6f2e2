"""Value-source nodes: one value typed once and fed to several widget inputs (ComfyUI's PrimitiveNode).

A value source is never executed. Its `value` is what each widget input it is wired to receives, as if
typed into that widget, so validation checks it with the consumer's own rules (range, choices, multiple
of 8) and the problem names the consumer's input; the consumer's cache key holds the value, so changing
it re-runs exactly the consumers.

The node has no fixed widget type: it takes the one of the first widget input it feeds (an INT seed
with its control-after-generate selector, a multiline prompt, a sampler combo). `effective_spec` gives
that shape to the editor and to the seed control, so a primitive edits and steps like the widget it
stands for.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from graph_engine.model import Graph, Node
from graph_engine.node_spec import Input, NodeRegistry, NodeSpec, Output
from graph_engine.reroute import REROUTE

VALUE = "value"


def fed_input(graph: Graph, registry: NodeRegistry, node_id: int) -> Input | None:
    """The widget input the value source feeds first (lowest link id, looking through reroutes), as its
    own `value` input."""
    inp = first_fed_input(graph, registry, node_id)
    return None if inp is None else replace(inp, id=VALUE, label=inp.display_name)


def first_fed_input(
    graph: Graph, registry: NodeRegistry, node_id: int, _seen: frozenset[int] = frozenset()
) -> Input | None:
    """The consumer's own declaration of the first widget input an output reaches (through reroutes)."""
    for lk in sorted(graph.links_from(node_id), key=lambda lk: lk.id):
        consumer = graph.nodes.get(lk.dst_node)
        if consumer is None:
            continue
        if consumer.type == REROUTE:
            if consumer.id not in _seen:
                found = first_fed_input(graph, registry, consumer.id, _seen | {node_id})
                if found is not None:
                    return found
            continue
        spec = registry.get(consumer.type)
        inp = spec.input(lk.dst_input) if spec is not None else None
        if inp is not None and inp.is_widget:
            return inp
    return None


def fed_values(graph: Graph, registry: NodeRegistry, node_id: int) -> dict[str, Any]:
    """The node's widget inputs whose value comes from a value source (through reroutes and bypasses),
    with that value: what ComfyUI's API format inlines and what a run gives the node."""
    from graph_engine.validation import Source, resolve_source  # validation imports this module

    out: dict[str, Any] = {}
    for input_id, lk in graph.inputs_of(node_id).items():
        src = resolve_source(graph, lk.src_node, lk.src_output, lk.type)
        if not isinstance(src, Source):
            continue
        source = graph.nodes[src.node_id]
        spec = registry.get(source.type)
        if spec is not None and spec.value_source and VALUE in source.values:
            out[input_id] = source.values[VALUE]
    return out


def effective_spec(graph: Graph, registry: NodeRegistry, node: Node) -> NodeSpec | None:
    """The node's declaration as the editor should show it: a value source takes its consumer's widget."""
    spec = registry.get(node.type)
    if spec is None or not spec.value_source:
        return spec
    inp = fed_input(graph, registry, node.id)
    if inp is None:
        return spec
    outputs = tuple(Output(inp.type, o.id, label=inp.type) for o in spec.outputs)
    return replace(spec, inputs=(inp,), outputs=outputs)
