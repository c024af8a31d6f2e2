"""Which nodes run, in what order, and what the cache keeps."""

from __future__ import annotations

import threading

import pytest

from graph_engine import CancelToken, Executor, Graph, InvalidGraph, NodeMode, ResultCache
from graph_engine.events import NodeCached, NodeFailed, NodeFinished, NodeProgress, NodeStarted, RunFinished, RunStarted
from tests.graph_engine import toy_nodes
from tests.graph_engine.toy_nodes import CALLS


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()
    yield
    CALLS.clear()


def chain() -> tuple[Graph, dict[str, int]]:
    """n1=Number(2) ─┐
                 Add ── Scale ── Show
    n2=Number(3) ─┘
    n6=Number(99) (feeds nothing: must never run)"""
    g = Graph()
    a = g.add_node("Number", {"value": 2}).id
    b = g.add_node("Number", {"value": 3}).id
    add = g.add_node("Add", {"bias": 0}).id
    sc = g.add_node("Scale", {"factor": 2.0}).id
    show = g.add_node("Show").id
    lone = g.add_node("Number", {"value": 99}).id
    g.add_link(a, "INT", add, "a", "INT")
    g.add_link(b, "INT", add, "b", "INT")
    g.add_link(add, "INT", sc, "x", "INT")
    g.add_link(sc, "FLOAT", show, "value", "FLOAT")
    return g, {"a": a, "b": b, "add": add, "scale": sc, "show": show, "lone": lone}


def ran() -> list[int]:
    return [nid for _, nid in CALLS]


def test_runs_only_ancestors_of_outputs_in_topological_order():
    g, ids = chain()
    result = Executor(toy_nodes.registry()).run(g)
    assert result.status == "done"
    assert ran() == [ids["a"], ids["b"], ids["add"], ids["scale"], ids["show"]]
    assert ids["lone"] not in ran()
    assert result.ui[ids["show"]] == {"text": ["10.0"]}


def test_unchanged_rerun_executes_nothing():
    g, ids = chain()
    ex = Executor(toy_nodes.registry())
    ex.run(g)
    CALLS.clear()
    result = ex.run(g)
    assert ran() == []
    assert sorted(result.cached) == sorted(ids[k] for k in ("a", "b", "add", "scale", "show"))
    # The output node's UI payload is replayed from the cache, so previews still show.
    assert result.ui[ids["show"]] == {"text": ["10.0"]}


def test_changing_one_value_reruns_it_and_its_descendants_only():
    g, ids = chain()
    ex = Executor(toy_nodes.registry())
    ex.run(g)
    CALLS.clear()
    g.set_value(ids["b"], "value", 5)
    result = ex.run(g)
    assert ran() == [ids["b"], ids["add"], ids["scale"], ids["show"]]
    assert result.ui[ids["show"]] == {"text": ["14.0"]}
    CALLS.clear()
    g.set_value(ids["scale"], "factor", 3.0)
    ex.run(g)
    assert ran() == [ids["scale"], ids["show"]]


def test_cache_keys_ignore_node_ids():
    g1, _ = chain()
    ex = Executor(toy_nodes.registry())
    ex.run(g1)
    CALLS.clear()
    # The same computation built with other ids hits the same cache entries.
    g2 = Graph()
    g2.next_node_id = 100
    a = g2.add_node("Number", {"value": 2}).id
    b = g2.add_node("Number", {"value": 3}).id
    add = g2.add_node("Add", {"bias": 0}).id
    sc = g2.add_node("Scale", {"factor": 2.0}).id
    show = g2.add_node("Show").id
    g2.add_link(a, "INT", add, "a", "INT")
    g2.add_link(b, "INT", add, "b", "INT")
    g2.add_link(add, "INT", sc, "x", "INT")
    g2.add_link(sc, "FLOAT", show, "value", "FLOAT")
    ex.run(g2)
    assert ran() == []


def test_rewiring_invalidates_even_when_values_match():
    g, ids = chain()
    ex = Executor(toy_nodes.registry())
    ex.run(g)
    CALLS.clear()
    # Swap a and b: values identical, but Add's inputs come from different places.
    la, lb = g.link_into(ids["add"], "a"), g.link_into(ids["add"], "b")
    g.remove_link(la.id)
    g.remove_link(lb.id)
    g.add_link(ids["b"], "INT", ids["add"], "a", "INT")
    g.add_link(ids["a"], "INT", ids["add"], "b", "INT")
    ex.run(g)
    assert ran() == [ids["add"], ids["scale"], ids["show"]]


def test_nondeterministic_nodes_always_rerun_with_descendants():
    g = Graph()
    d = g.add_node("Dice").id
    s = g.add_node("Show").id
    g.add_link(d, "INT", s, "value", "INT")
    ex = Executor(toy_nodes.registry())
    ex.run(g)
    CALLS.clear()
    ex.run(g)
    assert ran() == [d, s]


