"""The LDM-layout writer: key layout details, and files that stock diffusers reads back identically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from nodes.diffusion.checkpoint.files import read_safetensors_header
from nodes.diffusion.checkpoint.ldm_layout import openclip_to_ldm, unet_to_ldm, vae_to_ldm
from tests.support.tiny_sd import build_tiny_models


def test_vae_decoder_levels_are_reversed_and_attention_is_1x1_conv() -> None:
    ref = build_tiny_models("sd1")
    ldm = vae_to_ldm(ref.vae.state_dict(), ref.vae.config)
    sd = ref.vae.state_dict()
    # diffusers up_blocks[0] is the lowest resolution = LDM decoder.up.3 for a 4-level VAE.
    for i in range(4):
        assert torch.equal(
            ldm[f"first_stage_model.decoder.up.{3 - i}.block.0.conv1.weight"],
            sd[f"decoder.up_blocks.{i}.resnets.0.conv1.weight"],
        )
    assert "first_stage_model.decoder.up.3.upsample.conv.weight" in ldm
    assert "first_stage_model.decoder.up.0.upsample.conv.weight" not in ldm
    q = ldm["first_stage_model.encoder.mid.attn_1.q.weight"]
    assert q.shape == (32, 32, 1, 1)
    assert torch.equal(q[:, :, 0, 0], sd["encoder.mid_block.attentions.0.to_q.weight"])
    assert ldm["first_stage_model.encoder.mid.attn_1.proj_out.weight"].ndim == 4
    assert ldm["first_stage_model.encoder.mid.attn_1.norm.weight"].ndim == 1


def test_openclip_packs_qkv_and_transposes_the_projection() -> None:
    ref = build_tiny_models("sdxl")
    sd = ref.text_encoders[1].state_dict()
    ldm = openclip_to_ldm(sd, "p.")
    packed = ldm["p.transformer.resblocks.1.attn.in_proj_weight"]
    q, k, v = (sd[f"text_model.encoder.layers.1.self_attn.{n}_proj.weight"] for n in "qkv")
    assert torch.equal(packed, torch.cat([q, k, v]))
    assert torch.equal(ldm["p.text_projection"], sd["text_projection.weight"].T)
    assert ldm["p.positional_embedding"].shape == (77, 64)


def test_sd2_file_has_the_unused_penultimate_block(tiny_sd2_v_file: Path) -> None:
    names = read_safetensors_header(tiny_sd2_v_file).tensors
    assert "cond_stage_model.model.transformer.resblocks.2.attn.in_proj_weight" in names  # 2 used + 1
    assert "cond_stage_model.model.transformer.resblocks.3.attn.in_proj_weight" not in names


def test_sdxl_label_emb_and_upsampler_positions() -> None:
    ref = build_tiny_models("sdxl")
    ldm = unet_to_ldm(ref.unet.state_dict(), ref.unet.config)
    p = "model.diffusion_model."
    assert ldm[p + "label_emb.0.0.weight"].shape == (ref.unet.config.time_embedding_dim or 128, 80)
    # Up block 0 has attention: its upsampler follows it at index 2 of the last output block of the level.
    assert p + "output_blocks.2.2.conv.weight" in ldm
    assert p + "input_blocks.3.0.op.weight" in ldm  # 2 resnets per level, then the downsampler


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="no place"):
        unet_to_ldm({"mystery.weight": torch.zeros(1)}, {"layers_per_block": 1, "up_block_types": []})


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_stock_diffusers_from_single_file_reads_our_files(tmp_path: Path, tiny_checkpoint, family: str) -> None:
    """An independent reader: diffusers' own from_single_file, given a local config dir, offline."""
    ref = build_tiny_models(family)
    config_dir = tmp_path / "cfg"
    for name, model in [("unet", ref.unet), ("vae", ref.vae)]:
        (config_dir / name).mkdir(parents=True)
        (config_dir / name / "config.json").write_text(json.dumps(dict(model.config)))
    path = tiny_checkpoint(family)
    unet = UNet2DConditionModel.from_single_file(path, config=str(config_dir), subfolder="unet", local_files_only=True)
    vae = AutoencoderKL.from_single_file(path, config=str(config_dir), subfolder="vae", local_files_only=True)
    for reference, loaded in [(ref.unet, unet), (ref.vae, vae)]:
        want, got = reference.state_dict(), loaded.state_dict()
        assert set(want) == set(got)
        assert all(torch.equal(want[k], got[k]) for k in want)
