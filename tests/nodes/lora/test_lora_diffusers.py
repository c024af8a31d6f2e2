"""Parity with diffusers' own LoRA loading (``load_lora_weights`` through peft) on the same tiny weights.

A second, independent oracle next to the hand-merged weights of ``test_lora_apply``: diffusers converts
the file itself, injects peft layers and scales them by alpha/rank × adapter weight. Only the parts
diffusers 0.42.1 reads correctly are compared: kohya files with diffusers-style UNet names (its converter
does not map SD1 LDM-style ``input_blocks_…`` names) and one alpha for the whole file (with differing
alphas it builds peft ``alpha_pattern`` keys that match no module and falls back to the most common
alpha, a diffusers bug; our result for such files is checked against merged weights instead).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

pytest.importorskip("peft")

from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
from diffusers.utils import logging as diffusers_logging

from nodes.diffusion.clip import ClipModel
from nodes.diffusion.lora import apply_lora, load_lora
from nodes.diffusion.text.vocab import build_clip_tokenizer
from tests.nodes.lora.lora_support import (
    KOHYA_DIFFUSERS_NAMES,
    KOHYA_TE,
    PROMPT,
    LoraWriter,
    diffusion_model,
    max_diff,
    unet_out,
)
from tests.support.tiny_sd import TinyModels


def _pipeline(sd1: TinyModels) -> StableDiffusionPipeline:
    """Copies of the tiny models: peft rewrites the modules it loads a LoRA into."""
    diffusers_logging.set_verbosity_error()
    return StableDiffusionPipeline(
        vae=None,
        text_encoder=copy.deepcopy(sd1.text_encoders[0]),
        tokenizer=build_clip_tokenizer(),
        unet=copy.deepcopy(sd1.unet),
        scheduler=EulerDiscreteScheduler(steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


@pytest.mark.parametrize("style", ["kohya", "peft"])
def test_matches_diffusers_load_lora_weights(sd1: TinyModels, tmp_path: Path, style: str) -> None:
    te = sd1.text_encoders[0]
    w = LoraWriter(seed=21)
    if style == "kohya":
        for base, module in KOHYA_DIFFUSERS_NAMES:
            w.kohya(sd1.unet, module, base, alpha=2.0)
        for base, module in KOHYA_TE:
            w.kohya(te, module, base, alpha=2.0)
    else:
        for _, module in KOHYA_DIFFUSERS_NAMES:
            w.pair(sd1.unet, module, f"unet.{module}.lora_A.weight", f"unet.{module}.lora_B.weight")
        for _, module in KOHYA_TE:
            prefix = f"text_encoder.text_model.{module}"
            w.pair(te, module, f"{prefix}.lora_A.weight", f"{prefix}.lora_B.weight")
    path = w.save(tmp_path / f"{style}.safetensors")
    strength = 0.7

    pipe = _pipeline(sd1)
    pipe.load_lora_weights(str(path), adapter_name="style")
    pipe.set_adapters(["style"], adapter_weights=[strength])
    reference_unet = unet_out(diffusion_model(pipe.unet))
    reference_text, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False)

    model, clip = apply_lora(diffusion_model(sd1.unet), ClipModel("sd1", [te]), load_lora(path), strength, strength)
    assert clip is not None
    (ours,) = clip.encode(PROMPT)
    assert max_diff(unet_out(model), reference_unet) <= 1e-5
    assert max_diff(ours.embeds, reference_text) <= 1e-5
    assert max_diff(unet_out(diffusion_model(sd1.unet)), reference_unet) > 1e-2
