"""A ComfyUI FLUX.1 ControlNet workflow in API form (tests/nodes/data/flux_controlnet_canny.api.json: Load
Diffusion Model, DualCLIPLoader, Load VAE, FluxGuidance, Canny, Load ControlNet Model, Apply ControlNet with
its vae input) opens with every node real and its values in place, and runs on tiny models written under
the file names it asks for; the ControlNet changes the image."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.documents import open_document
from graph_engine import Executor, validate
from nodes import builtin_registry
from nodes.diffusion.text.encoder_files import CLIP_L, T5XXL
from nodes.folders import input_dir
from tests.support import tiny_flow as tf
from tests.support import tiny_flow_controlnet as tfc
from tests.support.tiny_text import save_encoder

WORKFLOW = Path(__file__).resolve().parents[1] / "data" / "flux_controlnet_canny.api.json"


@pytest.fixture
def models(tmp_path: Path) -> Iterator[Path]:
    """The files the workflow names, as tiny seeded models (the ControlNet made from the transformer)."""
    import nodes.folders

    root = tmp_path / "models"
    for kind in ("diffusion_models", "text_encoders", "vae", "controlnet"):
        (root / kind).mkdir(parents=True)
    transformer = tf.tiny_flux(5, guidance=True)
    tf.write_file(root / "diffusion_models" / "flux1-dev.safetensors", tf.flux_to_original(transformer))
    tf.write_file(root / "vae" / "ae.safetensors", tf.vae16_to_original(tf.tiny_vae16(6, "flux")))
    clip_l, t5 = tf.tiny_flux_text_encoders(7)
    save_encoder(clip_l, CLIP_L, root / "text_encoders" / "clip_l.safetensors")
    save_encoder(t5, T5XXL, root / "text_encoders" / "t5xxl_fp16.safetensors")
    net = tfc.tiny_flux_controlnet(transformer, seed=9, scale=0.3)
    tfc.write_single_file(net, root / "controlnet" / "instantx_flux_canny.safetensors")
    nodes.folders.configure(extra_roots=[str(root)])
    yield root
    nodes.folders.configure()


def edge_picture(path: Path) -> None:
    """Squares of different greys: sharp edges for Canny to find."""
    pixels = np.zeros((48, 64, 3), dtype=np.uint8)
    pixels[8:40, 8:40] = 255
    pixels[20:44, 30:58] = 120
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path)


def test_comfyui_flux_controlnet_workflow_opens_with_its_values() -> None:
    graph = open_document(WORKFLOW).graph
    registry = builtin_registry()
    assert not [n.type for n in graph.nodes.values() if n.type not in registry.types()]
    by_type = {n.type: n for n in graph.nodes.values()}
    assert by_type["ControlNetApplyAdvanced"].values == {"strength": 0.7, "start_percent": 0.0, "end_percent": 0.8}
    assert by_type["ControlNetLoader"].values == {"control_net_name": "instantx_flux_canny.safetensors"}
    apply = by_type["ControlNetApplyAdvanced"].id
    assert graph.nodes[graph.link_into(apply, "vae").src_node].type == "VAELoader"


def test_comfyui_flux_controlnet_workflow_runs_on_tiny_models(models: Path, tmp_path: Path) -> None:
    edge_picture(input_dir() / "example.png")
    registry = builtin_registry()
    pictures = []
    for strength in (0.7, 0.0):
        graph = open_document(WORKFLOW).graph
        for node in graph.nodes.values():
            if node.type == "EmptySD3LatentImage":
                node.values.update(width=64, height=48)
            if node.type == "KSampler":
                node.values["steps"] = 3
            if node.type == "ControlNetApplyAdvanced":
                node.values["strength"] = strength
        assert validate(graph, registry) == []
        result = Executor(registry, output_dir=tmp_path / str(strength)).run(graph)
        assert result.status == "done", result.error
        (saved,) = [img for ui in result.ui.values() for img in ui.get("images", [])]
        with Image.open(saved["path"]) as img:
            pictures.append(np.asarray(img.convert("RGB"), dtype=np.int16))
    assert pictures[0].shape == (48, 64, 3) and pictures[0].std() > 0
    assert np.abs(pictures[0] - pictures[1]).max() > 8, "the ControlNet did not change the image"
