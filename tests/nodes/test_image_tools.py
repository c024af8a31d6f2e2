"""The image toolbox nodes against numpy/PIL computed by hand, and their declarations against ComfyUI's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graph_engine import ExecutionContext, InputError
from nodes import builtin_registry
from nodes.image_tools import (
    image_batch,
    image_blend,
    image_composite_masked,
    image_crop,
    image_invert,
    image_pad_for_outpaint,
    image_scale_by,
    image_scale_to_total_pixels,
)

CTX = ExecutionContext(node_id=1, title="test")


def rand_image(b: int = 2, h: int = 12, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, h, w, 3, generator=torch.Generator().manual_seed(seed))


def widgets(type_name: str) -> list[tuple[str, object]]:
    spec = builtin_registry().get(type_name)
    return [(i.id, i.default) for i in spec.inputs if i.is_widget]


def test_declarations_match_comfyui_widget_order_and_defaults() -> None:
    """Positional widget values of a ComfyUI file map onto these ids in this order."""
    assert widgets("ImageScaleBy") == [("upscale_method", "nearest-exact"), ("scale_by", 1.0)]
    assert widgets("ImageScaleToTotalPixels")[:2] == [("upscale_method", "nearest-exact"), ("megapixels", 1.0)]
    assert widgets("ImageCrop") == [("width", 512), ("height", 512), ("x", 0), ("y", 0)]
    assert widgets("ImageBlend") == [("blend_factor", 0.5), ("blend_mode", "normal")]
    assert widgets("ImageCompositeMasked") == [("x", 0), ("y", 0), ("resize_source", False)]
    assert widgets("ImagePadForOutpaint") == [
        ("left", 0),
        ("top", 0),
        ("right", 0),
        ("bottom", 0),
        ("feathering", 40),
    ]
    reg = builtin_registry()
    assert reg.get("ImagePadForOutpaint").category == "image"
    assert reg.get("ImageBlend").category == "image/postprocessing"
    assert reg.get("ImageScaleBy").category == "image/upscaling"
    for t in ("ImageScaleBy", "ImageCrop", "ImageInvert", "ImageBatch", "ImageCompositeMasked"):
        assert reg.get(t).description


def test_scale_by_matches_torch_bilinear_size_and_values() -> None:
    img = rand_image()
    (out,) = image_scale_by.execute(CTX, img, "bilinear", 1.5)
    assert out.shape == (2, 18, 24, 3)
    ref = torch.nn.functional.interpolate(img.permute(0, 3, 1, 2), size=(18, 24), mode="bilinear")
    torch.testing.assert_close(out, ref.permute(0, 2, 3, 1).clamp(0, 1))
    (near,) = image_scale_by.execute(CTX, img, "nearest-exact", 2.0)
    np.testing.assert_array_equal(near.numpy(), img.numpy().repeat(2, axis=1).repeat(2, axis=2))


def test_lanczos_is_pils() -> None:
    from PIL import Image

    img = (torch.arange(12 * 16 * 3).reshape(1, 12, 16, 3) % 251).float() / 255.0
    (out,) = image_scale_by.execute(CTX, img, "lanczos", 2.5)
    pil = Image.fromarray((img[0].numpy() * 255).round().astype(np.uint8)).resize((40, 30), Image.Resampling.LANCZOS)
    np.testing.assert_allclose(out[0].numpy(), np.asarray(pil, dtype=np.float32) / 255.0, atol=1e-6)


def test_scale_to_total_pixels_keeps_aspect() -> None:
    img = rand_image(1, 30, 60)
    (out,) = image_scale_to_total_pixels.execute(CTX, img, "area", 0.01, 1)
    # sqrt(0.01·1024²/1800) = 2.4136…: 60·s = 144.8 → 145, 30·s = 72.4 → 72
    assert out.shape == (1, 72, 145, 3)
    (stepped,) = image_scale_to_total_pixels.execute(CTX, img, "area", 0.01, 8)
    assert stepped.shape == (1, 72, 144, 3)


def test_crop_is_a_slice_and_cut_at_the_edge() -> None:
    img = rand_image()
    (out,) = image_crop.execute(CTX, img, 5, 4, 3, 2)
    torch.testing.assert_close(out, img[:, 2:6, 3:8])
    (edge,) = image_crop.execute(CTX, img, 512, 512, 10, 8)
    assert edge.shape == (2, 4, 6, 3)
    with pytest.raises(InputError) as err:
        image_crop.execute(CTX, img, 4, 4, 16, 0)
    assert err.value.input_id == "x" and "outside" in err.value.message
    with pytest.raises(InputError) as err:
        image_crop.execute(CTX, img, 4, 4, 0, 12)
    assert err.value.input_id == "y"


def test_invert() -> None:
    img = rand_image()
    (out,) = image_invert.execute(CTX, img)
    torch.testing.assert_close(out, 1 - img)


def _blend_reference(a: np.ndarray, b: np.ndarray, mode: str) -> np.ndarray:
    """The layer formulas written out per pixel (W3C compositing for soft light)."""
    out = np.empty_like(a)
    for idx in np.ndindex(a.shape):
        x, y = float(a[idx]), float(b[idx])
        if mode == "normal":
            v = y
        elif mode == "multiply":
            v = x * y
        elif mode == "screen":
            v = x + y - x * y
        elif mode == "overlay":
            v = 2 * x * y if x <= 0.5 else 1 - 2 * (1 - x) * (1 - y)
        elif mode == "soft_light":
            if y <= 0.5:
                v = x - (1 - 2 * y) * x * (1 - x)
            else:
                d = ((16 * x - 12) * x + 4) * x if x <= 0.25 else np.sqrt(x)
                v = x + (2 * y - 1) * (d - x)
        else:
            v = x - y
        out[idx] = v
    return out


@pytest.mark.parametrize("mode", ["normal", "multiply", "screen", "overlay", "soft_light", "difference"])
def test_blend_modes(mode: str) -> None:
    a, b = rand_image(1, 4, 5, 1), rand_image(1, 4, 5, 2)
    (out,) = image_blend.execute(CTX, a, b, 0.7, mode)
    mixed = _blend_reference(a.numpy(), b.numpy(), mode)
    expected = np.clip(a.numpy() * 0.3 + mixed * 0.7, 0, 1)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)


def test_blend_resizes_the_second_image() -> None:
    (out,) = image_blend.execute(CTX, rand_image(1, 8, 8), rand_image(1, 16, 16), 1.0, "normal")
    assert out.shape == (1, 8, 8, 3)


def test_composite_masked_by_hand() -> None:
    dest = torch.zeros(1, 8, 10, 3)
    src = torch.ones(1, 4, 4, 3)
    mask = torch.zeros(4, 4)
    mask[:, 2:] = 0.5
    (out,) = image_composite_masked.execute(CTX, dest, src, 8, 2, False, mask)
    expected = np.zeros((1, 8, 10, 3), np.float32)
    # the source starts at column 8: only its first 2 columns fit, where the mask is 0; cut at the edge
    np.testing.assert_array_equal(out.numpy(), expected)
    (out,) = image_composite_masked.execute(CTX, dest, src, 6, 2, False, mask)
    expected[:, 2:6, 8:10] = 0.5
    np.testing.assert_array_equal(out.numpy(), expected)
    (whole,) = image_composite_masked.execute(CTX, dest, src, 0, 0, False)
    assert whole[0, :4, :4].min() == 1 and whole[0, 4:].max() == 0
    (resized,) = image_composite_masked.execute(CTX, dest, src, 0, 0, True)
    assert resized.shape == dest.shape and resized.min() == pytest.approx(1.0)
    with pytest.raises(InputError) as err:
        image_composite_masked.execute(CTX, dest, src, 0, 0, False, torch.zeros(1, 4, 8))
    assert err.value.input_id == "mask" and "same shape" in err.value.message


def test_pad_for_outpaint_canvas_and_feathered_mask() -> None:
    img = rand_image(1, 10, 12)
    (out, mask) = image_pad_for_outpaint.execute(CTX, img, 8, 0, 0, 4, 3)
    assert out.shape == (1, 14, 20, 3) and mask.shape == (1, 14, 20)
    torch.testing.assert_close(out[:, :10, 8:], img)
    assert out[:, :, :8].eq(0.5).all() and out[:, 10:].eq(0.5).all()
    m = mask[0].numpy()
    assert (m[:, :8] == 1).all() and (m[10:] == 1).all()
    # inside the old image, by the formula: d = distance to the padded sides (left and bottom)
    for i in range(10):
        for j in range(12):
            d = min(j, 10 - i)
            expected = ((3 - d) / 3) ** 2 if d < 3 else 0.0
            assert m[i, 8 + j] == pytest.approx(expected), (i, j)
    (_, hard) = image_pad_for_outpaint.execute(CTX, img, 8, 0, 0, 0, 0)
    assert hard[0, :, 8:].max() == 0 and hard[0, :, :8].min() == 1


def test_batch_resizes_the_second() -> None:
    (out,) = image_batch.execute(CTX, rand_image(1, 8, 8), rand_image(2, 16, 16))
    assert out.shape == (3, 8, 8, 3)
    with pytest.raises(InputError) as err:
        image_batch.execute(CTX, rand_image(1, 8, 8), torch.rand(1, 8, 8, 4))
    assert err.value.input_id == "image2"
