"""ComfyUI workflows built from the image, mask, latent and conditioning toolbox open and run end to end
on the tiny checkpoints: an outpaint with a regional prompt and the result composited back (API form),
InpaintModelConditioning with masks loaded, thresholded, inverted and cropped (API form), and masks, latent
batches, tiled decoding and blending in the UI form, whose positional widget values must land on the
right inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.documents import open_document
from graph_engine import Executor, validate
from graph_engine.serialization import graph_to_dict
from nodes import builtin_registry
from nodes.folders import input_dir
from tests.support.model_root import TINY_NAMES, write_test_image

FILES = Path(__file__).parent / "toolbox"
MODELS = {
    "512-inpainting-ema.safetensors": TINY_NAMES["sd1_inpaint"],
    "v1-5-pruned-emaonly.safetensors": TINY_NAMES["sd1"],
}


def run(name: str, tmp_path: Path):
    write_test_image(input_dir() / "example.png")
    write_test_image(input_dir() / "example_masked.png", hole=True)
    registry = builtin_registry()
    graph = open_document(FILES / name).graph
    for node in graph.nodes.values():
        if "ckpt_name" in node.values:
            node.values["ckpt_name"] = MODELS[node.values["ckpt_name"]]
    assert validate(graph, registry) == []
    workflow = graph_to_dict(graph)
    result = Executor(registry, output_dir=tmp_path).run(graph, workflow=workflow)
    assert result.status == "done", result.error
    saved = {}
    for ui in result.ui.values():
        for entry in ui.get("images", []):
            with Image.open(entry["path"]) as img:
                saved.setdefault(entry["filename"].rsplit("_", 2)[0], []).append(
                    np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
                )
            # every saved image reopens as the graph (a node's ui may hold no images: a mask's preview)
            assert graph_to_dict(open_document(Path(entry["path"])).graph) == workflow
    return graph, result, saved


def test_outpaint_with_a_regional_prompt(tiny_models, tmp_path):
    _, _, saved = run("outpaint_regional.api.json", tmp_path)
    (image,) = saved["outpaint"]
    assert image.shape == (96, 96, 3) and image.std() > 0
    original = np.asarray(Image.open(input_dir() / "example.png").convert("RGB"), dtype=np.float32) / 255.0
    # composited back through the outpaint mask: the old image's inside (farther than the 8 px feather
    # from the padded sides) is the original, untouched; the new margins are generated
    np.testing.assert_allclose(image[16 + 8 : 80 - 8, 16 + 8 : 80 - 8], original[8:-8, 8:-8], atol=1 / 255)
    assert np.abs(image[:16] - 0.5).max() > 0


def test_inpaint_model_conditioning_workflow(tiny_models, tmp_path):
    _, _, saved = run("inpaint_model_conditioning.api.json", tmp_path)
    (crop,) = saved["inpaint_crop"]
    assert crop.shape == (96, 96, 3) and crop.std() > 0
    (roundtrip,) = saved["mask_roundtrip"]
    assert roundtrip.shape == (96, 96, 3)


def test_ui_workflow_widgets_map_and_run(tiny_models, tmp_path):
    graph, result, saved = run("masks_latents.workflow.json", tmp_path)
    values = {n.type: n.values for n in graph.nodes.values()}
    assert values["MaskComposite"] == {"x": 16, "y": 16, "operation": "add"}
    assert values["GrowMask"] == {"expand": 4, "tapered_corners": True}
    assert values["ConditioningSetMask"] == {"strength": 1.0, "set_cond_area": "mask bounds"}
    assert values["ConditioningSetAreaPercentage"] == {"width": 0.5, "height": 1.0, "x": 0.5, "y": 0.0, "strength": 0.8}
    assert values["LatentFromBatch"] == {"batch_index": 1, "length": 1}
    assert values["LatentUpscaleBy"] == {"upscale_method": "bilinear", "scale_by": 1.5}
    assert values["VAEDecodeTiled"] == {"tile_size": 512, "overlap": 64, "temporal_size": 64, "temporal_overlap": 8}
    assert values["ImageBlend"] == {"blend_factor": 0.3, "blend_mode": "soft_light"}
    images = saved["masks_latents"]
    assert len(images) == 3 and all(i.shape == (96, 96, 3) for i in images)
    assert all(i.std() > 0 for i in images)
    # the two decoded copies of the one latent picked from the batch are the same image
    np.testing.assert_array_equal(images[0], images[1])
    (latent_entry,) = [e for ui in result.ui.values() for e in ui.get("latents", [])]
    from safetensors.torch import load_file

    tensors = load_file(latent_entry["path"])
    assert tensors["latent_tensor"].shape == (2, 4, 12, 12)
    assert torch.equal(tensors["latent_tensor"][0], tensors["latent_tensor"][1])


@pytest.mark.parametrize("name", sorted(p.name for p in FILES.glob("*.json")))
def test_every_toolbox_node_type_is_known(name):
    graph = open_document(FILES / name).graph
    registry = builtin_registry()
    assert [n.type for n in graph.nodes.values() if registry.get(n.type) is None] == []
