"""Is this graph runnable? Every problem at once, each naming the node, its title and the input.

Validation looks only at what a run would execute: the active output nodes and everything they need,
after bypassed nodes are passed through and muted ones cut off. A half-built branch off to the side,
or a placeholder for a node type this install lacks, does not stop the rest of the graph from running.

`can_connect` answers the editor's question while a wire is being dragged; it uses the same type
rule as validation, so the canvas can never build a link that validation would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graph_engine.model import Graph, NodeMode
from graph_engine.node_spec import MISSING, NodeRegistry
from graph_engine.reroute import REROUTE, REROUTE_INPUT, output_type
from graph_engine.types import types_compatible
from graph_engine.value_sources import VALUE


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    node_id: int | None = None
    title: str | None = None
    input: str | None = None

    def __str__(self) -> str:
        if self.node_id is None:
            return self.message
        where = f"node {self.node_id} ({self.title})"
        if self.input:
            where += f", input '{self.input}'"
        return f"{where}: {self.message}"


class InvalidGraph(Exception):
    """Raised instead of running a graph that has problems; carries all of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Source:
    """Where a node's input value comes from once bypassed nodes are looked through."""

    node_id: int
    output_id: str


@dataclass(frozen=True)
class Verdict:
    """The answer to "may this wire be made?": truthy when it may, else with a reason to show."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


# ---- the editor's question --------------------------------------------------------------------


def can_connect(
    graph: Graph, registry: NodeRegistry, src_node: int, src_output: str, dst_node: int, dst_input: str
) -> Verdict:
    if src_node not in graph.nodes or dst_node not in graph.nodes:
        return Verdict(False, "that node no longer exists")
    if src_node == dst_node:
        return Verdict(False, "a node cannot feed itself")
    src_spec = registry.get(graph.nodes[src_node].type)
    dst_spec = registry.get(graph.nodes[dst_node].type)
    if src_spec is None or dst_spec is None:
        missing = graph.nodes[src_node if src_spec is None else dst_node].type
        return Verdict(False, f"node type {missing!r} is not installed")
    out = src_spec.output(src_output)
    inp = dst_spec.input(dst_input)
    if out is None:
        return Verdict(False, f"{src_spec.display_name} has no output {src_output!r}")
    if inp is None:
        return Verdict(False, f"{dst_spec.display_name} has no input {dst_input!r}")
    if src_spec.value_source and not inp.is_widget:
        return Verdict(False, f"a {src_spec.display_name} can only feed a value input, not {inp.type}")
    # A reroute carries the type of what feeds it; a primitive the type of the widget it feeds.
    src_type = output_type(graph, registry, src_node, src_output) if src_spec.virtual else out.type
    reason = types_compatible(src_type, inp.type)
    if reason:
        return Verdict(False, reason)
    # The link that would be replaced does not count: dragging onto a connected input swaps it.
    import networkx as nx  # imported when first needed: it costs the window ~0.3 s at start-up

    edges = [
        (lk.src_node, lk.dst_node)
        for lk in graph.links.values()
        if not (lk.dst_node == dst_node and lk.dst_input == dst_input)
    ]
    g = nx.DiGraph(edges)
    if g.has_node(dst_node) and g.has_node(src_node) and nx.has_path(g, dst_node, src_node):
        return Verdict(False, "would make a cycle")
    return Verdict(True)


# ---- resolving bypass and mute ----------------------------------------------------------------


def resolve_source(graph: Graph, node_id: int, output_id: str, type: str) -> Source | str:
    """Follow an output through reroutes and bypassed nodes to the node that really produces it, or say
    why not. A reroute is looked through whatever its mode: it is part of the wire, not a step."""
    seen: set[int] = set()
    while True:
        node = graph.nodes.get(node_id)
        if node is None:
            return f"links to node {node_id}, which does not exist"
        if node.type == REROUTE:
            if node_id in seen:
                return "reroutes form a loop"
            seen.add(node_id)
            feeding_link = graph.link_into(node_id, REROUTE_INPUT)
            if feeding_link is None:
                return f"comes from node {node_id} ({node.label}), a reroute with nothing plugged into it"
            node_id, output_id = feeding_link.src_node, feeding_link.src_output
            continue
        if node.mode == NodeMode.ACTIVE:
            return Source(node_id, output_id)
        if node.mode == NodeMode.MUTE:
            return f"comes from node {node_id} ({node.label}), which is muted"
        if node_id in seen:
            return "bypassed nodes form a loop"
        seen.add(node_id)
        feeding = sorted(
            (lk for lk in graph.links.values() if lk.dst_node == node_id and not types_compatible(lk.type, type)),
            key=lambda lk: lk.id,
        )
        if not feeding:
            return f"comes from node {node_id} ({node.label}), which is bypassed and has no {type} input"
        node_id, output_id = feeding[0].src_node, feeding[0].src_output


# ---- the run's question -----------------------------------------------------------------------


@dataclass
class Analysis:
    """What validation found out on the way; the planner builds on it instead of redoing it."""

    problems: list[Problem]
    targets: list[int]
    # The nodes that run, in topological order (empty when there is a cycle).
    order: list[int]
    # node id -> input id -> Source (a wire) or the constant value after coercion
    inputs: dict[int, dict[str, Source | Constant]]


@dataclass(frozen=True)
class Constant:
    value: Any


def analyze(graph: Graph, registry: NodeRegistry, targets: list[int] | None = None) -> Analysis:
    problems: list[Problem] = []

    def problem(code: str, message: str, node_id: int | None = None, input: str | None = None) -> None:
        title = graph.nodes[node_id].label if node_id in graph.nodes else None
        problems.append(Problem(code, message, node_id, title, input))

    # Resolve every link into an active node once: (dst, input) -> Source | reason.
    resolved: dict[int, dict[str, Source | str]] = {}
    for lk in graph.links.values():
        consumer = graph.nodes.get(lk.dst_node)
        if consumer is None or consumer.mode != NodeMode.ACTIVE:
            continue
        resolved.setdefault(lk.dst_node, {})[lk.dst_input] = resolve_source(graph, lk.src_node, lk.src_output, lk.type)

    def is_value_source(node_id: int) -> bool:
        spec = registry.get(graph.nodes[node_id].type)
        return spec is not None and spec.value_source

    # What each active node reads from, for walking back from the outputs. Value sources are not
    # steps of the run: their value is written into the inputs they feed (below).
    preds: dict[int, list[int]] = {}
    for dst, by_input in resolved.items():
        preds[dst] = [
            src.node_id for src in by_input.values() if isinstance(src, Source) and not is_value_source(src.node_id)
        ]

    # Which outputs run.
    if targets is None:
        chosen = [
            nid
            for nid, n in sorted(graph.nodes.items())
            if n.mode == NodeMode.ACTIVE and (spec := registry.get(n.type)) is not None and spec.output_node
        ]
    else:
        chosen = []
        for nid in targets:
            if nid not in graph.nodes:
                problem("unknown_target", f"there is no node {nid} to run")
            elif graph.nodes[nid].mode != NodeMode.ACTIVE:
                problem("inactive_target", "is muted or bypassed, so it cannot be run", nid)
            else:
                chosen.append(nid)
    if not chosen and not problems:
        problem("no_output", "nothing to run: the graph has no active output node (Save or Preview)")

    # The outputs and everything upstream of them: one walk back from all outputs at once.
    execution_set: set[int] = set(chosen)
    stack = list(chosen)
    while stack:
        for pred in preds.get(stack.pop(), ()):
            if pred not in execution_set:
                execution_set.add(pred)
                stack.append(pred)

    import networkx as nx

    sub = nx.DiGraph()
    sub.add_nodes_from(execution_set)
    sub.add_edges_from((pred, nid) for nid in execution_set for pred in preds.get(nid, ()))
    try:
        # Lexicographic order makes runs reproducible: the same graph always runs in the same order.
        order = list(nx.lexicographical_topological_sort(sub))
    except nx.NetworkXUnfeasible:
        order = []
        cycle = nx.find_cycle(sub)
        names = " → ".join(f"{a} ({graph.nodes[a].label})" for a, _ in cycle)
        first = cycle[0][0]
        problem("cycle", f"is part of a cycle: {names} → {first}", first)

    inputs: dict[int, dict[str, Source | Constant]] = {}
    for nid in sorted(execution_set):
        node = graph.nodes[nid]
        spec = registry.get(node.type)
        if spec is None:
            problem("unknown_type", f"node type {node.type!r} is not installed", nid)
            continue
        if spec.virtual:
            continue
        links_in = resolved.get(nid, {})
        node_inputs: dict[str, Source | Constant] = {}
        for input_id in links_in:
            if spec.input(input_id) is None:
                problem("unknown_input", "is connected, but this node type has no such input", nid, input_id)
        for inp in spec.inputs:
            src = links_in.get(inp.id)
            if isinstance(src, str):
                problem("bad_link", src, nid, inp.id)
                continue
            if src is not None:
                src_spec = registry.get(graph.nodes[src.node_id].type)
                if src_spec is None:
                    continue  # reported on the source node itself
                if src_spec.value_source:
                    source = graph.nodes[src.node_id]
                    if not inp.is_widget:
                        problem(
                            "type_mismatch",
                            f"is fed by node {src.node_id} ({source.label}), which can only feed a value "
                            f"input, not {inp.type}",
                            nid,
                            inp.id,
                        )
                        continue
                    value = source.values.get(VALUE, MISSING)
                    if value is MISSING:
                        problem(
                            "missing_value",
                            f"its value comes from node {src.node_id} ({source.label}), which has none",
                            nid,
                            inp.id,
                        )
                        continue
                    value, err = inp.check_value(value)
                    if err:
                        problem("bad_value", f"{err} (from node {src.node_id}, {source.label})", nid, inp.id)
                        continue
                    node_inputs[inp.id] = Constant(value)
                    continue
                out = src_spec.output(src.output_id)
                if out is None:
                    problem(
                        "bad_link",
                        f"is connected to output {src.output_id!r}, which {src_spec.display_name} lacks",
                        nid,
                        inp.id,
                    )
                    continue
                reason = types_compatible(out.type, inp.type)
                if reason:
                    problem("type_mismatch", f"{reason} (from node {src.node_id})", nid, inp.id)
                    continue
                node_inputs[inp.id] = src
                continue
            if not inp.is_widget:
                if not inp.optional:
                    problem("missing_input", f"required {inp.type} input is not connected", nid, inp.id)
                continue
            value = node.values.get(inp.id, inp.default)
            if value is MISSING:
                if inp.type == "COMBO" and not inp.optional:
                    choices = inp.choice_list()
                    detail = "nothing is available to choose" if not choices else "no choice is made"
                    problem("missing_value", detail, nid, inp.id)
                elif not inp.optional:
                    problem("missing_value", "has no value", nid, inp.id)
                continue
            value, err = inp.check_value(value)
            if err:
                problem("bad_value", err, nid, inp.id)
                continue
            node_inputs[inp.id] = Constant(value)
        inputs[nid] = node_inputs

    return Analysis(problems, chosen, order, inputs)


def validate(graph: Graph, registry: NodeRegistry, targets: list[int] | None = None) -> list[Problem]:
    """Every problem that would stop a run of `targets` (default: every active output node)."""
    return analyze(graph, registry, targets).problems
