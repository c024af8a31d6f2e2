"""Broken ComfyUI files give one clear message each, never a traceback.

Structure the graph cannot hold (a link to a missing node, a slot that does not exist, a Reroute loop,
garbage where a list or a name belongs) is a `WorkflowFormatError` at load that says where in the file.
Values a run would refuse (a negative step count, a seed beyond 2^64, infinity) load, and validation
names the node and the input, as for any other workflow. The fuzz tests hold the importer to this for
any JSON at all, and for real files with one part replaced by random JSON.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cli import main
from graph_engine import WorkflowFormatError, validate
from graph_engine.comfy import ComfyExportError, load_comfy, to_api, to_ui
from graph_engine.serialization import graph_from_dict, graph_to_dict
from graph_engine.validation import Source, resolve_source
from nodes import builtin_registry
from tests.comfy.support import COMFY_FILES, read_anchor_or_own

REGISTRY = builtin_registry()
# ComfyUI's default graph; on a clone without the anchors, the project's own file numbered the same way.
UI = "default_txt2img_sd15.workflow.json"
API = "default_txt2img_sd15.api.json"


def ui_doc() -> dict[str, Any]:
    return read_anchor_or_own(UI, "txt2img_sd15.workflow.json")


def api_doc() -> dict[str, Any]:
    return read_anchor_or_own(API, "txt2img_sd15.api.json")


def node_of(doc: dict[str, Any], node_id: int) -> dict[str, Any]:
    return next(n for n in doc["nodes"] if n["id"] == node_id)


def load_error(doc: Any) -> str:
    with pytest.raises(WorkflowFormatError) as info:
        load_comfy(doc, REGISTRY)
    return str(info.value)


# ---- structure: one WorkflowFormatError at load ------------------------------------------------


def test_truncated_json(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps(ui_doc())[:700])
    assert main(["validate", str(path)]) == 2
    with pytest.raises(WorkflowFormatError, match=r"w\.json: not valid JSON"):
        from app.documents import open_document

        open_document(path)


def test_link_to_a_node_that_is_not_there():
    doc = ui_doc()
    doc["links"][0][1] = 999
    assert load_error(doc) == "links[0] (id 1): its origin is node 999, which is not in the file"
    api = api_doc()
    api["3"]["inputs"]["model"] = ["99", 0]
    assert load_error(api) == "node 3 (KSampler), input 'model': links to node '99', which is not in the file"


def test_wrong_slot_indexes():
    doc = ui_doc()
    doc["links"][0][2] = 7  # CheckpointLoaderSimple has 3 outputs
    assert load_error(doc) == (
        "links[0] (id 1): comes from output slot 7 of node 4 (CheckpointLoaderSimple), which has 3 outputs"
    )
    doc = ui_doc()
    doc["links"][0][4] = 9
    assert "goes into input slot 9 of node 3 (KSampler), which has 4 inputs" in load_error(doc)
    doc = ui_doc()
    doc["links"][0][2] = -1
    assert "links[0].origin_slot: expected a slot number" in load_error(doc)
    api = api_doc()
    api["3"]["inputs"]["model"] = ["4", 5]
    assert "output slot 5 of node 4 (CheckpointLoaderSimple), which has 3 outputs" in load_error(api)


def test_reroute_loop_is_a_load_error():
    doc = ui_doc()
    doc["nodes"] += [
        {
            "id": 20,
            "type": "Reroute",
            "pos": [0, 0],
            "inputs": [{"name": "", "type": "*", "link": 31}],
            "outputs": [{"name": "", "type": "*", "links": [30, 32]}],
        },
        {
            "id": 21,
            "type": "Reroute",
            "pos": [0, 0],
            "inputs": [{"name": "", "type": "*", "link": 30}],
            "outputs": [{"name": "", "type": "*", "links": [31]}],
        },
    ]
    doc["links"] = [lk for lk in doc["links"] if lk[0] != 1]
    doc["links"] += [[30, 20, 0, 21, 0, "*"], [31, 21, 0, 20, 0, "*"], [32, 20, 0, 3, 0, "MODEL"]]
    assert "Reroute nodes form a loop" in load_error(doc)


def test_a_stale_duplicate_link_is_ignored():
    """litegraph can leave a dead link in the table; the input's own `link` field says which one lives."""
    doc = ui_doc()
    doc["links"].append([77, 4, 0, 3, 0, "MODEL"])
    node_of(doc, 3)["inputs"][0]["link"] = 77
    graph = load_comfy(doc, REGISTRY).graph
    assert graph.inputs_of(3)["model"].id == 77 and 1 not in graph.links


