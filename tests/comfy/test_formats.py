"""The smaller rules of the ComfyUI formats: positional widgets, schema 1, subgraphs, bypass, the CLI."""

from __future__ import annotations

import json

import pytest

from app.cli import main
from graph_engine import Graph, NodeMode
from graph_engine.comfy import ComfyExportError, load_comfy, to_api, to_ui
from graph_engine.comfy.widgets import read_widgets_values, widget_layout, write_widgets_values
from graph_engine.serialization import graph_to_dict
from nodes import builtin_registry
from tests.comfy.support import anchor, read_anchor, read_anchor_or_own

REGISTRY = builtin_registry()
KSAMPLER = REGISTRY.get("KSampler")


# ---- widgets_values ----------------------------------------------------------------------------


def test_widget_layout_follows_declared_widget_order_with_control_after_seed():
    assert [(s.kind, s.name) for s in widget_layout(KSAMPLER)] == [
        ("input", "seed"),
        ("control", "seed"),
        ("input", "steps"),
        ("input", "cfg"),
        ("input", "sampler_name"),
        ("input", "scheduler"),
        ("input", "denoise"),
    ]
    advanced = [s.name for s in widget_layout(REGISTRY.get("KSamplerAdvanced")) if s.kind == "input"]
    assert advanced[:3] == ["add_noise", "noise_seed", "steps"]


@pytest.mark.parametrize(
    ("saved", "control"),
    [
        ([5, "increment", 20, 8, "euler", "normal", 1], "increment"),
        ([5, True, 20, 8, "euler", "normal", 1], "randomize"),  # legacy default graph
        ([5, False, 20, 8, "euler", "normal", 1], "fixed"),
        ([5, 20, 8, "euler", "normal", 1], None),  # saved before the selector existed
    ],
)
def test_control_values_are_skipped_and_kept(saved, control):
    read = read_widgets_values(KSAMPLER, saved)
    assert read.values == {
        "seed": 5,
        "steps": 20,
        "cfg": 8,
        "sampler_name": "euler",
        "scheduler": "normal",
        "denoise": 1,
    }
    assert read.control == control and read.leftovers == [] and read.short_by == 0


def test_write_is_the_inverse_of_read():
    saved = [7, "decrement", 4, 2.5, "heun", "karras", 0.5]
    read = read_widgets_values(KSAMPLER, saved)
    assert write_widgets_values(KSAMPLER, read.values, read.control) == saved
    load_image = REGISTRY.get("LoadImage")
    assert read_widgets_values(load_image, ["a.png", "image"]).values == {"image": "a.png"}
    assert read_widgets_values(load_image, ["a.png"]).values == {"image": "a.png"}
    assert write_widgets_values(load_image, {"image": "a.png"}, None) == ["a.png", "image"]


def test_extra_values_are_kept_and_reported():
    doc = read_anchor_or_own("default_txt2img_sd15.workflow.json", "txt2img_sd15.workflow.json")
    ks = next(n for n in doc["nodes"] if n["type"] == "KSampler")
    ks["widgets_values"] = [*ks["widgets_values"], "new_widget_value"]
    result = load_comfy(doc, REGISTRY)
    assert result.graph.nodes[3].extra["comfy"]["extra_widgets_values"] == ["new_widget_value"]
    assert any("3 (KSampler)" in n and "different number of settings" in n for n in result.notices)
    exported = next(n for n in to_ui(result.graph, REGISTRY)["nodes"] if n["id"] == 3)
    assert exported["widgets_values"][-1] == "new_widget_value"


# ---- schema 1 and subgraphs --------------------------------------------------------------------


def to_schema_1(doc: dict) -> dict:
    """The same graph as the frontend's schema 1 writes it: links as objects, `state` counters."""
    links = [
        {"id": i, "origin_id": o, "origin_slot": os, "target_id": t, "target_slot": ts, "type": ty}
        for i, o, os, t, ts, ty in doc.pop("links")
    ]
    state = {"lastNodeId": doc.pop("last_node_id"), "lastLinkId": doc.pop("last_link_id"), "lastGroupId": 0}
    return {**doc, "version": 1, "links": links, "state": state}


def test_schema_1_reads_like_0_4():
    old = load_comfy(read_anchor("hiresfix_latent_upscale_2pass.workflow.json"), REGISTRY).graph
    new = load_comfy(to_schema_1(read_anchor("hiresfix_latent_upscale_2pass.workflow.json")), REGISTRY).graph
    assert graph_to_dict(new)["nodes"] == graph_to_dict(old)["nodes"]
    assert graph_to_dict(new)["links"] == graph_to_dict(old)["links"]
    assert new.next_node_id == old.next_node_id == 17


