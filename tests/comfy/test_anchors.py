"""Every ComfyUI reference workflow opens; UI/API twins give the same executable graph; round trips hold.

The anchors (`shared/anchors/comfyui-workflows/`, see its README) are real files ComfyUI wrote, in
matched pairs: the UI `workflow` and the API `prompt` from the same PNG. What "the same graph" means
is `support.executable_view`: node types, widget values by name and links by socket, for the nodes a
server would run. One pair differs on purpose (default_txt2img_sd15: the two files come from
different repositories, so only the structure is compared).

The anchors are not part of a clone (see `tests/support/shared.py`); without them their tests skip, and the
generic checks (opens, twins agree, export, round trips) still run on the project's own ComfyUI files
(`support.OWN_FILES`).
"""

from __future__ import annotations

import json

import pytest

from app.documents import open_document
from graph_engine import NodeMode
from graph_engine.comfy import load_comfy, to_api, to_ui
from graph_engine.serialization import graph_to_dict
from graph_engine.validation import analyze
from nodes import builtin_registry
from tests.comfy.support import (
    ANCHOR_FILES,
    ANCHORS,
    COMFY_FILES,
    OWN_PAIRS,
    PAIRS,
    executable_view,
    read_anchor,
    read_comfy,
)
from tests.support.shared import requires_anchors

REGISTRY = builtin_registry()

# Files whose node types we lack, and exactly the types each must report.
MISSING = {
    "sdxl_turbo_sampler_custom": {"SamplerCustom", "SDTurboScheduler"},
}
# Pairs whose two files are not the same moment of the same graph (see the anchors' README).
STRUCTURE_ONLY = {"default_txt2img_sd15"}


def stem(path) -> str:
    return path.name.split(".")[0]


@requires_anchors
def test_anchor_files_are_there():
    assert len(ANCHOR_FILES) == 18, ANCHORS
    assert len(PAIRS) == 8


@pytest.mark.parametrize("path", COMFY_FILES, ids=lambda p: p.name)
def test_every_anchor_opens_and_reports_exactly_its_missing_types(path):
    document = open_document(path)
    graph = document.graph
    missing = MISSING.get(stem(path), set())
    assert {n.type for n in graph.nodes.values() if REGISTRY.get(n.type) is None} == missing
    type_notices = [n for n in document.notices if "node type" in n]
    if missing:
        (notice,) = type_notices
        listed = notice.split(": ", 1)[1].split(". ")[0].split(", ")
        assert sorted(listed) == sorted(missing)
    else:
        assert type_notices == []
    # Nothing but missing types and model files is reported on opening.
    assert all("node type" in n or "model file" in n for n in document.notices), document.notices


@pytest.mark.parametrize("name", [*PAIRS, *OWN_PAIRS])
def test_ui_and_api_twins_give_the_same_executable_graph(name):
    ui = load_comfy(read_comfy(f"{name}.workflow.json"), REGISTRY)
    api = load_comfy(read_comfy(f"{name}.api.json"), REGISTRY)
    ui_view, api_view = executable_view(ui.graph, REGISTRY), executable_view(api.graph, REGISTRY)
    if name in STRUCTURE_ONLY:
        ui_view = {k: (t, None, links) for k, (t, _, links) in ui_view.items()}
        api_view = {k: (t, None, links) for k, (t, _, links) in api_view.items()}
    assert ui_view == api_view
    assert set(ui.missing_types) == set(api.missing_types) == MISSING.get(name, set())