def test_reroutes_are_followed():
    doc = ui_doc()
    doc["nodes"].append(
        {
            "id": 20,
            "type": "Reroute",
            "pos": [0, 0],
            "inputs": [{"name": "", "type": "*", "link": 30}],
            "outputs": [{"name": "", "type": "MODEL", "links": [1]}],
        }
    )
    doc["links"] = [lk for lk in doc["links"] if lk[0] != 1]
    doc["links"] += [[30, 4, 0, 20, 0, "MODEL"], [1, 20, 0, 3, 0, "MODEL"]]
    graph = load_comfy(doc, REGISTRY).graph
    # The Reroute is kept as ours; the engine and the API export look through it to the checkpoint.
    assert graph.nodes[20].type == "Reroute"
    lk = graph.inputs_of(3)["model"]
    assert (lk.id, lk.src_node, lk.src_output, lk.type) == (1, 20, "output", "MODEL")
    assert resolve_source(graph, lk.src_node, lk.src_output, lk.type) == Source(4, "MODEL")
    assert to_api(graph, REGISTRY)["3"]["inputs"]["model"] == ["4", 0]
    assert "20" not in to_api(graph, REGISTRY)
    # The UI export writes it back as a Reroute on the same wires, and reads back as the same graph.
    ui = to_ui(graph, REGISTRY)
    (reroute,) = [n for n in ui["nodes"] if n["id"] == 20]
    assert reroute["type"] == "Reroute" and reroute["inputs"][0]["link"] == 30 and reroute["outputs"][0]["links"] == [1]
    assert [30, 4, 0, 20, 0, "MODEL"] in ui["links"] and [1, 20, 0, 3, 0, "MODEL"] in ui["links"]
    again = load_comfy(json.loads(json.dumps(ui)), REGISTRY).graph
    # This hand-made Reroute had no size/order/properties; the export fills them in once (see export).
    assert graph_to_dict(again)["links"] == graph_to_dict(graph)["links"]
    assert again.nodes[20].size == (75, 26)
    third = load_comfy(json.loads(json.dumps(to_ui(again, REGISTRY))), REGISTRY).graph
    assert graph_to_dict(third) == graph_to_dict(again)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: node_of(d, 3).update(widgets_values="fast"),
            "widgets_values: expected a list of values, got 'fast'",
        ),
        (lambda d: node_of(d, 3).update(widgets_values=7), "widgets_values: expected a list of values, got 7"),
        (lambda d: node_of(d, 3).update(widgets_values={"speed": 3}), "KSampler has no settings named speed"),
        (lambda d: node_of(d, 3).update(type=123), "nodes[3].type: expected a node type name, got 123"),
        (lambda d: node_of(d, 3).update(id=-3), "nodes[3].id: expected a non-negative whole-number id, got -3"),
        (lambda d: node_of(d, 3).update(id=2**60), "expected a non-negative whole-number id"),
        (lambda d: node_of(d, 3).update(pos=[float("inf"), 0]), "nodes[3] (id 3, KSampler).pos: expected 2 finite"),
        (lambda d: node_of(d, 3).update(mode="loud"), "(id 3, KSampler).mode: expected 0 (always)"),
        (lambda d: node_of(d, 3).update(inputs="model"), "'inputs' must be a list, got 'model'"),
        (lambda d: node_of(d, 3).update(flags=[1]), "flags: expected an object"),
        (lambda d: node_of(d, 3).update(title=5), "title: expected text, got 5"),
        (lambda d: d.update(nodes={"3": 1}), "nodes: expected a list"),
        (lambda d: d.update(links="none"), "links: expected a list"),
        (lambda d: d["links"].append("x"), "links[9]: expected a list or an object"),
        (lambda d: d["links"].append([1, 4, 0, 3, 0, "MODEL"]), "link id 1 appears twice"),
        (
            lambda d: (d["links"].append([77, 4, 0, 3, 0, "MODEL"]), node_of(d, 3)["inputs"][0].update(link=78)),
            "input 'model' of node 3 (KSampler) has two links",
        ),
        (lambda d: d.update(groups=[{"title": "x", "bounding": "big"}]), "groups[0].bounding: expected 4 finite"),
        (lambda d: d.update(version=7), "this reader knows ComfyUI workflow schemas 0.4 and 1"),
        (lambda d: d["nodes"].append(dict(node_of(d, 3))), "node id 3 appears twice"),
    ],
)
def test_garbage_in_a_ui_file_is_one_clear_error(mutate, message):
    doc = ui_doc()
    mutate(doc)
    assert message in load_error(doc)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["3"].pop("class_type"), "node '3': 'class_type' must be a node type name, got None"),
        (lambda d: d["3"].update(inputs=[1, 2]), "node 3 (KSampler).inputs: expected an object"),
        (lambda d: d["3"]["inputs"].update(model=["4", -1]), "expected a slot number"),
        (lambda d: d.update({"9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}, "x": 1}}), None),
    ],
)
def test_garbage_in_an_api_file_is_one_clear_error(mutate, message):
    doc = api_doc()
    mutate(doc)
    if message is None:
        load_comfy(doc, REGISTRY)  # unknown keys on an entry are carried, not refused
    else:
        assert message in load_error(doc)


# ---- values: a validation problem naming node and input ----------------------------------------


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ([0, "fixed", -5, 8, "euler", "normal", 1], "node 3 (KSampler), input 'steps': -5 is below the minimum 1"),
        ([2**70, "fixed", 20, 8, "euler", "normal", 1], "input 'seed': 1180591620717411303424 is above the maximum"),
        ([0, "fixed", 1e400, 8, "euler", "normal", 1], "input 'steps': expected a whole number, got inf"),
        ([0, "fixed", "20", 8, "euler", "normal", 1], "input 'steps': expected a whole number, got '20'"),
        ([0, "fixed", 20, 8, "warp", "normal", 1], "input 'sampler_name': 'warp' is not one of the choices"),
        ([0, "fixed", 20, [8], "euler", "normal", 1], "input 'cfg': expected a number, got [8]"),
    ],
)
def test_bad_values_load_and_validation_names_node_and_input(values, problem):
    doc = ui_doc()
    node_of(doc, 3)["widgets_values"] = values
    graph = load_comfy(doc, REGISTRY).graph
    messages = [str(p) for p in validate(graph, REGISTRY) if p.node_id == 3]
    assert len(messages) == 1 and problem in messages[0], messages


