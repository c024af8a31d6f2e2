"""Fixtures for the ComfyUI import/export tests: the anchor files and tiny models they can run on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import nodes.folders
from tests.nodes.lora.lora_support import LoraWriter
from tests.support.model_root import tiny_flow_root, tiny_model_root, tiny_models  # noqa: F401
from tests.support.tiny_sd import build_tiny_models, make_tiny_sdxl_refiner

# The LoRA name the lora_txt2img anchor asks for; the test writes a small kohya LoRA under it.
ANCHOR_LORA = "epiNoiseoffset_v2.safetensors"
REFINER = "tiny_sdxl_refiner.safetensors"


@pytest.fixture(scope="session")
def extra_model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SDXL refiner and a kohya LoRA for the tiny SD1, beside the shared tiny checkpoints."""
    root = tmp_path_factory.mktemp("comfy_models")
    (root / "checkpoints").mkdir()
    (root / "loras").mkdir()
    make_tiny_sdxl_refiner(root / "checkpoints", name=REFINER.removesuffix(".safetensors"))
    sd1 = build_tiny_models("sd1")
    writer = LoraWriter(seed=3)
    attn = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    writer.kohya(sd1.unet, attn, "lora_unet_" + attn.replace(".", "_"), alpha=2.0)
    writer.kohya(
        sd1.text_encoders[0],
        "encoder.layers.0.self_attn.q_proj",
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj",
        alpha=2.0,
    )
    writer.save(root / "loras" / ANCHOR_LORA)
    return root


@pytest.fixture
def comfy_models(tiny_model_root: Path, extra_model_root: Path, tiny_flow_root: Path) -> Iterator[Path]:  # noqa: F811
    nodes.folders.configure(extra_roots=[str(tiny_model_root), str(extra_model_root), str(tiny_flow_root)])
    try:
        yield tiny_model_root
    finally:
        nodes.folders.configure()
