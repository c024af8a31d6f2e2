"""Sweep and prompt arguments to jobs: ranges, lists, products, stable ids, and every mistake named
before a job runs. Torch-free (the test nodes are pure Python)."""

from __future__ import annotations

import pytest

from app.batch.jobs import (
    JobSpecError,
    check_axes,
    expand,
    job_graph,
    parse_sweep,
    prompt_axis,
    workflow_digest,
)
from graph_engine import Graph
from graph_engine.serialization import graph_to_dict
from tests.batch import batch_nodes


def graph() -> tuple[Graph, dict[str, int]]:
    g = Graph()
    ids = {"value": g.add_node("BatchValue", {"value": 1}, title="Seed").id}
    ids["write"] = g.add_node("BatchWrite", {"text": "a cat"}, title="Writer").id
    g.add_link(ids["value"], "INT", ids["write"], "value", "INT")
    return g, ids


REG = batch_nodes.registry()


def test_inclusive_range_with_and_without_step():
    g, ids = graph()
    assert parse_sweep(g, REG, f"{ids['value']}.value=1..5").values == (1, 2, 3, 4, 5)
    assert parse_sweep(g, REG, "Seed.value=1..40:10").values == (1, 11, 21, 31)
    assert parse_sweep(g, REG, "BatchValue.value=3,1,3,2").values == (3, 1, 2)  # repeats once


def test_float_range_lands_on_the_end_and_lists_are_typed():
    from graph_engine import Float, NodeRegistry, node

    @node("Cfg", inputs=[Float("cfg", 7.0, min=0, max=30)])
    def cfg(ctx, cfg):  # pragma: no cover - never run
        return ()

    g2 = Graph()
    nid = g2.add_node("Cfg", {}).id
    reg = NodeRegistry([cfg])
    assert parse_sweep(g2, reg, f"{nid}.cfg=4..5:0.25").values == (4.0, 4.25, 4.5, 4.75, 5.0)
    assert parse_sweep(g2, reg, f"{nid}.cfg=0.1..0.3:0.1").values == (0.1, 0.2, 0.3)
    assert parse_sweep(g2, reg, f"{nid}.cfg=4,6.5").values == (4.0, 6.5)


def test_several_sweeps_give_the_cartesian_product_with_stable_distinct_ids():
    g, ids = graph()
    axes = [parse_sweep(g, REG, "Seed.value=1..3"), parse_sweep(g, REG, "Writer.text=x,y")]
    base = graph_to_dict(g)
    jobs = expand(axes, base)
    assert [j.label for j in jobs] == [f"value={v} text={t}" for v in (1, 2, 3) for t in ("x", "y")]
    assert len({j.id for j in jobs}) == 6
    assert [j.id for j in expand(axes, base)] == [j.id for j in jobs]  # the same command, the same ids
    moved = graph_to_dict(g)
    moved["nodes"][0]["pos"] = [999, 999]  # layout is not content
    assert workflow_digest(moved) == workflow_digest(base)
    g.set_value(ids["value"], "value", 9)  # the base value of a swept input is not part of the ids
    assert [j.id for j in expand(axes, graph_to_dict(g))] == [j.id for j in jobs]
    g.set_value(ids["write"], "name", "other")
    other = expand(axes, graph_to_dict(g))
    assert not {j.id for j in other} & {j.id for j in jobs}  # a changed workflow never reuses a name
    built = job_graph(graph_to_dict(g), jobs[3])
    assert built.nodes[ids["value"]].values["value"] == 2 and built.nodes[ids["write"]].values["text"] == "y"
    assert g.nodes[ids["value"]].values["value"] == 9  # the base graph is untouched


def test_prompt_lines_become_jobs_named_by_line(tmp_path):
    g, _ = graph()
    axis = prompt_axis(g, REG, "Writer.text", ["a fox", "", "a cat in the snow, 4k"], "--prompts p.txt")
    jobs = expand([axis], {})
    assert [j.overrides[0].value for j in jobs] == ["a fox", "a cat in the snow, 4k"]
    assert [j.id.split("-")[0] for j in jobs] == ["line00001", "line00003"]
    with pytest.raises(JobSpecError, match="value is a INT input, not text"):
        prompt_axis(g, REG, "Seed.value", ["x"], "--prompts p.txt")
    with pytest.raises(JobSpecError, match="no prompts"):
        prompt_axis(g, REG, "Writer.text", ["", "  "], "--prompts p.txt")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Nobody.value=1..3", "no node with id or title 'Nobody'"),
        ("Seed.strength=1..3", "has no value input 'strength' \\(value\\)"),
        ("Seed.value=5..1", "is empty"),
        ("Seed.value=1..5:0", "step must be above 0"),
        ("Seed.value=1.5..3", "not a whole number"),
        ("Seed.value=a,b", "'a' is not a number"),
        ("Seed.value", "expected NODE.INPUT=VALUES"),
        ("Seed.value=1,,2", "empty value"),
    ],
)
def test_bad_sweeps_say_what_is_wrong(text, message):
    g, _ = graph()
    with pytest.raises(JobSpecError, match=message):
        parse_sweep(g, REG, text)


def test_out_of_range_values_are_refused_by_graph_validation_before_anything_runs():
    g, ids = graph()
    axes = [parse_sweep(g, REG, "Seed.value=998..1002")]
    with pytest.raises(JobSpecError) as info:
        check_axes(g, REG, axes)
    assert len(info.value.messages) == 2
    assert "value 1001" in info.value.messages[0] and "above the maximum 1000" in info.value.messages[0]
    assert g.nodes[ids["value"]].values["value"] == 1  # restored after checking
    check_axes(g, REG, [parse_sweep(g, REG, "Seed.value=0..1000")])  # the whole valid range passes


def test_a_long_axis_is_checked_value_by_value_without_validating_the_graph_each_time():
    from app.batch.jobs import FULLY_VALIDATED

    g, _ = graph()
    axis = parse_sweep(g, REG, f"Seed.value=0..{FULLY_VALIDATED * 3}:2")  # 301 values, ends at 600
    check_axes(g, REG, [axis])
    bad = parse_sweep(g, REG, "Seed.value=" + ",".join(map(str, [*range(250), 1001, 5, 2000])))
    with pytest.raises(JobSpecError) as info:
        check_axes(g, REG, [bad])
    assert [m.split(": value ")[1].split(":")[0] for m in info.value.messages] == ["1001", "2000"]
    assert all("above the maximum 1000" in m and "node 1 (Seed), input 'value'" in m for m in info.value.messages)


def test_no_axes_and_too_many_jobs_are_refused():
    g, _ = graph()
    with pytest.raises(JobSpecError, match="at least one --sweep"):
        expand([], {})
    big = parse_sweep(g, REG, "Seed.value=0..1000")
    with pytest.raises(JobSpecError, match="more than the"):
        expand([big, big], {})  # 1001² is over the limit


def test_run_many_needs_a_seed_to_vary():
    from app.batch.jobs import run_many_jobs

    g, _ = graph()
    with pytest.raises(JobSpecError, match="no seed to vary"):
        run_many_jobs(g, REG, 3, lambda graph, node_id: None)