def test_eviction_under_budget_is_lru():
    g = Graph()
    blob = g.add_node("Blob", {"size": 400, "tag": 0}).id
    sink = g.add_node("LatentSink").id
    g.add_link(blob, "LATENT", sink, "latent", "LATENT")
    cache = ResultCache(budget_bytes=1000)
    ex = Executor(toy_nodes.registry(), cache=cache)
    for tag in (0, 1):  # two results of 400 bytes fit
        g.set_value(blob, "tag", tag)
        ex.run(g)
    assert cache.total_bytes == 800
    CALLS.clear()
    g.set_value(blob, "tag", 0)
    ex.run(g)
    assert ran() == []  # tag 0 still cached, and now most recently used
    g.set_value(blob, "tag", 2)
    ex.run(g)  # a third 400-byte result pushes out the least recently used: tag 1
    assert cache.total_bytes <= 1000
    CALLS.clear()
    g.set_value(blob, "tag", 0)
    ex.run(g)
    assert ran() == []
    g.set_value(blob, "tag", 1)
    ex.run(g)
    assert ran() == [blob, sink]


def test_no_cache_frees_intermediates_after_last_consumer():
    """With caching off, a result is dropped once its last reader ran; only targets survive the run."""
    import weakref

    class Big:
        pass

    refs: list[weakref.ref] = []
    alive_when_sink_ran: list[bool] = []

    from graph_engine import NodeRegistry, Output, Socket, node

    @node("Make", outputs=[Output("LATENT")])
    def make(ctx):
        obj = Big()
        refs.append(weakref.ref(obj))
        return (obj,)

    @node("Pass", inputs=[Socket("x", "LATENT")], outputs=[Output("INT")])
    def pass_(ctx, x):
        return (1,)

    @node("Sink", inputs=[Socket("v", "INT")], output_node=True)
    def sink(ctx, v):
        alive_when_sink_ran.append(refs[0]() is not None)
        return ()

    g = Graph()
    m = g.add_node("Make").id
    p = g.add_node("Pass").id
    s = g.add_node("Sink").id
    g.add_link(m, "LATENT", p, "x", "LATENT")
    g.add_link(p, "INT", s, "v", "INT")
    Executor(NodeRegistry([make, pass_, sink]), cache=ResultCache(0)).run(g)
    assert alive_when_sink_ran == [False]


def test_bypass_passes_matching_input_through():
    g, ids = chain()
    g.set_mode(ids["scale"], NodeMode.BYPASS)
    # Scale outputs FLOAT and has only an INT input: nothing to pass through -> a clear problem.
    with pytest.raises(InvalidGraph) as err:
        Executor(toy_nodes.registry()).run(g)
    assert "bypassed and has no FLOAT input" in str(err.value)
    # Bypass Add instead: its INT output comes from its first INT input (a = 2).
    g.set_mode(ids["scale"], NodeMode.ACTIVE)
    g.set_mode(ids["add"], NodeMode.BYPASS)
    CALLS.clear()
    result = Executor(toy_nodes.registry()).run(g)
    assert ids["add"] not in ran()
    assert result.ui[ids["show"]] == {"text": ["4.0"]}


def test_muted_output_does_not_run_and_muted_source_is_reported():
    g, ids = chain()
    s2 = g.add_node("Show").id
    g.add_link(ids["lone"], "INT", s2, "value", "INT")
    g.set_mode(s2, NodeMode.MUTE)
    Executor(toy_nodes.registry()).run(g)
    assert s2 not in ran() and ids["lone"] not in ran()
    g.set_mode(ids["add"], NodeMode.MUTE)
    with pytest.raises(InvalidGraph) as err:
        Executor(toy_nodes.registry()).run(g)
    assert "which is muted" in str(err.value)
    assert err.value.problems[0].node_id == ids["scale"]


def test_events_in_order_and_progress():
    g = Graph()
    n = g.add_node("Number").id
    st = g.add_node("Steps", {"steps": 3}).id
    sh = g.add_node("Show").id
    g.add_link(n, "INT", st, "x", "INT")
    g.add_link(st, "INT", sh, "value", "INT")
    events: list = []
    Executor(toy_nodes.registry()).run(g, on_event=events.append)
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    assert events[0] == RunStarted((n, st, sh))
    assert [e for e in events if isinstance(e, NodeProgress)] == [NodeProgress(st, i, 3) for i in (1, 2, 3)]
    assert [e.node_id for e in events if isinstance(e, NodeStarted)] == [n, st, sh]
    assert [e.node_id for e in events if isinstance(e, NodeFinished)] == [n, st, sh]
    events.clear()
    Executor(toy_nodes.registry()).run(g, on_event=events.append)  # fresh executor: no cache shared
    ex = Executor(toy_nodes.registry())
    ex.run(g)
    events.clear()
    ex.run(g, on_event=events.append)
    assert [e.node_id for e in events if isinstance(e, NodeCached)] == [n, st, sh]
    assert isinstance(events[-1], RunFinished) and events[-1].status == "done"


