"""ComfyUI workflows whose nodes we have run end to end on tiny checkpoints, opened as the user would.

Each file is opened with `open_document` (as `sdgraph run` does), its model names are mapped with the
CLI's own `--model-alias` code, sizes and steps are shrunk to CPU-test size, and the run must save a
non-constant image whose embedded workflow reopens as the graph. The UI file of each pair is run (its
API twin is proven equal in test_anchors); the ComfyUI test-suite graph is API-only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import apply_aliases
from app.documents import open_document
from graph_engine import Executor, validate
from graph_engine.serialization import graph_to_dict
from graph_engine.value_sources import first_fed_input
from nodes import builtin_registry
from nodes.folders import input_dir
from tests.comfy.conftest import ANCHOR_LORA, REFINER
from tests.comfy.support import anchor, comfy_path
from tests.support.model_root import FLOW_FILES, TINY_NAMES, write_test_image

ALIASES = {
    "v1-5-pruned-emaonly-fp16.safetensors": TINY_NAMES["sd1"],
    "v1-5-pruned-emaonly.ckpt": TINY_NAMES["sd1"],
    "v1-5-pruned-emaonly.safetensors": TINY_NAMES["sd1"],
    "512-inpainting-ema.safetensors": TINY_NAMES["sd1_inpaint"],
    "v2-1_768-ema-pruned.ckpt": TINY_NAMES["sd2"],
    "sd_xl_base_1.0.safetensors": TINY_NAMES["sdxl"],
    "sd_xl_refiner_1.0.safetensors": REFINER,
    **FLOW_FILES,
}
RUNNABLE = [
    "default_txt2img_sd15.workflow.json",
    "default_txt2img_sd15.api.json",
    "img2img_sd.workflow.json",
    "inpaint_vae_encode_for_inpaint.workflow.json",
    "hiresfix_latent_upscale_2pass.workflow.json",
    "lora_txt2img.workflow.json",
    "sdxl_base_refiner_ksampler_advanced.workflow.json",
    "comfyui_tests_default_graph_sdxl1_0.api.json",
    "flux_dev_sampler_custom_advanced.workflow.json",
    "default_txt2img_zimage_turbo_newer_frontend.workflow.json",
    # the project's own twin (tests/comfy/own): runs without the anchors
    "txt2img_sd15.workflow.json",
    "txt2img_sd15.api.json",
]
STEPS = 3


def shrink(graph) -> None:
    """64 px latents and 3 steps; KSamplerAdvanced's start/end steps scaled to keep the base/refiner split.
    A Primitive feeding one of these widgets (the SDXL file's step control, FLUX's width and height) is
    shrunk the same way: its value is the one the consumer gets."""
    registry = builtin_registry()
    fed = {
        node.id: inp.id
        for node in graph.nodes.values()
        if node.type == "PrimitiveNode" and (inp := first_fed_input(graph, registry, node.id)) is not None
    }
    old_steps = next((graph.nodes[nid].values["value"] for nid, key in fed.items() if key == "steps"), None)
    for nid, key in fed.items():
        v = graph.nodes[nid].values
        if key in ("width", "height"):
            v["value"] = 64
        elif key == "steps":
            v["value"] = STEPS
        elif key in ("start_at_step", "end_at_step") and old_steps and v["value"] < 10000:
            v["value"] = min(STEPS, round(v["value"] * STEPS / old_steps))
    for node in graph.nodes.values():
        v = node.values
        if node.type in ("EmptyLatentImage", "EmptySD3LatentImage"):
            v.update(width=64, height=64)
        if node.type == "LatentUpscale":
            v.update(width=96, height=96)
        if "steps" in v:
            old = old_steps or v["steps"]
            v["steps"] = STEPS
            for key in ("start_at_step", "end_at_step"):
                if key in v and v[key] < 10000:
                    v[key] = min(STEPS, round(v[key] * STEPS / old))


@pytest.mark.parametrize("name", RUNNABLE)
def test_comfyui_workflow_runs_on_tiny_checkpoints(name, comfy_models, tmp_path):
    write_test_image(input_dir() / "example.png")
    write_test_image(input_dir() / "yosemite_inpaint_example.png", hole=True)
    registry = builtin_registry()
    document = open_document(comfy_path(name))
    graph = document.graph
    apply_aliases(graph, registry, [f"{old}={new}" for old, new in ALIASES.items()])
    shrink(graph)
    assert validate(graph, registry) == []
    workflow = graph_to_dict(graph)
    result = Executor(registry, output_dir=tmp_path).run(graph, workflow=workflow)
    assert result.status == "done", result.error
    saved = [img for ui in result.ui.values() for img in ui.get("images", []) if img.get("type") == "output"]
    assert saved, "the workflow saved nothing"
    for entry in saved:
        with Image.open(entry["path"]) as img:
            assert img.size in ((64, 64), (96, 96))
            assert np.asarray(img.convert("RGB"), dtype=np.float32).std() > 0, "a constant image"
        assert graph_to_dict(open_document(Path(entry["path"])).graph) == workflow


def test_lora_workflow_uses_the_lora(comfy_models, tmp_path):
    """The anchor's LoRA (written for the tiny SD1 under the anchor's file name) changes the image."""
    registry = builtin_registry()
    images = []
    for strength in (0.0, 1.0):
        graph = open_document(anchor("lora_txt2img.workflow.json")).graph
        apply_aliases(graph, registry, [f"v1-5-pruned-emaonly.ckpt={TINY_NAMES['sd1']}"])
        shrink(graph)
        graph.nodes[10].values.update(strength_model=strength, strength_clip=strength)
        assert graph.nodes[10].values["lora_name"] == ANCHOR_LORA
        result = Executor(registry, output_dir=tmp_path / str(strength)).run(graph)
        assert result.status == "done", result.error
        (entry,) = [i for ui in result.ui.values() for i in ui.get("images", [])]
        images.append(np.asarray(Image.open(entry["path"]), dtype=np.float32))
    assert np.abs(images[0] - images[1]).max() > 0


@pytest.mark.parametrize(
    "name",
    ["sdxl_turbo_sampler_custom.workflow.json"],
)
def test_workflows_needing_missing_nodes_name_only_those_at_run(name, comfy_models):
    """Validation names each missing node that the outputs need, by id and type; nothing else blocks them
    except model files (mapped or not installed)."""
    registry = builtin_registry()
    graph = open_document(anchor(name)).graph
    problems = validate(graph, registry)
    missing = {(p.node_id, graph.nodes[p.node_id].type) for p in problems if p.code == "unknown_type"}
    placeholders = {(n.id, n.type) for n in graph.nodes.values() if registry.get(n.type) is None}
    assert missing == placeholders
    others = [p for p in problems if p.code != "unknown_type"]
    for p in others:
        assert p.code == "bad_value", str(p)
        assert (p.input, graph.nodes[p.node_id].type) in {
            ("ckpt_name", "CheckpointLoaderSimple"),
            ("vae_name", "VAELoader"),
            ("sampler_name", "KSampler"),
        }, str(p)
