"""A session-wide model root of tiny checkpoints in the real folder layout (`checkpoints/`, `vae/`,
`loras/`), registered as an extra model root so nodes find them by name like real models."""

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
