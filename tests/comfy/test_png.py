"""Images as workflows: PNGs from our SaveImage, from ComfyUI (`prompt` + `workflow` chunks) and A1111
(`parameters`) reopen through `open_document`, the way `sdgraph run`, `validate` and the editor read them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from app.documents import open_document
from graph_engine import Executor, WorkflowFormatError, validate
from graph_engine.comfy import load_comfy, parse_parameters, split_sampler
from graph_engine.serialization import graph_to_dict
from nodes import builtin_registry
from tests.comfy.conftest import ANCHOR_LORA
from tests.comfy.support import anchor, comfy_text, read_anchor
from tests.support.model_root import TINY_NAMES

REGISTRY = builtin_registry()


def png_with(path: Path, chunks: dict[str, str]) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.new("RGB", (8, 8), (40, 80, 120)).save(path, pnginfo=info)
    return path


# ---- ComfyUI -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stem", ["sdxl_base_refiner_ksampler_advanced", "flux_dev_sampler_custom_advanced", "txt2img_sd15"]
)
def test_comfyui_png_opens_its_workflow_chunk(stem, tmp_path):
    """ComfyUI's SaveImage writes both chunks; the UI one wins because it has positions and notes."""
    ui_text = comfy_text(f"{stem}.workflow.json")
    api_text = comfy_text(f"{stem}.api.json")
    path = png_with(tmp_path / "ComfyUI_00001_.png", {"prompt": api_text, "workflow": ui_text})
    document = open_document(path)
    assert document.source == "comfyui-png"
    expected = load_comfy(json.loads(ui_text), REGISTRY).graph
    assert graph_to_dict(document.graph) == graph_to_dict(expected)


@pytest.mark.parametrize("name", ["img2img_sd.api.json", "txt2img_sd15.api.json"])
def test_comfyui_png_with_only_a_prompt_chunk(name, tmp_path):
    api_text = comfy_text(name)
    document = open_document(png_with(tmp_path / "a.png", {"prompt": api_text}))
    expected = load_comfy(json.loads(api_text), REGISTRY).graph
    assert graph_to_dict(document.graph) == graph_to_dict(expected)


@pytest.mark.parametrize(
    ("name", "types"), [("img2img_sd.api.json", {"KSampler", "LoadImage"}), ("txt2img_sd15.api.json", {"KSampler"})]
)
def test_damaged_workflow_chunk_falls_back_to_the_prompt_and_says_so(name, types, tmp_path):
    api_text = comfy_text(name)
    document = open_document(png_with(tmp_path / "a.png", {"prompt": api_text, "workflow": '{"nodes": [1'}))
    assert "damaged" in document.notices[0] and "API prompt" in document.notices[0]
    assert {n.type for n in document.graph.nodes.values()} >= types


def test_damaged_workflow_chunk_alone_is_one_clear_error(tmp_path):
    with pytest.raises(WorkflowFormatError, match=r"a\.png: its ComfyUI workflow is damaged"):
        open_document(png_with(tmp_path / "a.png", {"workflow": '{"nodes": [1'}))


def test_png_without_any_workflow(tmp_path):
    with pytest.raises(WorkflowFormatError, match="carries no workflow"):
        open_document(png_with(tmp_path / "a.png", {"Software": "GIMP"}))


def test_our_saveimage_png_reopens_even_with_comfy_chunks_beside(tmp_path):
    """Our own chunk is the truth for our PNGs; ComfyUI chunks next to it are ignored."""
    graph = load_comfy(read_anchor("lora_txt2img.workflow.json"), REGISTRY).graph
    ours = graph_to_dict(graph)
    chunks = {"sdgraph_workflow": json.dumps(ours), "workflow": anchor("img2img_sd.workflow.json").read_text()}
    document = open_document(png_with(tmp_path / "a.png", chunks))
    assert document.source == "sdgraph-png"
    assert graph_to_dict(document.graph) == ours


# ---- A1111 -------------------------------------------------------------------------------------

A1111_TEXT = (
    "a watercolor fox, (snow:1.2)\n"
    "in a forest <lora:epiNoiseoffset_v2:0.8>\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 3, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234, Size: 64x64, Model hash: abc123, "
    'Model: tiny_sd1, Clip skip: 2, Lora hashes: "epiNoiseoffset_v2: 0123, other: 4567", Version: v1.9.4'
)


