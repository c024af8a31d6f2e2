"""ComfyUI workflows using the upscale-model nodes open and run on tiny models: a model-upscale hires fix in
the UI form (positional widget values must land on UpscaleModelLoader's model_name, ImageScaleBy's method
and factor) and a bare image upscale in the API form, whose saved picture is spandrel's own result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nodes.folders
from app.documents import open_document
from graph_engine import Executor, validate
from graph_engine.serialization import graph_to_dict
from nodes import builtin_registry
from nodes.diffusion.spandrel_import import INSTALL_HINT, spandrel_available
from nodes.folders import input_dir
from tests.support.model_root import TINY_NAMES, TINY_UPSCALE, write_test_image

pytestmark = pytest.mark.skipif(not spandrel_available(), reason=f"spandrel is not installed. {INSTALL_HINT}")

FILES = Path(__file__).parent / "upscale"
MODELS = {
    "v1-5-pruned-emaonly.safetensors": TINY_NAMES["sd1"],
    "RealESRGAN_x4plus.pth": TINY_UPSCALE,
    "4x-UltraSharp.pth": TINY_UPSCALE,
}


@pytest.fixture
def models(tiny_model_root):
    nodes.folders.configure(extra_roots=[str(tiny_model_root)])
    yield tiny_model_root
    nodes.folders.configure()


def run(name: str, tmp_path: Path):
    write_test_image(input_dir() / "example.png")
    registry = builtin_registry()
    graph = open_document(FILES / name).graph
    for node in graph.nodes.values():
        for key in ("ckpt_name", "model_name"):
            if key in node.values:
                node.values[key] = MODELS[node.values[key]]
    assert validate(graph, registry) == []
    workflow = graph_to_dict(graph)
    result = Executor(registry, output_dir=tmp_path).run(graph, workflow=workflow)
    assert result.status == "done", result.error
    saved: dict[str, np.ndarray] = {}
    for ui in result.ui.values():
        for entry in ui.get("images", []):
            with Image.open(entry["path"]) as img:
                saved[entry["filename"].rsplit("_", 2)[0]] = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
    return graph, saved


def test_ui_workflow_upscale_hires_fix(models, tmp_path):
    graph, saved = run("upscale_hires.workflow.json", tmp_path)
    values = {n.type: n.values for n in graph.nodes.values()}
    assert values["UpscaleModelLoader"] == {"model_name": TINY_UPSCALE}
    assert values["ImageScaleBy"] == {"upscale_method": "lanczos", "scale_by": 0.375}
    assert values["ImageUpscaleWithModel"] == {}
    assert saved["model_upscaled"].shape == (256, 256, 3)  # 64 px first pass, 4x
    assert saved["upscale_hires"].shape == (96, 96, 3) and saved["upscale_hires"].std() > 0


def test_export_to_the_api_form_writes_comfyuis_inputs() -> None:
    from graph_engine.comfy.export import to_api

    graph = open_document(FILES / "upscale_hires.workflow.json").graph
    api = to_api(graph, builtin_registry())
    by_type = {entry["class_type"]: entry["inputs"] for entry in api.values()}
    assert by_type["UpscaleModelLoader"] == {"model_name": "RealESRGAN_x4plus.pth"}
    assert set(by_type["ImageUpscaleWithModel"]) == {"upscale_model", "image"}
    loader_key = next(k for k, e in api.items() if e["class_type"] == "UpscaleModelLoader")
    assert by_type["ImageUpscaleWithModel"]["upscale_model"] == [str(loader_key), 0]


def test_api_workflow_upscale_is_spandrels_result(models, tmp_path):
    import spandrel

    _, saved = run("upscale_image.api.json", tmp_path)
    image = saved["api_upscaled"]
    assert image.shape == (256, 256, 3)
    pixels = np.asarray(Image.open(input_dir() / "example.png").convert("RGB"), dtype=np.float32) / 255
    descriptor = spandrel.ModelLoader().load_from_file(models / "upscale_models" / TINY_UPSCALE).eval()
    with torch.inference_mode():
        expected = descriptor(torch.from_numpy(pixels).movedim(-1, 0)[None])[0].movedim(0, -1).numpy()
    np.testing.assert_allclose(image, expected, atol=0.51 / 255)  # the PNG rounds to 8 bits