def test_sdxl_ui_file_keeps_primitives_notes_and_converted_widgets():
    """24 UI nodes: 9 Notes stay (as our Note), 4 PrimitiveNodes stay as Primitives wired to the converted
    widgets they feed; the engine gives each consumer the primitive's value."""
    result = load_comfy(read_anchor("sdxl_base_refiner_ksampler_advanced.workflow.json"), REGISTRY)
    graph = result.graph
    types = sorted(n.type for n in graph.nodes.values())
    assert types.count("Note") == 9 and types.count("PrimitiveNode") == 4
    assert len(graph.nodes) == 24 and len(graph.groups) == 8
    base, refiner = graph.nodes[10], graph.nodes[11]
    assert base.values == {
        "add_noise": "enable",
        "noise_seed": 721897303308196,
        "steps": 25,
        "cfg": 8,
        "sampler_name": "euler",
        "scheduler": "normal",
        "start_at_step": 0,
        "end_at_step": 20,
        "return_with_leftover_noise": "enable",
    }
    assert base.extra["control_after_generate"] == "randomize"
    assert refiner.extra["control_after_generate"] == "fixed"
    assert refiner.title == "KSampler (Advanced) - REFINER"
    # The Step Control primitives: their value, their control, a link into each sampler's widget.
    steps, end = graph.nodes[45], graph.nodes[47]
    assert (steps.title, steps.values, steps.extra["control_after_generate"]) == ("steps", {"value": 25}, "fixed")
    assert (end.title, end.values) == ("end_at_step", {"value": 20})
    assert (graph.inputs_of(10)["steps"].src_node, graph.inputs_of(11)["steps"].src_node) == (45, 45)
    assert (graph.inputs_of(10)["end_at_step"].src_node, graph.inputs_of(11)["start_at_step"].src_node) == (47, 47)
    assert graph.inputs_of(10)["steps"].type == "INT"
    assert graph.inputs_of(15)["text"].src_node == 13 and graph.nodes[13].values["value"].startswith("evening sunset")
    # What a run gives the samplers: the primitives' values.
    analysis = analyze(graph, REGISTRY)
    assert [p for p in analysis.problems if p.input != "ckpt_name"] == []  # no model files here
    got = {
        nid: {k: analysis.inputs[nid][k].value for k in ("steps", "start_at_step", "end_at_step")} for nid in (10, 11)
    }
    assert got == {
        10: {"steps": 25, "start_at_step": 0, "end_at_step": 20},
        11: {"steps": 25, "start_at_step": 20, "end_at_step": 10000},
    }
    note = graph.nodes[36]
    assert note.values["text"].startswith("This is a checkpoint model loader")
    assert note.title == "Note - Load Checkpoint BASE"
    group = graph.groups[1]
    assert (group.title, group.bounding, group.color) == ("Base Prompt", (579, 189, 252, 361), "#3f789e")
    raw = {n["id"]: n for n in read_anchor("sdxl_base_refiner_ksampler_advanced.workflow.json")["nodes"]}
    for nid, node in graph.nodes.items():
        assert list(node.pos) == raw[nid]["pos"]


def test_legacy_boolean_control_and_load_image_upload_entry():
    inpaint = load_comfy(read_anchor("inpaint_vae_encode_for_inpaint.workflow.json"), REGISTRY).graph
    assert inpaint.nodes[3].extra["control_after_generate"] == "randomize"  # the file says `true`
    assert inpaint.nodes[3].values["seed"] == 1040111309094545
    assert inpaint.nodes[20].values == {"image": "yosemite_inpaint_example.png"}  # "image" button dropped
    assert inpaint.nodes[26].values == {"grow_mask_by": 6}  # saved before the widget existed: default


def test_muted_node_is_kept_but_not_exported():
    graph = load_comfy(read_anchor("sdxl_turbo_sampler_custom.workflow.json"), REGISTRY).graph
    assert graph.nodes[27].mode == NodeMode.MUTE
    placeholder = graph.nodes[13]
    assert placeholder.type == "SamplerCustom"
    comfy = placeholder.extra["comfy"]
    assert comfy["widgets_values"] == [True, 0, "fixed", 1]
    assert [i["name"] for i in comfy["inputs"]] == [
        "model",
        "positive",
        "negative",
        "sampler",
        "sigmas",
        "latent_image",
    ]
    assert [o["name"] for o in comfy["outputs"]] == ["output", "denoised_output"]
    assert {lk.dst_input for lk in graph.inputs_of(13).values()} == {
        "model",
        "positive",
        "negative",
        "sampler",
        "sigmas",
        "latent_image",
    }


