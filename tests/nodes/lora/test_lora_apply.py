"""apply_lora against hand-merged weights on tiny seeded SD1/SDXL models, in kohya and diffusers naming."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from nodes.diffusion.clip import ClipModel
from nodes.diffusion.conditioning import CondEntry
from nodes.diffusion.lora import PatchedClip, apply_lora, load_lora
from nodes.diffusion.model import DiffusionModel
from tests.nodes.lora.lora_support import (
    KOHYA_DIFFUSERS_NAMES,
    KOHYA_LDM_NAMES,
    KOHYA_TE,
    PROMPT,
    TOL,
    LoraWriter,
    Planned,
    diffusion_model,
    max_diff,
    merged,
    unet_out,
)
from tests.support.tiny_sd import TinyModels, build_tiny_models


def kohya_sd1_file(sd1: TinyModels, path: Path) -> tuple[Path, list[Planned], list[Planned]]:
    w = LoraWriter(seed=1)
    unet = [
        w.kohya(sd1.unet, module, base, rank=4 if i % 2 else 2, alpha=[1.0, 3.0, None][i % 3])
        for i, (base, module) in enumerate(KOHYA_DIFFUSERS_NAMES + KOHYA_LDM_NAMES)
    ]
    te = [w.kohya(sd1.text_encoders[0], module, base, alpha=2.0) for base, module in KOHYA_TE]
    return w.save(path), unet, te


def test_kohya_unet_matches_merged_weights(sd1: TinyModels, sd1_model: DiffusionModel, tmp_path: Path) -> None:
    path, unet_planned, _ = kohya_sd1_file(sd1, tmp_path / "style.safetensors")
    lora = load_lora(path)
    assert lora.format == "kohya" and len(lora.layers) == 15
    strength = 0.7
    patched, _ = apply_lora(sd1_model, None, lora, strength, 1.0)
    assert len(patched.patches) == len(unet_planned)

    expected = unet_out(diffusion_model(merged(sd1.unet, unet_planned, strength)))
    base = unet_out(sd1_model)
    got = unet_out(patched)
    assert max_diff(got, expected) <= TOL
    assert max_diff(base, expected) > 1e-2  # the LoRA really changes the output


def test_each_unet_name_style_on_its_own(sd1: TinyModels, sd1_model: DiffusionModel, tmp_path: Path) -> None:
    """Diffusers-style and LDM-style names separately, so one style cannot hide behind the other."""
    for i, names in enumerate([KOHYA_DIFFUSERS_NAMES, KOHYA_LDM_NAMES]):
        w = LoraWriter(seed=10 + i)
        planned = [w.kohya(sd1.unet, module, base, alpha=4.0) for base, module in names]
        patched, _ = apply_lora(sd1_model, None, load_lora(w.save(tmp_path / f"{i}.safetensors")), -1.3, 0.0)
        assert max_diff(unet_out(patched), unet_out(diffusion_model(merged(sd1.unet, planned, -1.3)))) <= TOL


def test_kohya_text_encoder_matches_merged_weights(sd1: TinyModels, sd1_clip: ClipModel, tmp_path: Path) -> None:
    path, unet_planned, te_planned = kohya_sd1_file(sd1, tmp_path / "style.safetensors")
    model = diffusion_model(sd1.unet)
    new_model, clip = apply_lora(model, sd1_clip, load_lora(path), 1.0, 0.6)
    assert isinstance(clip, PatchedClip) and isinstance(clip, ClipModel)
    assert clip.family == "sd1" and clip.text_encoders == sd1_clip.text_encoders and clip.layer_idx is None
    assert clip.tokenize(PROMPT) == sd1_clip.tokenize(PROMPT)

    oracle = ClipModel("sd1", [merged(sd1.text_encoders[0], te_planned, 0.6)])
    (got,) = clip.encode(PROMPT, {"note": 1})
    (want,) = oracle.encode(PROMPT)
    (base,) = sd1_clip.encode(PROMPT)
    assert max_diff(got.embeds, want.embeds) <= TOL
    assert max_diff(base.embeds, want.embeds) > 1e-2
    assert got.extras == {"note": 1}

    # CLIP Set Last Layer keeps the LoRA; the patched handle's unet part is untouched by the clip strength.
    (got2,) = clip.with_last_layer(-2).encode(PROMPT)
    (want2,) = oracle.with_last_layer(-2).encode(PROMPT)
    assert isinstance(clip.with_last_layer(-2), PatchedClip)
    assert max_diff(got2.embeds, want2.embeds) <= TOL
    assert len(new_model.patches) == len(unet_planned)


def test_two_loras_stack(sd1: TinyModels, sd1_model: DiffusionModel, sd1_clip: ClipModel, tmp_path: Path) -> None:
    first, unet_a, te_a = kohya_sd1_file(sd1, tmp_path / "a.safetensors")
    w = LoraWriter(seed=5)
    unet_b = [w.kohya(sd1.unet, m, b, alpha=1.0) for b, m in KOHYA_LDM_NAMES[:3]]
    te_b = [w.kohya(sd1.text_encoders[0], m, b, alpha=None) for b, m in KOHYA_TE[:1]]
    second = w.save(tmp_path / "b.safetensors")

    model, clip = apply_lora(sd1_model, sd1_clip, load_lora(first), 0.5, 0.5)
    model, clip = apply_lora(model, clip, load_lora(second), 1.0, -0.8)
    assert clip is not None
    unet_oracle = merged(merged(sd1.unet, unet_a, 0.5), unet_b, 1.0)
    assert max_diff(unet_out(model), unet_out(diffusion_model(unet_oracle))) <= TOL
    te_oracle = merged(merged(sd1.text_encoders[0], te_a, 0.5), te_b, -0.8)
    (got,) = clip.encode(PROMPT)
    (want,) = ClipModel("sd1", [te_oracle]).encode(PROMPT)
    assert max_diff(got.embeds, want.embeds) <= TOL


@pytest.mark.parametrize("style", ["peft", "legacy"])
def test_diffusers_formats_match_merged_weights(
    sd1: TinyModels, sd1_model: DiffusionModel, sd1_clip: ClipModel, tmp_path: Path, style: str
) -> None:
    te = sd1.text_encoders[0]
    w = LoraWriter(seed=3)
    attn = "down_blocks.0.attentions.1.transformer_blocks.0"
    if style == "peft":  # what diffusers' save_lora_weights writes today; no alpha → scale 1
        unet_planned = [
            w.pair(sd1.unet, m, f"unet.{m}.lora_A.weight", f"unet.{m}.lora_B.weight")
            for m in (f"{attn}.attn1.to_v", f"{attn}.ff.net.0.proj", "up_blocks.0.resnets.2.conv2")
        ]
        te_planned = [
            w.pair(te, m, f"text_encoder.text_model.{m}.lora_A.weight", f"text_encoder.text_model.{m}.lora_B.weight")
            for m in ("encoder.layers.0.self_attn.k_proj", "encoder.layers.1.mlp.fc2")
        ]
    else:  # diffusers ≤0.20: attention processors and lora_linear_layer, optional alpha
        unet_planned = [
            w.pair(
                sd1.unet,
                f"{attn}.attn2.to_out.0",
                f"unet.{attn}.attn2.processor.to_out_lora.down.weight",
                f"unet.{attn}.attn2.processor.to_out_lora.up.weight",
            ),
            w.pair(
                sd1.unet,
                "mid_block.attentions.0.proj_out",
                "unet.mid_block.attentions.0.proj_out.lora.down.weight",
                "unet.mid_block.attentions.0.proj_out.lora.up.weight",
                alpha=2.0,
                alpha_key="unet.mid_block.attentions.0.proj_out.alpha",
                down_2d_for_1x1=True,  # a Linear-shaped LoRA on SD1's 1×1-conv proj_out
            ),
        ]
        m = "encoder.layers.1.self_attn.v_proj"
        te_planned = [
            w.pair(
                te,
                m,
                f"text_encoder.text_model.{m}.lora_linear_layer.down.weight",
                f"text_encoder.text_model.{m}.lora_linear_layer.up.weight",
            )
        ]
    lora = load_lora(w.save(tmp_path / f"{style}.safetensors"))
    assert lora.format == "diffusers"
    model, clip = apply_lora(sd1_model, sd1_clip, lora, 0.9, 1.1)
    assert clip is not None
    assert max_diff(unet_out(model), unet_out(diffusion_model(merged(sd1.unet, unet_planned, 0.9)))) <= TOL
    (got,) = clip.encode(PROMPT)
    (want,) = ClipModel("sd1", [merged(te, te_planned, 1.1)]).encode(PROMPT)
    assert max_diff(got.embeds, want.embeds) <= TOL


def test_strength_zero_returns_inputs(
    sd1: TinyModels, sd1_model: DiffusionModel, sd1_clip: ClipModel, tmp_path: Path
) -> None:
    path, _, _ = kohya_sd1_file(sd1, tmp_path / "style.safetensors")
    lora = load_lora(path)
    model, clip = apply_lora(sd1_model, sd1_clip, lora, 0.0, 0.0)
    assert model is sd1_model and clip is sd1_clip
    model, clip = apply_lora(sd1_model, sd1_clip, lora, 0.0, 1.0)
    assert model is sd1_model and isinstance(clip, PatchedClip)
    model, clip = apply_lora(sd1_model, sd1_clip, lora, 1.0, 0.0)
    assert model is not sd1_model and clip is sd1_clip


def test_base_handles_unaffected(
    sd1: TinyModels, sd1_model: DiffusionModel, sd1_clip: ClipModel, tmp_path: Path
) -> None:
    path, _, _ = kohya_sd1_file(sd1, tmp_path / "style.safetensors")
    unet_before = unet_out(sd1_model)
    (text_before,) = sd1_clip.encode(PROMPT)
    weights_before = {k: v.clone() for k, v in sd1.unet.state_dict().items()}
    modules = [*sd1.unet.modules(), *sd1.text_encoders[0].modules()]
    hooks_before = [list(m._forward_hooks) for m in modules]  # transformers keeps hooks of its own

    model, clip = apply_lora(sd1_model, sd1_clip, load_lora(path), 1.0, 1.0)
    assert clip is not None
    assert max_diff(unet_out(model), unet_before) > 1e-2
    (patched_text,) = clip.encode(PROMPT)
    assert max_diff(patched_text.embeds, text_before.embeds) > 1e-2

    assert torch.equal(unet_out(sd1_model), unet_before)
    (text_after,) = sd1_clip.encode(PROMPT)
    assert torch.equal(text_after.embeds, text_before.embeds)
    assert all(torch.equal(v, weights_before[k]) for k, v in sd1.unet.state_dict().items())
    assert [list(m._forward_hooks) for m in modules] == hooks_before


def test_sdxl_te1_te2_and_ldm_unet(tmp_path: Path) -> None:
    """SDXL: lora_te1_ → CLIP-L, lora_te2_ → bigG (pooled output too), LDM UNet names with 2-deep transformers."""
    xl = build_tiny_models("sdxl", seed=2)
    clip_l, clip_g = xl.text_encoders
    w = LoraWriter(seed=4)
    unet_planned = [
        w.kohya(xl.unet, m, b, alpha=8.0)
        for b, m in [
            (
                "lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k",
                "down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k",
            ),
            ("lora_unet_input_blocks_5_1_proj_in", "down_blocks.1.attentions.1.proj_in"),  # SDXL: Linear
            ("lora_unet_output_blocks_0_0_skip_connection", "up_blocks.0.resnets.0.conv_shortcut"),
            ("lora_unet_label_emb_0_0", "add_embedding.linear_1"),
        ]
    ]
    te1 = [
        w.kohya(
            clip_l,
            "encoder.layers.0.self_attn.v_proj",
            "lora_te1_text_model_encoder_layers_0_self_attn_v_proj",
            alpha=1.0,
        )
    ]
    te2 = [
        w.kohya(clip_g, f"text_model.{m}", f"lora_te2_text_model_{m.replace('.', '_')}", alpha=2.0)
        for m in ("encoder.layers.0.mlp.fc1", "encoder.layers.1.self_attn.q_proj")
    ]
    lora = load_lora(w.save(tmp_path / "xl.safetensors"))
    model = diffusion_model(xl.unet, "sdxl")
    patched, clip = apply_lora(model, ClipModel("sdxl", xl.text_encoders), lora, 0.8, 1.2)
    assert clip is not None

    (got,) = clip.encode(PROMPT)
    (want,) = ClipModel("sdxl", [merged(clip_l, te1, 1.2), merged(clip_g, te2, 1.2)]).encode(PROMPT)
    assert got.pooled is not None and want.pooled is not None
    assert max_diff(got.embeds, want.embeds) <= TOL
    assert max_diff(got.pooled, want.pooled) <= TOL

    def xl_out(m: DiffusionModel) -> Tensor:
        gen = torch.Generator().manual_seed(3)
        x = torch.randn(1, 4, 8, 8, generator=gen)
        cond = CondEntry(torch.randn(1, 5, 96, generator=gen), torch.randn(1, 32, generator=gen))
        with m.active():
            return m.predict(x, torch.tensor([300.0]), [cond], (64, 64))

    expected = xl_out(diffusion_model(merged(xl.unet, unet_planned, 0.8), "sdxl"))
    assert max_diff(xl_out(patched), expected) <= TOL
    assert max_diff(xl_out(model), expected) > 1e-3
