"""ComfyUI's custom-sampling AddNoise (model, noise, sigmas, latent_image): a ComfyUI API prompt that noises
the latent with it and samples with DisableNoise runs on the tiny SD1 checkpoint, and equals the same prompt
with the noise given to SamplerCustomAdvanced directly (AddNoise puts the latent at |σ₀ − σ_last|, which for
a full schedule ending at 0 is σ₀, the level the sampler itself starts at). sdgraph's forward-noise node is
`ForwardNoise`, so the name means one thing in a prompt, in our graph and in the export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from app.documents import open_document
from graph_engine import Executor, validate
from graph_engine.comfy.export import to_api
from nodes import builtin_registry
from tests.support.model_root import TINY_NAMES


def prompt(*, noise_in_add_noise: bool) -> dict[str, Any]:
    """Tiny txt2img with SamplerCustomAdvanced; the seed's noise goes through AddNoise, or to the sampler."""
    p: dict[str, Any] = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": TINY_NAMES["sd1"]}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red barn", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "RandomNoise", "inputs": {"noise_seed": 7}},
        "6": {
            "class_type": "BasicScheduler",
            "inputs": {"model": ["1", 0], "scheduler": "normal", "steps": 3, "denoise": 1.0},
        },
        "7": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "8": {
            "class_type": "CFGGuider",
            "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "cfg": 3.0},
        },
        "10": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["5", 0],
                "guider": ["8", 0],
                "sampler": ["7", 0],
                "sigmas": ["6", 0],
                "latent_image": ["4", 0],
            },
        },
        "11": {"class_type": "VAEDecode", "inputs": {"samples": ["10", 0], "vae": ["1", 2]}},
        "12": {"class_type": "SaveImage", "inputs": {"images": ["11", 0], "filename_prefix": "addnoise"}},
    }
    if noise_in_add_noise:
        p["9"] = {
            "class_type": "AddNoise",
            "inputs": {"model": ["1", 0], "noise": ["5", 0], "sigmas": ["6", 0], "latent_image": ["4", 0]},
        }
        p["13"] = {"class_type": "DisableNoise", "inputs": {}}
        p["10"]["inputs"].update(noise=["13", 0], latent_image=["9", 0])
    return p


def run(doc: dict[str, Any], tmp_path: Path, name: str) -> tuple[Any, Any]:
    path = tmp_path / f"{name}.api.json"
    path.write_text(json.dumps(doc))
    graph = open_document(path).graph
    registry = builtin_registry()
    assert validate(graph, registry) == []
    targets = [i for i in (9, 10, 12) if i in graph.nodes]  # the prompt's ids are kept on import
    result = Executor(registry, output_dir=tmp_path / name).run(graph, targets=targets)
    assert result.status == "done", result.error
    return graph, result


def test_comfyui_add_noise_prompt_runs_and_matches_the_samplers_own_noise(comfy_models, tmp_path):
    graph, result = run(prompt(noise_in_add_noise=True), tmp_path, "add_noise")
    (add_id,) = [i for i, n in graph.nodes.items() if n.type == "AddNoise"]
    assert {lk.dst_input for lk in graph.links.values() if lk.dst_node == add_id} == {
        "model",
        "noise",
        "sigmas",
        "latent_image",
    }
    (saved,) = [img for ui in result.ui.values() for img in ui.get("images", []) if img.get("type") == "output"]
    assert Path(saved["path"]).is_file()
    _, direct = run(prompt(noise_in_add_noise=False), tmp_path, "direct")
    sampled = result.outputs[10][0]["samples"]
    # the same up to float32 rounding of the extra trip out of and back into model space (values ~100)
    torch.testing.assert_close(sampled, direct.outputs[10][0]["samples"], rtol=1e-4, atol=1e-3)
    noised = result.outputs[add_id][0]["samples"]
    assert noised.abs().max() > 1.0  # σ₀ ≈ 14.6 of noise over an empty latent


def test_comfyui_add_noise_exports_as_comfyuis_node(comfy_models, tmp_path):
    path = tmp_path / "p.api.json"
    path.write_text(json.dumps(prompt(noise_in_add_noise=True)))
    graph = open_document(path).graph
    api = to_api(graph, builtin_registry())
    (node,) = [n for n in api.values() if n["class_type"] == "AddNoise"]
    assert set(node["inputs"]) == {"model", "noise", "sigmas", "latent_image"}
    assert not any(n["class_type"] == "ForwardNoise" for n in api.values())