def test_cancellation_mid_run_stops_at_next_step_and_keeps_earlier_results():
    g = Graph()
    n = g.add_node("Number").id
    st = g.add_node("Steps", {"steps": 50}).id
    sh = g.add_node("Show").id
    g.add_link(n, "INT", st, "x", "INT")
    g.add_link(st, "INT", sh, "value", "INT")
    token = CancelToken()
    steps_seen: list[int] = []

    def on_event(e):
        if isinstance(e, NodeProgress):
            steps_seen.append(e.step)
            if e.step == 10:
                token.cancel()

    ex = Executor(toy_nodes.registry())
    result = ex.run(g, on_event=on_event, cancel=token)
    assert result.status == "cancelled"
    assert max(steps_seen) == 10  # the next progress() call raised
    assert sh not in ran()
    CALLS.clear()
    result = ex.run(g)  # resumes: Number is cached
    assert result.status == "done"
    assert ran() == [st, sh]


def test_cancel_from_another_thread():
    g = Graph()
    n = g.add_node("Number").id
    st = g.add_node("Steps", {"steps": 1000}).id
    sh = g.add_node("Show").id
    g.add_link(n, "INT", st, "x", "INT")
    g.add_link(st, "INT", sh, "value", "INT")
    token = CancelToken()
    started = threading.Event()
    out: list = []

    def on_event(e):
        if isinstance(e, NodeProgress):
            started.set()
            threading.Event().wait(0.001)

    t = threading.Thread(
        target=lambda: out.append(Executor(toy_nodes.registry()).run(g, on_event=on_event, cancel=token))
    )
    t.start()
    assert started.wait(5)
    token.cancel()
    t.join(5)
    assert out and out[0].status == "cancelled"


def test_node_error_names_node_and_input_and_keeps_results():
    g = Graph()
    n = g.add_node("Number", {"value": 9}).id
    f = g.add_node("Fail", {"limit": 3}, title="Checker").id
    sh = g.add_node("Show").id
    g.add_link(n, "INT", f, "x", "INT")
    g.add_link(f, "INT", sh, "value", "INT")
    events: list = []
    ex = Executor(toy_nodes.registry())
    result = ex.run(g, on_event=events.append)
    assert result.status == "failed"
    assert str(result.error) == f"node {f} (Checker), input 'x': 9 is more than 3"
    assert result.error.inputs == {"x": "9", "limit": "3"}
    assert isinstance(events[-2], NodeFailed) and events[-2].node_id == f
    # An unexpected exception is named by its type; the traceback is kept for logs, not the message.
    g.set_value(n, "value", 1)
    result = ex.run(g)
    assert result.error.message == "ZeroDivisionError: division by zero"
    assert "Traceback" in result.error.traceback and "Traceback" not in str(result.error)
    CALLS.clear()
    ex.run(g)
    assert ran() == [f]  # Number(1) was kept from the failed run


def test_targets_restrict_what_runs():
    g, ids = chain()
    s2 = g.add_node("Show").id
    g.add_link(ids["lone"], "INT", s2, "value", "INT")
    Executor(toy_nodes.registry()).run(g, targets=[s2])
    assert ran() == [ids["lone"], s2]


def test_wrong_number_of_outputs_is_reported_as_a_node_bug():
    from graph_engine import NodeRegistry, Output, node

    @node("Bad", outputs=[Output("INT"), Output("FLOAT")])
    def bad(ctx):
        return (1,)

    @node("Sink", inputs=[], output_node=True)
    def sink(ctx):
        return ()

    g = Graph()
    b = g.add_node("Bad").id
    g.add_node("Show")
    g.add_link(b, "INT", 2, "value", "INT")
    reg = NodeRegistry([bad, toy_nodes.show])
    result = Executor(reg).run(g)
    assert result.status == "failed" and "returned 1 values for 2 outputs" in result.error.message


def test_settings_that_shape_results_are_part_of_the_cache_key():
    g, _ = chain()
    cache = ResultCache()
    Executor(toy_nodes.registry(), cache=cache, settings={"precision": "exact"}).run(g)
    CALLS.clear()
    Executor(toy_nodes.registry(), cache=cache, settings={"precision": "exact"}).run(g)
    assert ran() == []
    Executor(toy_nodes.registry(), cache=cache, settings={"precision": "fast"}).run(g)
    assert len(ran()) == 5
    CALLS.clear()
    Executor(toy_nodes.registry(), cache=cache, device="cuda", settings={"precision": "fast"}).run(g)
    assert len(ran()) == 5
