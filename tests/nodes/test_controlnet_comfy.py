"""A ComfyUI ControlNet (canny) workflow, in its UI and API forms (tests/nodes/data), opens with every node
real (no placeholder), its positional widget values land on the right inputs, and both forms run on the
tiny SD1 checkpoint and ControlNet to the same image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import apply_aliases
from app.documents import open_document
from graph_engine import Executor, validate
from nodes import builtin_registry
from nodes.folders import input_dir
from nodes.model_matching import find_missing_models
from tests.support.model_root import TINY_CONTROLNET, TINY_NAMES

DATA = Path(__file__).parent / "data"
ALIASES = [
    f"v1-5-pruned-emaonly.safetensors={TINY_NAMES['sd1']}",
    f"control_v11p_sd15_canny_fp16.safetensors={TINY_CONTROLNET}",
]


def edge_picture(path: Path) -> None:
    """Squares of different greys: sharp edges for Canny to find."""
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[8:40, 8:40] = 255
    pixels[28:60, 30:58] = 120
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path)


@pytest.mark.parametrize("form", ["workflow", "api"])
def test_comfyui_controlnet_workflow_opens_with_its_values(form):
    graph = open_document(DATA / f"controlnet_canny.{form}.json").graph
    by_type = {n.type: n for n in graph.nodes.values()}
    assert not [n for n in graph.nodes.values() if n.type not in builtin_registry().types()]
    assert by_type["ControlNetApplyAdvanced"].values == {"strength": 0.9, "start_percent": 0.0, "end_percent": 0.8}
    assert by_type["ControlNetLoader"].values == {"control_net_name": "control_v11p_sd15_canny_fp16.safetensors"}
    assert by_type["Canny"].values == {"low_threshold": 0.4, "high_threshold": 0.8}


def test_a_missing_controlnet_is_reported_as_one(tiny_models):
    graph = open_document(DATA / "controlnet_canny.workflow.json").graph
    missing = {(m.kind, m.name) for m in find_missing_models(graph, builtin_registry())}
    assert ("controlnet", "control_v11p_sd15_canny_fp16.safetensors") in missing
    assert TINY_CONTROLNET in [c for m in find_missing_models(graph, builtin_registry()) for c in m.candidates]


def test_both_forms_run_to_the_same_image(tiny_models, tmp_path):
    edge_picture(input_dir() / "example.png")
    registry = builtin_registry()
    pictures = []
    for form in ("workflow", "api"):
        graph = open_document(DATA / f"controlnet_canny.{form}.json").graph
        apply_aliases(graph, registry, ALIASES)
        for node in graph.nodes.values():
            if node.type == "EmptyLatentImage":
                node.values.update(width=64, height=64)
            if node.type == "KSampler":
                node.values["steps"] = 3
        assert validate(graph, registry) == []
        result = Executor(registry, output_dir=tmp_path / form).run(graph)
        assert result.status == "done", result.error
        (saved,) = [img for ui in result.ui.values() for img in ui.get("images", [])]
        with Image.open(saved["path"]) as img:
            pictures.append(np.asarray(img.convert("RGB"), dtype=np.int16))
    assert pictures[0].std() > 0
    assert np.array_equal(pictures[0], pictures[1])
