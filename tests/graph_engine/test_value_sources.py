"""Primitive (value-source) nodes: one value given to every widget input it feeds, checked by the
consumer's own rules, part of each consumer's cache key, never executed itself."""

from __future__ import annotations

import pytest

from graph_engine import Executor, Graph, NodeRegistry, validate
from graph_engine.value_sources import effective_spec
from nodes.primitive import primitive
from tests.graph_engine import toy_nodes
from tests.graph_engine.toy_nodes import CALLS


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()
    yield
    CALLS.clear()


def registry() -> NodeRegistry:
    return NodeRegistry([*toy_nodes.ALL, primitive])


def shared_value_graph(value: object) -> tuple[Graph, dict[str, int]]:
    """One Primitive feeding the `value` widget of two Number nodes, each shown."""
    g = Graph()
    p = g.add_node("PrimitiveNode", {"value": value}, pos=(0, 0))
    a = g.add_node("Number", {"value": 1}, pos=(200, 0))
    b = g.add_node("Number", {"value": 2}, pos=(200, 200))
    sa = g.add_node("Show", pos=(400, 0))
    sb = g.add_node("Show", pos=(400, 200))
    for n in (a, b):
        g.add_link(p.id, "value", n.id, "value", "INT")
    g.add_link(a.id, "INT", sa.id, "value", "INT")
    g.add_link(b.id, "INT", sb.id, "value", "INT")
    return g, {"p": p.id, "a": a.id, "b": b.id, "sa": sa.id, "sb": sb.id}


def test_every_fed_input_gets_the_value_and_the_primitive_never_runs() -> None:
    g, ids = shared_value_graph(7)
    result = Executor(registry()).run(g)
    assert result.status == "done"
    assert result.ui[ids["sa"]] == {"text": ["7"]} and result.ui[ids["sb"]] == {"text": ["7"]}
    assert ids["p"] not in [nid for _, nid in CALLS]


def test_changing_the_value_reruns_exactly_its_consumers() -> None:
    g, ids = shared_value_graph(7)
    ex = Executor(registry())
    ex.run(g)
    CALLS.clear()
    assert ex.run(g).status == "done" and CALLS == []
    g.set_value(ids["p"], "value", 8)
    result = ex.run(g)
    # a and b now compute the same thing, so the cache (keyed by content, not ids) runs it once.
    assert {nid for _, nid in CALLS} in ({ids["a"], ids["sa"]}, {ids["b"], ids["sb"]})
    assert result.ui[ids["sa"]] == {"text": ["8"]} and result.ui[ids["sb"]] == {"text": ["8"]}


def test_an_out_of_range_value_is_reported_on_each_consumer_input() -> None:
    g, ids = shared_value_graph(5000)  # Number's value is at most 1000
    problems = validate(g, registry())
    assert {(p.node_id, p.input) for p in problems} == {(ids["a"], "value"), (ids["b"], "value")}
    assert all(p.code == "bad_value" and f"node {ids['p']}" in p.message for p in problems)


def test_a_primitive_cannot_stand_for_a_socket_and_an_empty_one_is_named() -> None:
    g = Graph()
    p = g.add_node("PrimitiveNode", {}, pos=(0, 0))
    n = g.add_node("Number", {"value": 1}, pos=(200, 0))
    shown = g.add_node("Show", pos=(400, 0))
    show = g.add_node("Show", pos=(400, 200))
    g.add_link(p.id, "value", n.id, "value", "INT")
    g.add_link(n.id, "INT", shown.id, "value", "INT")
    g.add_link(p.id, "value", show.id, "value", "ANY")
    problems = {(pr.node_id, pr.input): pr for pr in validate(g, registry())}
    assert problems[(n.id, "value")].code == "missing_value"
    assert problems[(show.id, "value")].code == "type_mismatch"


def test_the_editor_sees_the_widget_it_feeds() -> None:
    g, ids = shared_value_graph(7)
    spec = effective_spec(g, registry(), g.nodes[ids["p"]])
    assert spec is not None
    (inp,) = spec.inputs
    assert (inp.id, inp.type, inp.min, inp.max) == ("value", "INT", -1000, 1000)
    assert spec.outputs[0].type == "INT"
    alone = Graph()
    lone = alone.add_node("PrimitiveNode", {}, pos=(0, 0))
    assert effective_spec(alone, registry(), lone).inputs == ()