def test_a1111_parameters_parse():
    params = parse_parameters(A1111_TEXT)
    assert params.prompt == "a watercolor fox, (snow:1.2)\nin a forest <lora:epiNoiseoffset_v2:0.8>"
    assert params.negative == "blurry, lowres"
    assert params.settings["Lora hashes"] == "epiNoiseoffset_v2: 0123, other: 4567"
    assert params.settings["Size"] == "64x64" and params.settings["Model"] == "tiny_sd1"


@pytest.mark.parametrize(
    ("label", "schedule", "expected"),
    [
        ("Euler a", None, ("euler_ancestral", "normal")),
        ("Euler", None, ("euler", "normal")),
        ("DPM++ 2M Karras", None, ("dpmpp_2m", "karras")),
        ("DPM++ 2M SDE Exponential", None, ("dpmpp_2m_sde", "exponential")),
        ("DPM++ SDE Karras", None, ("dpmpp_sde", "karras")),
        ("DPM++ 2M", "Karras", ("dpmpp_2m", "karras")),  # A1111 1.9+: the schedule in its own field
        ("UniPC", "SGM Uniform", ("uni_pc", "sgm_uniform")),
        ("DDIM", None, ("ddim", "normal")),
        ("PLMS", None, (None, "normal")),
    ],
)
def test_a1111_sampler_names(label, schedule, expected):
    assert split_sampler(label, schedule) == expected


def test_a1111_png_becomes_a_runnable_txt2img_graph(comfy_models, tmp_path):
    document = open_document(png_with(tmp_path / "00001-1234.png", {"parameters": A1111_TEXT}))
    assert document.source == "a1111-png"
    assert document.notices == []  # the checkpoint and the LoRA are both found by name
    graph = document.graph
    by_type = {n.type: n for n in graph.nodes.values()}
    assert by_type["CheckpointLoaderSimple"].values == {"ckpt_name": TINY_NAMES["sd1"]}
    assert by_type["LoraLoader"].values == {"lora_name": ANCHOR_LORA, "strength_model": 0.8, "strength_clip": 0.8}
    assert by_type["CLIPSetLastLayer"].values == {"stop_at_clip_layer": -2}
    assert by_type["EmptyLatentImage"].values == {"width": 64, "height": 64, "batch_size": 1}
    ks = by_type["KSampler"]
    assert ks.values == {
        "seed": 1234,
        "steps": 3,
        "cfg": 6.5,
        "sampler_name": "dpmpp_2m",
        "scheduler": "karras",
        "denoise": 1.0,
    }
    assert ks.extra["control_after_generate"] == "fixed"
    prompts = sorted(n.values["text"] for n in graph.nodes.values() if n.type == "CLIPTextEncode")
    assert prompts == ["a watercolor fox, (snow:1.2)\nin a forest", "blurry, lowres"]
    assert validate(graph, REGISTRY) == []
    result = Executor(REGISTRY, output_dir=tmp_path / "out").run(graph)
    assert result.status == "done", result.error
    (entry,) = [i for ui in result.ui.values() for i in ui.get("images", [])]
    assert np.asarray(Image.open(entry["path"]), dtype=np.float32).std() > 0


def test_a1111_hires_fix_and_what_cannot_be_rebuilt(tmp_path):
    text = (
        "castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x768, Model: missing_model, "
        "Denoising strength: 0.45, Hires upscale: 1.5, Hires steps: 10, Hires upscaler: R-ESRGAN 4x+"
    )
    document = open_document(png_with(tmp_path / "a.png", {"parameters": text}))
    graph = document.graph
    samplers = sorted((n for n in graph.nodes.values() if n.type == "KSampler"), key=lambda n: n.id)
    assert [s.values["denoise"] for s in samplers] == [1.0, 0.45]
    assert [s.values["steps"] for s in samplers] == [20, 10]
    assert samplers[0].values["sampler_name"] == "euler_ancestral"
    (up,) = [n for n in graph.nodes.values() if n.type == "LatentUpscale"]
    assert (up.values["width"], up.values["height"]) == (768, 1152)
    assert any("R-ESRGAN" in n for n in document.notices)
    assert any("'missing_model.safetensors' (checkpoints" in n for n in document.notices)


def test_a1111_img2img_is_said_not_hidden(tmp_path):
    text = "cat\nSteps: 20, Sampler: Heun, CFG scale: 7, Seed: 5, Size: 512x512, Denoising strength: 0.6"
    document = open_document(png_with(tmp_path / "a.png", {"parameters": text}))
    assert any("img2img" in n for n in document.notices)
    assert any("no checkpoint" in n for n in document.notices)
    (ks,) = [n for n in document.graph.nodes.values() if n.type == "KSampler"]
    assert ks.values["denoise"] == 1.0 and ks.values["sampler_name"] == "heun"
