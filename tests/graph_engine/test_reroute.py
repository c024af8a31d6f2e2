"""Reroute nodes: transparent dots on a wire. Runs, validation and the editor's type checks see the real
source through any chain of them; one with nothing plugged in is named, never crashes."""

from __future__ import annotations

from graph_engine import Executor, Graph, NodeRegistry, can_connect, validate
from graph_engine.reroute import output_type, reroute_origin
from graph_engine.value_sources import effective_spec, fed_values
from nodes.primitive import primitive
from nodes.reroute import reroute
from tests.graph_engine import toy_nodes


def registry() -> NodeRegistry:
    return NodeRegistry([*toy_nodes.ALL, primitive, reroute])


def chain() -> tuple[Graph, dict[str, int]]:
    """Number → Reroute → Reroute → Scale.x, and the result shown."""
    g = Graph()
    n = g.add_node("Number", {"value": 4}, pos=(0, 0))
    r1 = g.add_node("Reroute", pos=(100, 0))
    r2 = g.add_node("Reroute", pos=(150, 0))
    s = g.add_node("Scale", {"factor": 2.0}, pos=(200, 0))
    show = g.add_node("Show", pos=(400, 0))
    g.add_link(n.id, "INT", r1.id, "input", "INT")
    g.add_link(r1.id, "output", r2.id, "input", "INT")
    g.add_link(r2.id, "output", s.id, "x", "INT")
    g.add_link(s.id, "FLOAT", show.id, "value", "FLOAT")
    return g, {"n": n.id, "r1": r1.id, "r2": r2.id, "s": s.id, "show": show.id}


def test_a_chain_of_reroutes_runs_as_one_wire() -> None:
    g, ids = chain()
    result = Executor(registry()).run(g)
    assert result.status == "done", result
    assert result.ui[ids["show"]] == {"text": ["8.0"]}
    assert reroute_origin(g, ids["r2"], "output") == (ids["n"], "INT")
    assert output_type(g, registry(), ids["r2"], "output") == "INT"


def test_the_real_source_type_is_checked_through_reroutes() -> None:
    g, ids = chain()
    latent = g.add_node("LatentSink", pos=(300, 200))
    # The reroute's output says ANY, but it carries an INT: the editor refuses it for a LATENT input.
    verdict = can_connect(g, registry(), ids["r2"], "output", latent.id, "latent")
    assert not verdict and "INT cannot feed LATENT" in verdict.reason
    g.add_link(ids["r2"], "output", latent.id, "latent", "ANY")  # a file can still hold such a link
    problems = validate(g, registry())
    assert [(p.node_id, p.code) for p in problems] == [(latent.id, "type_mismatch")]


def test_an_unplugged_reroute_is_named_on_its_consumer() -> None:
    g, ids = chain()
    g.remove_link(g.link_into(ids["r1"], "input").id)
    (problem,) = validate(g, registry())
    assert (problem.node_id, problem.input, problem.code) == (ids["s"], "x", "bad_link")
    assert "reroute with nothing plugged into it" in problem.message
    assert output_type(g, registry(), ids["r2"], "output") == "ANY"


def test_a_primitive_through_a_reroute_feeds_the_widget_and_takes_its_shape() -> None:
    g = Graph()
    p = g.add_node("PrimitiveNode", {"value": 9}, pos=(0, 0))
    r = g.add_node("Reroute", pos=(100, 0))
    a = g.add_node("Number", {"value": 1}, pos=(200, 0))
    show = g.add_node("Show", pos=(400, 0))
    g.add_link(p.id, "value", r.id, "input", "ANY")
    g.add_link(r.id, "output", a.id, "value", "INT")
    g.add_link(a.id, "INT", show.id, "value", "INT")
    assert Executor(registry()).run(g).ui[show.id] == {"text": ["9"]}
    spec = effective_spec(g, registry(), g.nodes[p.id])
    assert spec is not None and [(i.id, i.type, i.max) for i in spec.inputs] == [("value", "INT", 1000)]
    assert fed_values(g, registry(), a.id) == {"value": 9}
    # A primitive never feeds a socket.
    scale = g.add_node("Scale", pos=(200, 200))
    assert not can_connect(g, registry(), p.id, "value", scale.id, "x")
