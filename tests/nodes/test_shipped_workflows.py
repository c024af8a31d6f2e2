"""Every shipped workflow runs headless, end to end, on tiny checkpoints, without touching the network."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.documents import open_document
from graph_engine import Executor, validate
from graph_engine.serialization import graph_to_dict, load
from nodes import builtin_registry
from nodes.diffusion.spandrel_import import INSTALL_HINT, spandrel_available
from nodes.folders import input_dir
from tests.support.model_root import FLOW_FILES, TINY_CONTROLNET, TINY_NAMES, TINY_UPSCALE, write_test_image

ROOT = Path(__file__).parents[2]
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
MODEL_FOR = {
    "v1-5-pruned-emaonly.safetensors": TINY_NAMES["sd1"],
    "sd-v1-5-inpainting.safetensors": TINY_NAMES["sd1_inpaint"],
    "sd_xl_base_1.0.safetensors": TINY_NAMES["sdxl"],
    "control_v11p_sd15_canny_fp16.safetensors": TINY_CONTROLNET,
    "RealESRGAN_x4plus.pth": TINY_UPSCALE,
    **FLOW_FILES,
}
MODEL_INPUTS = (
    "ckpt_name",
    "unet_name",
    "vae_name",
    "clip_name",
    "clip_name1",
    "clip_name2",
    "clip_name3",
    "control_net_name",
    "model_name",
)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    attempts: list[object] = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError(f"network access attempted: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield attempts
    assert attempts == [], f"network access attempted: {attempts}"


def shrink(graph) -> None:
    """Map model names to the tiny checkpoints and make the job small enough for a CPU test."""
    for node in graph.nodes.values():
        v = node.values
        for key in MODEL_INPUTS:
            if key in v:
                v[key] = MODEL_FOR[v[key]]
        if node.type in ("EmptyLatentImage", "EmptySD3LatentImage"):
            v.update(width=64, height=64)
        if node.type in ("LatentUpscale",):
            v.update(width=96, height=96)
        if node.type == "ImageScaleBy" and any(n.type == "ImageUpscaleWithModel" for n in graph.nodes.values()):
            v.update(scale_by=0.375)  # the tiny 4x upscaler's 256 px back to 96 px
        if node.type == "ImagePadForOutpaint":  # the 64 px test image grown to 96 px
            v.update(left=16, top=16, right=16, bottom=16, feathering=8)
        if "steps" in v:
            v["steps"] = 3


def expected_sizes(graph) -> set[tuple[int, int]]:
    """The sizes shrink() asked for, plus the labelled grid an XY Sweep of 64 px cells makes."""
    from nodes.diffusion.grid import grid_layout
    from nodes.sweep import label, parse_values

    sizes = {(64, 64), (96, 96)}
    for node in graph.nodes.values():
        if node.type == "XYSweep":
            v = node.values
            xs = [label(v["x_input"], x) for x in parse_values("x", v["x_input"], v["x_values"])]
            ys = (
                []
                if v["y_input"] == "none"
                else [label(v["y_input"], y) for y in parse_values("y", v["y_input"], v["y_values"])]
            )
            sizes.add(grid_layout(len(xs), max(len(ys), 1), 64, 64, xs, ys).size)
    return sizes


@pytest.fixture
def all_tiny_models(tiny_model_root, tiny_flow_root):
    """The tiny SD checkpoints and the tiny flow-family files, both visible to the nodes."""
    import nodes.folders

    nodes.folders.configure(extra_roots=[str(tiny_model_root), str(tiny_flow_root)])
    yield
    nodes.folders.configure()


def test_workflows_are_shipped():
    assert {p.stem for p in WORKFLOWS} >= {"txt2img", "img2img", "inpaint", "hires_fix", "sdxl", "custom_sampling"}
    assert {p.stem for p in WORKFLOWS} >= {"flux_dev", "flux_schnell", "sd3.5", "z_image_turbo"}
    assert {p.stem for p in WORKFLOWS} >= {"forward_noise", "denoise_timeline", "guidance_sweep"}
    assert {p.stem for p in WORKFLOWS} >= {"outpaint", "regional_prompt", "controlnet_canny", "upscale_hires_fix"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_shipped_workflow_runs_end_to_end(path, all_tiny_models, no_network, tmp_path):
    write_test_image(input_dir() / "example.png")
    write_test_image(input_dir() / "example_masked.png", hole=True)
    graph = load(path)
    if any(n.type == "UpscaleModelLoader" for n in graph.nodes.values()) and not spandrel_available():
        pytest.skip(f"spandrel is not installed. {INSTALL_HINT}")
    shrink(graph)
    registry = builtin_registry()
    assert validate(graph, registry) == []
    workflow = graph_to_dict(graph)
    result = Executor(registry, output_dir=tmp_path).run(graph, workflow=workflow)
    assert result.status == "done", result.error
    saved = [img for ui in result.ui.values() for img in ui.get("images", [])]
    assert saved, "the workflow saved nothing"
    sizes = expected_sizes(graph)
    for entry in saved:
        with Image.open(entry["path"]) as img:
            pixels = np.asarray(img.convert("RGB"), dtype=np.float32)
            assert img.size in sizes
            embedded = json.loads(img.text["sdgraph_workflow"])
        assert pixels.std() > 0, "a constant image"
        assert embedded == workflow
        # The saved PNG reopens as the graph that made it.
        assert graph_to_dict(open_document(entry["path"]).graph) == workflow


def test_headless_cli_txt2img(tiny_model_root, tmp_path):
    """The real `sdgraph run` on the shipped txt2img workflow: paths on stdout, exit 0."""
    home = tmp_path / "home"
    env = {**os.environ, "SDGRAPH_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    (home / "models").mkdir(parents=True)
    (home / "models" / "checkpoints").symlink_to(tiny_model_root / "checkpoints")
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "run",
            str(ROOT / "workflows" / "txt2img.json"),
            "--model-alias",
            f"v1-5-pruned-emaonly.safetensors={TINY_NAMES['sd1']}",
            "--set",
            "EmptyLatentImage.width=64",
            "--set",
            "EmptyLatentImage.height=64",
            "--set",
            "KSampler.steps=2",
            "--set",
            "KSampler.seed=7",
            "--output-dir",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert Path(line).parent == out and Path(line).name == "txt2img_00001_.png"
    assert Image.open(line).size == (64, 64)
    assert "Traceback" not in proc.stderr


def test_missing_model_is_one_clear_error(tmp_path):
    graph = load(ROOT / "workflows" / "txt2img.json")
    problems = validate(graph, builtin_registry())
    assert [str(p) for p in problems] == [
        "node 1 (CheckpointLoaderSimple), input 'ckpt_name': 'v1-5-pruned-emaonly.safetensors' is not available "
        "(there is nothing to choose from)"
    ]
