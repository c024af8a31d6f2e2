"""From a valid graph to an execution plan: which nodes run, in what order, fed by what.

A plan is data, made once per run and then only read: the executor walks `order`, and for every
node looks up its inputs in `inputs`. `consumers` counts how many planned nodes read each node's
outputs, so results can be freed after their last reader when caching is off.
"""

from __future__ import annotations

from dataclasses import dataclass

from graph_engine.model import Graph
from graph_engine.node_spec import NodeRegistry, NodeSpec
from graph_engine.validation import Constant, InvalidGraph, Source, analyze


@dataclass(frozen=True)
class Ref:
    """An input read from another node's result tuple at `index` (the position of `output_id`)."""

    node_id: int
    output_id: str
    index: int


@dataclass(frozen=True)
class PlannedNode:
    id: int
    spec: NodeSpec
    title: str
    inputs: dict[str, Ref | Constant]


@dataclass(frozen=True)
class Plan:
    order: tuple[PlannedNode, ...]
    targets: tuple[int, ...]
    consumers: dict[int, int]

    @property
    def node_ids(self) -> list[int]:
        return [p.id for p in self.order]


def make_plan(graph: Graph, registry: NodeRegistry, targets: list[int] | None = None) -> Plan:
    """Validate and order; raises `InvalidGraph` with every problem if the graph cannot run."""
    analysis = analyze(graph, registry, targets)
    if analysis.problems:
        raise InvalidGraph(analysis.problems)
    order: list[PlannedNode] = []
    consumers: dict[int, int] = {}
    for nid in analysis.order:
        spec = registry.get(graph.nodes[nid].type)
        assert spec is not None  # analyze() reported unknown types
        if spec.virtual:
            continue
        node_inputs: dict[str, Ref | Constant] = {}
        for input_id, src in analysis.inputs[nid].items():
            if isinstance(src, Source):
                src_spec = registry.get(graph.nodes[src.node_id].type)
                assert src_spec is not None
                node_inputs[input_id] = Ref(src.node_id, src.output_id, src_spec.output_index(src.output_id))
                consumers[src.node_id] = consumers.get(src.node_id, 0) + 1
            else:
                node_inputs[input_id] = src
        order.append(PlannedNode(nid, spec, graph.nodes[nid].label, node_inputs))
    return Plan(tuple(order), tuple(analysis.targets), consumers)
