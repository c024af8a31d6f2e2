"""Tiny seeded SD1 models shared by the LoRA tests (helpers live in ``lora_support``)."""

from __future__ import annotations

import pytest

from nodes.diffusion.clip import ClipModel
from nodes.diffusion.model import DiffusionModel
from tests.nodes.lora.lora_support import diffusion_model
from tests.support.tiny_sd import TinyModels, build_tiny_models


@pytest.fixture(scope="module")
def sd1() -> TinyModels:
    return build_tiny_models("sd1", seed=0)


@pytest.fixture(scope="module")
def sd1_model(sd1: TinyModels) -> DiffusionModel:
    return diffusion_model(sd1.unet)


@pytest.fixture(scope="module")
def sd1_clip(sd1: TinyModels) -> ClipModel:
    return ClipModel("sd1", sd1.text_encoders)
