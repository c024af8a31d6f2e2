"""The mask nodes against scipy/numpy/PIL, and their declarations against ComfyUI's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from graph_engine import ExecutionContext, InputError
from nodes import builtin_registry
from nodes.folders import input_dir
from nodes.mask import (
    crop_mask,
    feather_mask,
    grow_mask,
    image_to_mask,
    invert_mask,
    load_image_mask,
    mask_composite,
    mask_to_image,
    solid_mask,
    threshold_mask,
)

CTX = ExecutionContext(node_id=1, title="test")


def rand_mask(b: int = 2, h: int = 9, w: int = 11, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, h, w, generator=torch.Generator().manual_seed(seed))


def widgets(type_name: str) -> list[tuple[str, object]]:
    return [(i.id, i.default) for i in builtin_registry().get(type_name).inputs if i.is_widget]


def test_declarations_match_comfyui() -> None:
    assert widgets("LoadImageMask")[1] == ("channel", "alpha")
    assert widgets("ImageToMask") == [("channel", "red")]
    assert widgets("SolidMask") == [("value", 1.0), ("width", 512), ("height", 512)]
    assert widgets("CropMask") == [("x", 0), ("y", 0), ("width", 512), ("height", 512)]
    assert widgets("GrowMask") == [("expand", 0), ("tapered_corners", True)]
    assert widgets("FeatherMask") == [("left", 0), ("top", 0), ("right", 0), ("bottom", 0)]
    assert widgets("ThresholdMask") == [("value", 0.5)]
    assert widgets("MaskComposite") == [("x", 0), ("y", 0), ("operation", "multiply")]
    for t in ("LoadImageMask", "GrowMask", "MaskComposite", "SolidMask"):
        spec = builtin_registry().get(t)
        assert spec.category == "mask" and spec.description


def test_load_image_mask_channels(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SDGRAPH_INPUT_DIR", str(tmp_path))
    rgba = np.random.default_rng(0).integers(0, 256, size=(6, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(input_dir() / "m.png")
    Image.fromarray(rgba[..., :3], "RGB").save(input_dir() / "rgb.png")
    for k, channel in enumerate(["red", "green", "blue"]):
        (m,) = load_image_mask.execute(CTX, "m.png", channel)
        np.testing.assert_allclose(m[0].numpy(), rgba[..., k] / 255.0, atol=1e-6)
    (alpha,) = load_image_mask.execute(CTX, "m.png", "alpha")
    np.testing.assert_allclose(alpha[0].numpy(), 1 - rgba[..., 3] / 255.0, atol=1e-6)
    (none,) = load_image_mask.execute(CTX, "rgb.png", "alpha")
    assert none.shape == (1, 6, 7) and none.max() == 0
    with pytest.raises(InputError) as err:
        load_image_mask.execute(CTX, "../escape.png", "red")
    assert err.value.input_id == "image"


def test_image_mask_round_trip() -> None:
    img = torch.rand(2, 5, 6, 3)
    (m,) = image_to_mask.execute(CTX, img, "green")
    torch.testing.assert_close(m, img[..., 1])
    (back,) = mask_to_image.execute(CTX, m)
    assert back.shape == (2, 5, 6, 3)
    torch.testing.assert_close(back[..., 2], img[..., 1])
    with pytest.raises(InputError) as err:
        image_to_mask.execute(CTX, img, "alpha")
    assert err.value.input_id == "channel"


def test_solid_invert_threshold() -> None:
    (s,) = solid_mask.execute(CTX, 0.25, 7, 3)
    assert s.shape == (1, 3, 7) and s.eq(0.25).all()
    m = rand_mask()
    (inv,) = invert_mask.execute(CTX, m)
    torch.testing.assert_close(inv, 1 - m)
    (t,) = threshold_mask.execute(CTX, m, 0.3)
    np.testing.assert_array_equal(t.numpy(), (m.numpy() > 0.3).astype(np.float32))
    (single,) = invert_mask.execute(CTX, m[0])
    assert single.shape == (1, 9, 11)


def test_crop_mask() -> None:
    m = rand_mask()
    (c,) = crop_mask.execute(CTX, m, 2, 3, 4, 100)
    torch.testing.assert_close(c, m[:, 3:, 2:6])
    with pytest.raises(InputError) as err:
        crop_mask.execute(CTX, m, 0, 9, 4, 4)
    assert err.value.input_id == "y"


@pytest.mark.parametrize("expand", [3, -2, 0])
@pytest.mark.parametrize("tapered", [True, False])
def test_grow_mask_matches_scipy(expand: int, tapered: bool) -> None:
    m = (rand_mask(2, 15, 17, 3) > 0.8).float() * rand_mask(2, 15, 17, 4)
    (out,) = grow_mask.execute(CTX, m, expand, tapered)
    c = 0 if tapered else 1
    kernel = np.array([[c, 1, c], [1, 1, 1], [c, 1, c]])
    for b in range(2):
        ref = m[b].numpy()
        for _ in range(abs(expand)):
            ref = (ndimage.grey_dilation if expand > 0 else ndimage.grey_erosion)(ref, footprint=kernel)
        np.testing.assert_allclose(out[b].numpy(), ref, atol=1e-7)


def test_feather_mask_by_hand() -> None:
    m = torch.ones(1, 6, 8)
    (f,) = feather_mask.execute(CTX, m, 2, 0, 4, 3)
    cols = np.array([1 / 2, 1, 1, 1, 1, 3 / 4, 2 / 4, 1 / 4])
    rows = np.array([1, 1, 1, 1, 2 / 3, 1 / 3])  # the outermost row gets 1/3
    np.testing.assert_allclose(f[0].numpy(), rows[:, None] * cols[None, :], atol=1e-6)


@pytest.mark.parametrize("op", ["multiply", "add", "subtract", "and", "or", "xor"])
def test_mask_composite(op: str) -> None:
    dest, src = rand_mask(1, 6, 8, 1), rand_mask(1, 4, 4, 2)
    (out,) = mask_composite.execute(CTX, dest, src, 6, 3, op)
    d = dest.numpy().copy()
    region = d[:, 3:7, 6:8]
    s = src.numpy()[:, :3, :2]
    a, b = region.round().astype(bool), s.round().astype(bool)
    r = {
        "multiply": region * s,
        "add": region + s,
        "subtract": region - s,
        "and": (a & b).astype(np.float32),
        "or": (a | b).astype(np.float32),
        "xor": (a ^ b).astype(np.float32),
    }[op]
    d[:, 3:7, 6:8] = r
    np.testing.assert_allclose(out.numpy(), np.clip(d, 0, 1), atol=1e-7)
    assert dest.numpy().tolist() == rand_mask(1, 6, 8, 1).numpy().tolist()  # input untouched
