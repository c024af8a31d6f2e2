"""Save Image's PNG compression level comes from the settings; the embedded workflow does not change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from app.settings import Settings
from graph_engine import ExecutionContext
from graph_engine.serialization import PNG_WORKFLOW_KEY
from nodes import builtin_registry
from nodes.image import DEFAULT_PNG_LEVEL, png_level

WORKFLOW = {"nodes": [{"id": 1, "type": "SaveImage"}], "links": []}


def smooth_image() -> torch.Tensor:
    """A gradient with a little noise: compressible, so zlib levels give different sizes."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:128, 0:128].astype(np.float32) / 128
    rgb = np.stack([x, y, (x + y) / 2], -1) + rng.normal(0, 0.01, (128, 128, 3))
    return torch.from_numpy(np.clip(rgb, 0, 1).astype(np.float32))[None]


def save(tmp_path: Path, settings: dict[str, Any], prefix: str) -> Path:
    spec = builtin_registry().get("SaveImage")
    assert spec is not None
    ctx = ExecutionContext(node_id=1, title="Save Image", output_dir=tmp_path, workflow=WORKFLOW, settings=settings)
    out = spec.execute(ctx, images=smooth_image(), filename_prefix=prefix)
    return Path(out.ui["images"][0]["path"])


def test_the_setting_picks_the_level_and_the_metadata_and_pixels_stay_the_same(tmp_path: Path) -> None:
    fastest = save(tmp_path, {"png_compress_level": 0}, "fast")
    smallest = save(tmp_path, {"settings": Settings(png_compress_level=9)}, "small")
    default = save(tmp_path, {}, "default")
    four = save(tmp_path, {"png_compress_level": 4}, "four")
    assert fastest.stat().st_size > 1.5 * smallest.stat().st_size  # 0 stores, 9 compresses
    assert fastest.stat().st_size > 1.5 * default.stat().st_size
    assert default.read_bytes() == four.read_bytes() != smallest.read_bytes()  # no setting: level 4
    images = [Image.open(p) for p in (fastest, smallest, default)]
    for img in images:
        img.load()
        assert json.loads(img.text[PNG_WORKFLOW_KEY]) == WORKFLOW
        assert set(img.text) == {PNG_WORKFLOW_KEY}
    first = np.asarray(images[0])
    for img in images[1:]:
        np.testing.assert_array_equal(np.asarray(img), first)  # lossless at every level


@pytest.mark.parametrize("value", [-1, 10, "9", 2.0, True, None])
def test_an_unusable_setting_falls_back_to_the_default(value: Any) -> None:
    ctx = ExecutionContext(node_id=1, title="Save Image", settings={"png_compress_level": value})
    assert png_level(ctx) == DEFAULT_PNG_LEVEL == Settings().png_compress_level


def test_settings_file_round_trips_the_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDGRAPH_HOME", str(tmp_path))
    Settings(png_compress_level=1).save()
    assert Settings.load().png_compress_level == 1
