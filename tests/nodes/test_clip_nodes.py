"""CLIP Set Last Layer uses ComfyUI's numbering, so imported workflows encode as they did there."""

from __future__ import annotations

import torch

from graph_engine import ExecutionContext
from nodes.diffusion.clip import ClipModel
from nodes.loaders import clip_set_last_layer
from tests.support.tiny_sd import build_tiny_models


def encode(clip: ClipModel, stop: int) -> torch.Tensor:
    (changed,) = clip_set_last_layer.execute(ExecutionContext(node_id=1, title="CLIP Set Last Layer"), clip, stop)
    return changed.encode("a photo of a cat")[0].embeds


def test_sd1_minus_one_is_the_last_layer_and_minus_two_skips_one():
    models = build_tiny_models("sd1")
    clip = ClipModel("sd1", models.text_encoders)
    base = clip.encode("a photo of a cat")[0].embeds
    assert torch.equal(encode(clip, -1), base)
    assert not torch.equal(encode(clip, -2), base)


def test_sd2_follows_comfyui_numbering():
    models = build_tiny_models("sd2")
    clip = ClipModel("sd2", models.text_encoders)
    base = clip.encode("a photo of a cat")[0].embeds  # diffusers' SD2 encoding = ComfyUI's default (-2)
    assert torch.equal(encode(clip, -2), base)
    assert torch.equal(encode(clip, -1), base)  # the dropped last block: the closest layer there is
    assert torch.equal(encode(clip, -3), clip.with_last_layer(-2).encode("a photo of a cat")[0].embeds)
