"""Workflow files: round trips, unknown keys, migrations, bad files, atomic saves."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph_engine import Graph, NodeMode, WorkflowFormatError
from graph_engine.serialization import (
    FORMAT,
    SCHEMA_VERSION,
    dumps,
    graph_from_dict,
    graph_to_dict,
    load,
    loads,
    save,
)


def sample_graph() -> Graph:
    g = Graph()
    a = g.add_node("Number", {"value": 2}, pos=(10, 20), title="Two").id
    b = g.add_node("Add", {"bias": 1}, pos=(200.5, 20)).id
    s = g.add_node("Show", pos=(400, 20), size=(120, 80)).id
    g.set_mode(b, NodeMode.BYPASS)
    g.add_link(a, "INT", b, "a", "INT")
    g.add_link(b, "INT", s, "value", "INT")
    g.add_group("Math", (0, 0, 300, 200), color="#335")
    g.view = {"center": [100, 50], "scale": 0.8}
    g.extra = {"author": "test"}
    return g


def test_round_trip_is_exact(tmp_path):
    g = sample_graph()
    path = tmp_path / "w.json"
    save(g, path)
    g2 = load(path)
    assert graph_to_dict(g2) == graph_to_dict(g)
    assert dumps(g2) == path.read_text()
    doc = json.loads(path.read_text())
    assert doc["format"] == FORMAT and doc["schema_version"] == SCHEMA_VERSION
    # values by name, links as objects
    assert doc["nodes"][0]["inputs"] == {"value": 2}
    assert doc["links"][0] == {"id": 1, "src": [1, "INT"], "dst": [2, "a"], "type": "INT"}


def test_unknown_keys_survive_a_round_trip():
    doc = graph_to_dict(sample_graph())
    doc["future_top"] = {"x": 1}
    doc["nodes"][0]["badge"] = "new"
    doc["links"][0]["route"] = [1, 2]
    doc["groups"][0]["locked"] = True
    again = graph_to_dict(graph_from_dict(json.loads(json.dumps(doc))))
    assert again == doc


def test_ids_continue_after_load():
    g = loads(dumps(sample_graph()))
    assert g.add_node("Number").id == 4
    assert g.add_link(4, "INT", 2, "b", "INT").id == 3
    assert g.add_group("More", (0, 0, 1, 1)).id == 2


def test_migration_from_schema_0():
    old = {
        "format": FORMAT,
        "schema_version": 0,
        "nodes": [{"id": 1, "type": "Number", "values": {"value": 7}}, {"id": 2, "type": "Show"}],
        "links": [[1, 1, "INT", 2, "value", "INT"]],
    }
    g = graph_from_dict(old)
    assert g.nodes[1].values == {"value": 7}
    assert g.links[1].dst_input == "value"
    assert graph_to_dict(g)["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"format": "other"}', "not an sdgraph workflow"),
        (json.dumps({"format": FORMAT, "schema_version": 99}), "saved by a newer sdgraph"),
        (json.dumps({"format": FORMAT, "schema_version": "1"}), "'schema_version' must be a whole number"),
        (json.dumps({"format": FORMAT, "schema_version": 1, "nodes": [{"id": -1, "type": "X"}]}), "nodes[0].id"),
        (
            json.dumps({"format": FORMAT, "schema_version": 1, "nodes": [{"id": 1, "type": "X", "pos": [1]}]}),
            "nodes[0].pos",
        ),
        (
            json.dumps({"format": FORMAT, "schema_version": 1, "nodes": [{"id": 1, "type": "X", "inputs": [1, 2]}]}),
            "values by input name",
        ),
        (
            json.dumps(
                {"format": FORMAT, "schema_version": 1, "nodes": [{"id": 1, "type": "X"}, {"id": 1, "type": "Y"}]}
            ),
            "appears twice",
        ),
        (
            json.dumps(
                {
                    "format": FORMAT,
                    "schema_version": 1,
                    "nodes": [{"id": 1, "type": "X"}],
                    "links": [{"id": 1, "src": [9, "A"], "dst": [1, "b"], "type": "INT"}],
                }
            ),
            "node 9 does not exist",
        ),
        (
            json.dumps({"format": FORMAT, "schema_version": 1, "nodes": [{"id": 1, "type": "X", "mode": "off"}]}),
            "expected active, bypass or mute",
        ),
    ],
)
def test_bad_files_raise_one_typed_error(text, message):
    with pytest.raises(WorkflowFormatError) as err:
        loads(text)
    assert message in str(err.value)


def test_load_names_the_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{")
    with pytest.raises(WorkflowFormatError, match=r"^broken.json: not valid JSON"):
        load(p)
    with pytest.raises(WorkflowFormatError, match="cannot read"):
        load(tmp_path / "missing.json")


# Any JSON at all gives a Graph or WorkflowFormatError, never another exception.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
node_like = st.fixed_dictionaries(
    {"id": json_values | st.integers(0, 5), "type": json_values | st.sampled_from(["A", "B"])},
    optional={
        "inputs": json_values,
        "pos": json_values,
        "mode": json_values | st.sampled_from(["active", "mute"]),
        "size": json_values,
        "title": json_values,
        "flags": json_values,
    },
)
link_like = st.fixed_dictionaries(
    {"id": json_values | st.integers(0, 5)},
    optional={
        "src": json_values | st.tuples(st.integers(0, 5), st.text(max_size=3)).map(list),
        "dst": json_values | st.tuples(st.integers(0, 5), st.text(max_size=3)).map(list),
        "type": json_values | st.just("INT"),
    },
)
workflow_like = st.fixed_dictionaries(
    {"format": st.just(FORMAT) | json_values, "schema_version": st.sampled_from([0, 1, 2]) | json_values},
    optional={
        "nodes": st.lists(node_like, max_size=4) | json_values,
        "links": st.lists(link_like | json_values, max_size=4) | json_values,
        "groups": st.lists(json_values, max_size=2) | json_values,
        "state": json_values,
        "view": json_values,
        "extra": json_values,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, workflow_like))
def test_fuzz_loader_gives_graph_or_typed_error(doc):
    try:
        g = graph_from_dict(doc)
    except WorkflowFormatError:
        return
    assert isinstance(g, Graph)
    # Whatever loaded must save and load back to the same document.
    assert graph_to_dict(loads(dumps(g))) == graph_to_dict(g)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64))
def test_fuzz_loader_with_raw_bytes(data):
    with contextlib.suppress(WorkflowFormatError):
        loads(data)


def test_save_killed_midway_leaves_old_file_intact(tmp_path):
    """A process killed while writing (here: right before the rename) must leave the old file as it was."""
    target = tmp_path / "w.json"
    save(sample_graph(), target)
    before = target.read_bytes()
    script = textwrap.dedent(
        f"""
        import os, signal
        from graph_engine import Graph
        from graph_engine import serialization

        real_fsync = os.fsync
        def fsync_then_die(fd):
            real_fsync(fd)
            os.kill(os.getpid(), signal.SIGKILL)   # the temp file is written; the rename never happens
        os.fsync = fsync_then_die
        g = Graph()
        for i in range(2000):
            g.add_node("Number", {{"value": i}})
        serialization.save(g, {str(target)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    assert target.read_bytes() == before
    assert load(target) is not None


def test_save_failing_midway_cleans_up_and_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "w.json"
    save(sample_graph(), target)
    before = target.read_bytes()

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    g = sample_graph()
    g.add_node("Number")
    with pytest.raises(OSError):
        save(g, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.json"]


DATA = Path(__file__).parent / "data"


def test_schema_1_forward_noise_file_opens_with_the_node_renamed():
    """workflows/forward_noise.json as the schema-1 release saved it: its `AddNoise` was sdgraph's
    forward-noise node, now `ForwardNoise` (ComfyUI's AddNoise took the name); all else is kept."""
    old = json.loads((DATA / "forward_noise_schema1.json").read_text())
    assert old["schema_version"] == 1
    g = load(DATA / "forward_noise_schema1.json")
    assert g.nodes[3].type == "ForwardNoise"
    assert g.nodes[3].values == {"t": 500, "schedule": "scaled_linear", "seed": 0}
    assert {g.links[i].dst_input for i in g.links if g.links[i].dst_node == 3} == {"image", "vae"}
    assert [n.type for n in g.nodes.values() if n.id != 3] == [n["type"] for n in old["nodes"] if n["id"] != 3]
    new = graph_to_dict(g)
    assert new["schema_version"] == SCHEMA_VERSION == 2
    assert graph_to_dict(loads(dumps(g))) == new  # saved again, nothing migrates twice
    assert [n for n in new["nodes"] if n["id"] != 3] == [n for n in old["nodes"] if n["id"] != 3]
    assert new["links"] == old["links"]


def test_schema_1_addnoise_shaped_like_comfyuis_keeps_its_name():
    """An `AddNoise` with ComfyUI's sockets (model, noise, sigmas, latent_image) was never the forward-noise
    node; an unlinked one with only forward-noise values (or none) was."""
    doc = {
        "format": FORMAT,
        "schema_version": 1,
        "nodes": [
            {"id": 1, "type": "RandomNoise", "inputs": {"noise_seed": 1}},
            {"id": 2, "type": "AddNoise", "inputs": {}},
            {"id": 3, "type": "AddNoise", "inputs": {"t": 100, "shift": 3.0}},
            {"id": 4, "type": "AddNoise"},
            {"id": 5, "type": "AddNoise", "inputs": {"t": 100, "latent_image": None}},
        ],
        "links": [{"id": 1, "src": [1, "NOISE"], "dst": [2, "noise"], "type": "NOISE"}],
    }
    g = graph_from_dict(doc)
    assert {i: n.type for i, n in g.nodes.items()} == {
        1: "RandomNoise",
        2: "AddNoise",
        3: "ForwardNoise",
        4: "ForwardNoise",
        5: "AddNoise",
    }
