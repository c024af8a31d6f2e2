"""ComfyUI API-format prompts naming the samplers and schedulers added for ComfyUI parity run on the tiny
SD1 checkpoint, opened as `sdgraph run` opens them; a ``*_gpu`` name gives exactly its CPU sampler's image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.documents import open_document
from graph_engine import Executor, validate
from nodes import builtin_registry
from tests.support.model_root import TINY_NAMES


def ksampler_prompt(sampler_name: str, scheduler: str) -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": TINY_NAMES["sd1"]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in the snow", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 42,
                "steps": 4,
                "cfg": 5.0,
                "sampler_name": sampler_name,
                "scheduler": scheduler,
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def custom_prompt(sampler_name: str) -> dict[str, Any]:
    """SamplerCustomAdvanced with an AlignYourStepsScheduler, as ComfyUI's AYS example wires it."""
    prompt = ksampler_prompt("euler", "normal")
    del prompt["3"]
    prompt.update(
        {
            "10": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler_name}},
            "11": {
                "class_type": "AlignYourStepsScheduler",
                "inputs": {"model_type": "SD1", "steps": 10, "denoise": 0.4},
            },
            "12": {
                "class_type": "CFGGuider",
                "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "cfg": 5.0},
            },
            "13": {"class_type": "RandomNoise", "inputs": {"noise_seed": 7}},
            "3": {
                "class_type": "SamplerCustomAdvanced",
                "inputs": {
                    "noise": ["13", 0],
                    "guider": ["12", 0],
                    "sampler": ["10", 0],
                    "sigmas": ["11", 0],
                    "latent_image": ["5", 0],
                },
            },
        }
    )
    return prompt


def run_prompt(prompt: dict[str, Any], tmp_path: Path) -> np.ndarray:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "prompt.json"
    path.write_text(json.dumps(prompt))
    registry = builtin_registry()
    graph = open_document(path).graph
    assert validate(graph, registry) == []
    result = Executor(registry, output_dir=tmp_path / "out").run(graph)
    assert result.status == "done", result.error
    (entry,) = [img for ui in result.ui.values() for img in ui.get("images", []) if img.get("type") == "output"]
    with Image.open(entry["path"]) as img:
        pixels = np.asarray(img.convert("RGB"), dtype=np.float32)
    assert pixels.std() > 0, "a constant image"
    return pixels


def test_dpmpp_2m_sde_gpu_workflow_runs_as_its_cpu_sampler(comfy_models, tmp_path) -> None:
    gpu = run_prompt(ksampler_prompt("dpmpp_2m_sde_gpu", "karras"), tmp_path / "gpu")
    cpu = run_prompt(ksampler_prompt("dpmpp_2m_sde", "karras"), tmp_path / "cpu")
    np.testing.assert_array_equal(gpu, cpu)
    other = run_prompt(ksampler_prompt("euler", "karras"), tmp_path / "euler")
    assert np.abs(other - gpu).max() > 0  # the sampler name reached the sampler


@pytest.mark.parametrize(
    ("sampler_name", "scheduler"),
    [("euler_ancestral_cfg_pp", "kl_optimal"), ("seeds_3", "linear_quadratic"), ("sa_solver", "beta")],
)
def test_new_sampler_and_scheduler_names_run(comfy_models, tmp_path, sampler_name: str, scheduler: str) -> None:
    run_prompt(ksampler_prompt(sampler_name, scheduler), tmp_path)


def test_custom_sampling_with_align_your_steps(comfy_models, tmp_path) -> None:
    run_prompt(custom_prompt("dpmpp_3m_sde_gpu"), tmp_path)
