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

from graph_engine.model import Graph, Node
from graph_engine.node_spec import Input, NodeRegistry, NodeSpec, Output

VALUE = "value"


def fed_input(graph: Graph, registry: NodeRegistry, node_id: int) -> Input | None:
    """The widget input the value source feeds first (lowest link id), as its own `value` input."""
    for lk in sorted(graph.links_from(node_id), key=lambda lk: lk.id):
        consumer = graph.nodes.get(lk.dst_node)
        spec = registry.get(consumer.type) if consumer is not None else None
        inp = spec.input(lk.dst_input) if spec is not None else None
        if inp is not None and inp.is_widget:
            return replace(inp, id=VALUE, label=inp.display_name)
    return None


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