@pytest.mark.parametrize("name", [p for p in [*PAIRS, *OWN_PAIRS] if p not in MISSING])
def test_ui_file_exports_to_its_api_twin(name):
    """Our API export of the UI file equals the prompt ComfyUI itself wrote (titles aside)."""
    ui = load_comfy(read_comfy(f"{name}.workflow.json"), REGISTRY).graph
    exported = to_api(ui, REGISTRY)
    expected = read_comfy(f"{name}.api.json")
    for entry in expected.values():
        entry["inputs"].pop("choose file to upload", None)
    got = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in exported.items()}
    want = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in expected.items()}
    if name in STRUCTURE_ONLY:
        got, want = ({k: v["class_type"] for k, v in d.items()} for d in (got, want))
    elif name == "inpaint_vae_encode_for_inpaint":  # its API file predates VAEEncodeForInpaint.grow_mask_by
        got["26"]["inputs"].pop("grow_mask_by")
    assert got == want


@pytest.mark.parametrize("path", [p for p in COMFY_FILES if p.name.endswith(".workflow.json")], ids=stem)
def test_ui_round_trip_gives_the_same_graph(path):
    first = load_comfy(json.loads(path.read_text()), REGISTRY).graph
    again = load_comfy(json.loads(json.dumps(to_ui(first, REGISTRY))), REGISTRY).graph
    assert graph_to_dict(again) == graph_to_dict(first)


@pytest.mark.parametrize("path", [p for p in COMFY_FILES if p.name.endswith(".api.json")], ids=stem)
def test_api_round_trip_gives_the_same_graph(path):
    first = load_comfy(json.loads(path.read_text()), REGISTRY).graph
    exported = to_api(first, REGISTRY)
    again = load_comfy(json.loads(json.dumps(exported)), REGISTRY).graph
    assert graph_to_dict(again) == graph_to_dict(first)
    # API -> UI -> graph keeps the executable graph (the UI export adds sizes and properties).
    via_ui = load_comfy(json.loads(json.dumps(to_ui(first, REGISTRY))), REGISTRY).graph
    assert executable_view(via_ui, REGISTRY) == executable_view(first, REGISTRY)


def test_sdxl_primitives_export_as_comfyui_writes_them():
    """UI export: each Primitive is a PrimitiveNode with [value, control], its output typed like the widget
    it feeds, wired to the samplers' converted widgets; API export inlines the values."""
    graph = load_comfy(read_anchor("sdxl_base_refiner_ksampler_advanced.workflow.json"), REGISTRY).graph
    graph.set_value(45, "value", 30)  # as if edited on the canvas
    ui = to_ui(graph, REGISTRY)
    nodes = {n["id"]: n for n in ui["nodes"]}
    steps = nodes[45]
    assert (steps["type"], steps["title"], steps["widgets_values"]) == ("PrimitiveNode", "steps", [30, "fixed"])
    (out,) = steps["outputs"]
    assert (out["type"], out["widget"], sorted(out["links"])) == ("INT", {"name": "steps"}, [38, 41])
    assert "inputs" not in steps
    assert nodes[13]["widgets_values"] == [graph.nodes[13].values["value"]]  # a STRING has no control
    for sampler in (10, 11):
        (entry,) = [i for i in nodes[sampler]["inputs"] if i["name"] == "steps"]
        assert entry["widget"] == {"name": "steps"} and entry["type"] == "INT"
        assert next(lk for lk in ui["links"] if lk[0] == entry["link"])[1:3] == [45, 0]
        assert nodes[sampler]["widgets_values"][3] == 30  # the converted widget holds the primitive's value
    again = load_comfy(json.loads(json.dumps(ui)), REGISTRY).graph
    assert again.nodes[45].values == {"value": 30} and again.inputs_of(11)["steps"].src_node == 45
    api = to_api(graph, REGISTRY)
    assert "45" not in api and api["10"]["inputs"]["steps"] == api["11"]["inputs"]["steps"] == 30