def test_subgraph_instances_are_kept_and_reported_by_name():
    doc = to_schema_1(read_anchor_or_own("default_txt2img_sd15.workflow.json", "txt2img_sd15.workflow.json"))
    uuid = "a4b8c6d2-0000-4000-8000-000000000001"
    doc["definitions"] = {"subgraphs": [{"id": uuid, "name": "Upscale block", "nodes": [], "links": []}]}
    doc["nodes"].append({"id": 50, "type": uuid, "pos": [0, 0], "inputs": [], "outputs": []})
    result = load_comfy(doc, REGISTRY)
    assert result.missing_types == []
    (notice,) = [n for n in result.notices if "subgraph" in n]
    assert "1 subgraph (Upscale block)" in notice
    assert result.graph.nodes[50].type == uuid
    assert result.graph.extra["comfy"]["definitions"]["subgraphs"][0]["name"] == "Upscale block"


# ---- export rules ------------------------------------------------------------------------------


def test_api_export_resolves_bypass_and_drops_muted_and_notes():
    graph = load_comfy(read_anchor("hiresfix_latent_upscale_2pass.workflow.json"), REGISTRY).graph
    graph.set_mode(10, NodeMode.BYPASS)  # LatentUpscale: the second pass samples the first's latent
    graph.set_mode(9, NodeMode.MUTE)  # the first SaveImage
    graph.add_node("Note", {"text": "hello"}, id=40)
    api = to_api(graph, REGISTRY)
    assert "10" not in api and "9" not in api and "40" not in api
    assert api["11"]["inputs"]["latent_image"] == ["3", 0]
    assert api["3"]["inputs"]["model"] == ["16", 0]
    assert api["11"]["_meta"] == {"title": "KSampler"}


def test_api_export_of_a_placeholder_without_names_is_refused_clearly():
    graph = load_comfy(read_anchor("sdxl_turbo_sampler_custom.workflow.json"), REGISTRY).graph
    with pytest.raises(ComfyExportError, match=r"node 13 \(SamplerCustom\).*not installed.*UI format"):
        to_api(graph, REGISTRY)
    # From the API file the same placeholder has names and exports as it came.
    api_graph = load_comfy(read_anchor("sdxl_turbo_sampler_custom.api.json"), REGISTRY).graph
    assert (
        to_api(api_graph, REGISTRY)["13"]["inputs"] == read_anchor("sdxl_turbo_sampler_custom.api.json")["13"]["inputs"]
    )


def test_a_graph_made_in_sdgraph_exports_and_comes_back():
    g = Graph()
    ckpt = g.add_node("CheckpointLoaderSimple", {"ckpt_name": "x.safetensors"}, pos=(10, 20)).id
    text = g.add_node("CLIPTextEncode", {"text": "a fox"}, pos=(300, 20), title="Prompt").id
    g.add_link(ckpt, "CLIP", text, "clip", "CLIP")
    g.nodes[text].extra["my_tool"] = {"pinned": True}
    g.extra["author"] = "me"
    again = load_comfy(json.loads(json.dumps(to_ui(g, REGISTRY))), REGISTRY).graph
    assert again.nodes[text].extra["my_tool"] == {"pinned": True}
    assert again.extra["author"] == "me"
    assert again.nodes[text].title == "Prompt" and again.nodes[text].pos == (300, 20)
    assert [(lk.src_node, lk.src_output, lk.dst_node, lk.dst_input) for lk in again.links.values()] == [
        (ckpt, "CLIP", text, "clip")
    ]


# ---- CLI ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["comfy-ui", "comfy-api"])
def test_cli_export(fmt, tmp_path, capsys):
    out = tmp_path / "out.json"
    source = anchor("img2img_sd.workflow.json")
    args = ["export", str(source), "--format", fmt, "-o", str(out), "--model-alias", "v1-5-pruned-emaonly.ckpt=m.ckpt"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == str(out)
    doc = json.loads(out.read_text())
    graph = load_comfy(doc, REGISTRY).graph
    assert graph.nodes[14].values["ckpt_name"] == "m.ckpt"
    if fmt == "comfy-api":
        assert doc["3"]["inputs"]["denoise"] == 0.8700000000000001


def test_cli_export_refusal_is_one_line(tmp_path, capsys):
    out = tmp_path / "out.json"
    source = anchor("sdxl_turbo_sampler_custom.workflow.json")
    assert main(["export", str(source), "--format", "comfy-api", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot be written in API format" in err and "Traceback" not in err
    assert not out.exists()
