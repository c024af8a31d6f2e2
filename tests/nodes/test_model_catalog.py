"""The model catalog: which CLIPLoader type a text encoder needs, and probes cached by file identity."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from nodes.diffusion.model_paths import ModelFolders
from nodes.diffusion.text.encoder_files import CLIP_G, CLIP_L, QWEN3, T5XXL
from nodes.model_catalog import ProbeCache, clip_type_for, list_files, loader_for


def test_clip_loader_types_follow_the_encoders_in_the_file() -> None:
    assert clip_type_for([CLIP_L]) == "stable_diffusion"
    assert clip_type_for([CLIP_G]) == "sd3"
    assert clip_type_for([T5XXL]) == "sd3"
    assert clip_type_for([QWEN3]) == "lumina2"
    assert clip_type_for(["clip"], "my_clip_g_fp16.safetensors") == "sd3"
    assert clip_type_for(["clip"], "clip_vit.safetensors") == "stable_diffusion"


def _vae(path: Path, channels: int) -> None:
    save_file({"decoder.conv_in.weight": torch.zeros(4, channels, 3, 3)}, str(path))


def test_a_probe_is_cached_until_the_file_changes(tmp_path: Path) -> None:
    (tmp_path / "models" / "vae").mkdir(parents=True)
    path = tmp_path / "models" / "vae" / "v.safetensors"
    _vae(path, 4)
    folders = ModelFolders.default(tmp_path)
    cache = ProbeCache()
    (file,) = list_files(folders, ["vae"])["vae"]
    assert cache.get(file) is None
    assert cache.probe(file).family == "4-channel VAE"
    assert cache.get(file) is not None

    _vae(path, 16)
    os.utime(path, ns=(file.mtime_ns + 10**9, file.mtime_ns + 10**9))  # a later write, even on a coarse clock
    (replaced,) = list_files(folders, ["vae"])["vae"]
    assert replaced.key != file.key and cache.get(replaced) is None
    assert cache.probe(replaced).family == "16-channel VAE"
    assert loader_for(replaced) == ("VAELoader", {"vae_name": "v.safetensors"})


def test_upscale_models_are_a_kind_and_a_misplaced_checkpoint_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "upscale_models"
    folder.mkdir(parents=True)
    save_file({"conv_first.weight": torch.zeros(16, 3, 3, 3)}, str(folder / "4x-UltraSharp.safetensors"))
    torch.save({"params_ema": {"conv_first.weight": torch.zeros(16, 3, 3, 3)}}, str(folder / "RealESRGAN_x4plus.pth"))
    sd1_keys = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3)}
    sd1_keys["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = torch.zeros(8, 768)
    save_file(sd1_keys, str(folder / "oops.safetensors"))
    files = {f.name: f for f in list_files(ModelFolders.default(tmp_path), ["upscale_models"])["upscale_models"]}
    assert sorted(files) == ["4x-UltraSharp.safetensors", "RealESRGAN_x4plus.pth", "oops.safetensors"]
    cache = ProbeCache()
    assert cache.probe(files["4x-UltraSharp.safetensors"]).family == "upscale model"
    assert cache.probe(files["RealESRGAN_x4plus.pth"]).family == "upscale model"  # weights-only, not refused
    misplaced = cache.probe(files["oops.safetensors"])
    assert misplaced.family == "not an upscale model" and "models/checkpoints" in misplaced.detail
    assert loader_for(files["RealESRGAN_x4plus.pth"]) == ("UpscaleModelLoader", {"model_name": "RealESRGAN_x4plus.pth"})