def test_a_cycle_is_a_validation_problem():
    api = api_doc()
    api["20"] = {
        "class_type": "LatentUpscale",
        "inputs": {
            "samples": ["3", 0],
            "upscale_method": "nearest-exact",
            "width": 64,
            "height": 64,
            "crop": "disabled",
        },
    }
    api["3"]["inputs"]["latent_image"] = ["20", 0]
    graph = load_comfy(api, REGISTRY).graph
    (cycle,) = [p for p in validate(graph, REGISTRY) if p.code == "cycle"]
    assert "is part of a cycle: 3 (KSampler) → 20 (LatentUpscale) → 3" in str(cycle)


def test_cli_never_shows_a_traceback(tmp_path, capsys):
    for i, text in enumerate(['{"nodes": [{"id": 1}], "links": []}', "[1, 2]", '{"1": {"class_type": 5}}', "{"]):
        path = tmp_path / f"w{i}.json"
        path.write_text(text)
        assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("sdgraph: ") == 4, err


# ---- fuzz --------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["KSampler", "Reroute", "PrimitiveNode", "Note", "MODEL", "*", "4", "fixed"]),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=6),
    max_leaves=25,
)


def _check(doc: Any) -> None:
    """Any input: a graph that survives our own save/load and both exports, or one WorkflowFormatError."""
    try:
        result = load_comfy(doc, REGISTRY)
    except WorkflowFormatError:
        return
    saved = json.loads(json.dumps(graph_to_dict(result.graph)))
    assert graph_to_dict(graph_from_dict(saved)) == saved
    validate(result.graph, REGISTRY)
    reread = load_comfy(json.loads(json.dumps(to_ui(result.graph, REGISTRY))), REGISTRY)
    assert set(reread.graph.nodes) == set(result.graph.nodes)
    with contextlib.suppress(ComfyExportError):
        to_api(result.graph, REGISTRY)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_fuzz_any_json(doc):
    _check(doc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_real_files_with_one_part_replaced(data):
    doc = json.loads(data.draw(st.sampled_from(COMFY_FILES)).read_text(encoding="utf-8"))
    paths: list[tuple[Any, Any]] = []

    def walk(parent: Any) -> None:
        items = parent.items() if isinstance(parent, dict) else enumerate(parent) if isinstance(parent, list) else ()
        for key, value in items:
            paths.append((parent, key))
            walk(value)

    walk(doc)
    parent, key = data.draw(st.sampled_from(paths))
    parent[key] = data.draw(json_values)
    _check(doc)
