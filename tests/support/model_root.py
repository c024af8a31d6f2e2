"""A session-wide model root of tiny checkpoints in the real folder layout (`checkpoints/`, `vae/`,
`loras/`, `diffusion_models/`, `text_encoders/`, `controlnet/`, `upscale_models/`), registered as an extra
model root so nodes find them by name like real models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nodes.folders
from tests.support.tiny_sd import make_tiny

TINY_NAMES = {
    "sd1": "tiny_sd1.safetensors",
    "sd1_inpaint": "tiny_sd1_inpaint.safetensors",
    "sd2": "tiny_sd2_v.safetensors",
    "sdxl": "tiny_sdxl.safetensors",
}
# A ControlNet copied from the tiny SD1 UNet, in the original (lllyasviel) single-file layout.
TINY_CONTROLNET = "tiny_sd1_controlnet.safetensors"
# A 4x ESRGAN (4 blocks, 16 features) in upscale_models/, when spandrel is installed.
TINY_UPSCALE = "tiny_esrgan_x4.safetensors"


@pytest.fixture(scope="session")
def tiny_model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_models")
    ckpts = root / "checkpoints"
    ckpts.mkdir()
    for key, filename in TINY_NAMES.items():
        family = key.split("_")[0]
        make_tiny(family, ckpts, name=filename.removesuffix(".safetensors"), inpainting=key.endswith("inpaint"))
    (root / "vae").mkdir()
    (root / "loras").mkdir()
    write_tiny_controlnet(root / "controlnet" / TINY_CONTROLNET)
    write_tiny_upscale_model(root / "upscale_models" / TINY_UPSCALE)
    return root


def write_tiny_upscale_model(path: Path) -> Path | None:
    """A seeded 4x ESRGAN in the RealESRGAN layout; nothing when spandrel is missing (its tests skip)."""
    from nodes.diffusion.spandrel_import import spandrel_available

    if not spandrel_available():
        return None
    from tests.support.tiny_upscale import build_esrgan, realesrgan_state, save_safetensors

    return save_safetensors(realesrgan_state(build_esrgan(seed=4)), path)


def write_tiny_controlnet(path: Path) -> Path:
    """A seeded ControlNet for the tiny SD1 checkpoint (same UNet architecture)."""
    from tests.support.tiny_controlnet import build_tiny_controlnet, write_controlnet_single_file
    from tests.support.tiny_sd import build_tiny_models

    return write_controlnet_single_file(build_tiny_controlnet(build_tiny_models("sd1").unet, seed=1), path)


# Tiny flow-matching models in ComfyUI's layout, under their own names; workflows' real names (the keys)
# are mapped onto them with the CLI's --model-alias code.
FLOW_FILES = {
    "flux1-dev.safetensors": "tiny_flux1_dev.safetensors",
    "flux1-schnell.safetensors": "tiny_flux1_schnell.safetensors",
    "z_image_turbo_bf16.safetensors": "tiny_z_image_turbo.safetensors",
    "sd3.5_medium.safetensors": "tiny_sd3.5_medium.safetensors",
    "t5xxl_fp16.safetensors": "tiny_t5xxl.safetensors",
    "clip_l.safetensors": "tiny_clip_l.safetensors",
    "clip_g.safetensors": "tiny_clip_g.safetensors",
    "qwen_3_4b.safetensors": "tiny_qwen3.safetensors",
    "ae.safetensors": "tiny_ae.safetensors",
}


def write_flow_files(root: Path) -> None:
    """FLUX.1 dev/schnell and Z-Image transformers (bare original names, bf16 like the releases), an SD3.5
    checkpoint with its VAE but no text encoders (like the official single file), CLIP-L, CLIP-G, T5 and
    Qwen3 text encoders and the 16-channel VAE: tiny seeded models in the layouts users have."""
    import torch

    from nodes.diffusion.text.encoder_files import CLIP_G, CLIP_L, QWEN3, T5XXL
    from tests.support import tiny_flow as tf
    from tests.support.tiny_text import save_encoder, tiny_encoder

    for kind in ("checkpoints", "diffusion_models", "text_encoders", "vae"):
        (root / kind).mkdir(exist_ok=True)
    name = FLOW_FILES
    models, encoders, bf16 = root / "diffusion_models", root / "text_encoders", torch.bfloat16
    tf.write_file(models / name["flux1-dev.safetensors"], tf.flux_to_original(tf.tiny_flux(1)), dtype=bf16)
    schnell = tf.flux_to_original(tf.tiny_flux(2, guidance=False))
    tf.write_file(models / name["flux1-schnell.safetensors"], schnell, dtype=bf16)
    z_image = tf.z_image_to_original(tf.tiny_z_image(3))
    tf.write_file(models / name["z_image_turbo_bf16.safetensors"], z_image, dtype=bf16)
    tf.write_sd35_all_in_one(root / "checkpoints" / name["sd3.5_medium.safetensors"], seed=4, text_encoders=False)
    tf.write_file(root / "vae" / name["ae.safetensors"], tf.vae16_to_original(tf.tiny_vae16(5)))
    for seed, (role, real) in enumerate(
        [(CLIP_L, "clip_l.safetensors"), (CLIP_G, "clip_g.safetensors"), (T5XXL, "t5xxl_fp16.safetensors"),
         (QWEN3, "qwen_3_4b.safetensors")]
    ):  # fmt: skip
        save_encoder(tiny_encoder(role, 6 + seed), role, encoders / name[real])


@pytest.fixture(scope="session")
def tiny_flow_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_flow_models")
    write_flow_files(root)
    return root


@pytest.fixture
def tiny_models(tiny_model_root: Path) -> Iterator[Path]:
    """Makes the tiny checkpoints visible to the nodes for one test."""
    nodes.folders.configure(extra_roots=[str(tiny_model_root)])
    try:
        yield tiny_model_root
    finally:
        nodes.folders.configure()


def write_test_image(path: Path, size: tuple[int, int] = (64, 64), *, hole: bool = False) -> Path:
    """A smooth colour gradient; with `hole`, a transparent square in the middle (an inpainting mask)."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    rgba = np.zeros((h, w, 4), dtype=np.uint8)
    rgba[..., 0] = (x * 255 // max(w - 1, 1)).astype(np.uint8)
    rgba[..., 1] = (y * 255 // max(h - 1, 1)).astype(np.uint8)
    rgba[..., 2] = 128
    rgba[..., 3] = 255
    if hole:
        rgba[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4, 3] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba, "RGBA").save(path)
    return path
