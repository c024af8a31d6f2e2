"""Pixel and mask arithmetic behind the image and mask toolbox nodes (ComfyUI's semantics).

IMAGE is ``float32 [B, H, W, C]`` in 0..1 and MASK ``[B, H, W]`` (a single ``[H, W]`` mask is accepted
and treated as a batch of one), as ComfyUI passes them. Functions here are pure: they never modify
their inputs, because the graph caches and shares every value.

Errors are ``ValueError`` with a message for the person who wired the graph; the nodes turn them into
an ``InputError`` naming the input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nodes.diffusion.resize import resize_image

BLEND_MODES = ("normal", "multiply", "screen", "overlay", "soft_light", "difference")
MASK_OPERATIONS = ("multiply", "add", "subtract", "and", "or", "xor")


def as_mask_batch(mask: Tensor) -> Tensor:
    """[H, W] or [B, H, W] (or ComfyUI's occasional [B, 1, H, W]) → float [B, H, W]."""
    return mask.reshape(-1, mask.shape[-2], mask.shape[-1]).float()


def scaled_size(w: int, h: int, scale: float) -> tuple[int, int]:
    """ImageScaleBy / LatentUpscaleBy: each side times ``scale``, rounded, at least 1."""
    return max(1, round(w * scale)), max(1, round(h * scale))


def total_pixels_size(w: int, h: int, megapixels: float, steps: int = 1) -> tuple[int, int]:
    """ImageScaleToTotalPixels: the aspect ratio kept, the area ≈ ``megapixels``·1024², each side rounded
    to a multiple of ``steps``."""
    scale = math.sqrt(megapixels * 1024 * 1024 / (w * h))
    return max(steps, round(w * scale / steps) * steps), max(steps, round(h * scale / steps) * steps)


def fit_mask(mask: Tensor, height: int, width: int, what: str = "the image") -> Tensor:
    """A [B, H, W] mask on a ``height``×``width`` grid: resized (bilinear) when only its scale differs,
    refused when its shape differs — a 2:1 mask stretched over a square image is a wiring mistake."""
    m = as_mask_batch(mask)
    mh, mw = m.shape[-2:]
    if (mh, mw) == (height, width):
        return m
    if abs(mw / mh - width / height) > 0.01 * (width / height):
        raise ValueError(f"the mask is {mw}x{mh} but {what} is {width}x{height}; they must have the same shape")
    return F.interpolate(m[:, None], size=(height, width), mode="bilinear")[:, 0]


def blend(image1: Tensor, image2: Tensor, factor: float, mode: str) -> Tensor:
    """ImageBlend: ``image1·(1−factor) + mode(image1, image2)·factor``, clamped to 0..1; ``image2`` is
    resized (bicubic, centre crop) to ``image1``'s size when they differ. The modes are the usual layer
    formulas with ``image1`` the base layer: soft_light is the W3C formula, difference is ``a − b``
    (negative values clamp to 0, as in ComfyUI)."""
    if image2.shape[1:3] != image1.shape[1:3]:
        image2 = resize_image(image2, image1.shape[2], image1.shape[1], "bicubic", "center")
    a, b = image1.float(), image2.float()
    if b.shape[-1] != a.shape[-1]:
        b = b[..., : a.shape[-1]] if b.shape[-1] > a.shape[-1] else b[..., :1].expand_as(a)
    if mode == "normal":
        mixed = b
    elif mode == "multiply":
        mixed = a * b
    elif mode == "screen":
        mixed = 1 - (1 - a) * (1 - b)
    elif mode == "overlay":
        mixed = torch.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
    elif mode == "soft_light":
        g = torch.where(a <= 0.25, ((16 * a - 12) * a + 4) * a, torch.sqrt(a))
        mixed = torch.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (g - a))
    elif mode == "difference":
        mixed = a - b
    else:
        raise ValueError(f"unknown blend mode {mode!r}")
    return (a * (1 - factor) + mixed * factor).clamp(0, 1)


def composite(destination: Tensor, source: Tensor, x: int, y: int, mask: Tensor | None, resize_source: bool) -> Tensor:
    """ImageCompositeMasked: ``source`` pasted onto ``destination`` with its top-left corner at (x, y),
    through ``mask`` (1 = source, fitted to the source's size), cut off at the destination's edges."""
    dest = destination.float().clone()
    b, dh, dw, c = dest.shape
    src = source.float()
    if resize_source:
        src = resize_image(src, dw, dh, "bilinear", "disabled")
    if src.shape[-1] != c:
        src = src[..., :c] if src.shape[-1] > c else src[..., :1].expand(-1, -1, -1, c)
    sh, sw = src.shape[1:3]
    if x >= dw or y >= dh:
        return dest
    vh, vw = min(sh, dh - y), min(sw, dw - x)
    m = torch.ones(1, sh, sw) if mask is None else fit_mask(mask, sh, sw, "the source image")
    src = _to_batch(src, b)[:, :vh, :vw]
    m = _to_batch(m, b)[:, :vh, :vw, None]
    region = dest[:, y : y + vh, x : x + vw]
    dest[:, y : y + vh, x : x + vw] = src * m + region * (1 - m)
    return dest


def _to_batch(t: Tensor, b: int) -> Tensor:
    """Repeat (cyclically) or cut the batch to ``b`` items, as ComfyUI's resize_to_batch_size does for masks."""
    if t.shape[0] == b:
        return t
    reps = -(-b // t.shape[0])
    return t.repeat(reps, *([1] * (t.ndim - 1)))[:b]


def pad_for_outpaint(
    image: Tensor, left: int, top: int, right: int, bottom: int, feathering: int
) -> tuple[Tensor, Tensor]:
    """ImagePadForOutpaint: the image on a grey (0.5) canvas grown by the given margins, and a mask that
    is 1 on the new margins and, with ``feathering`` > 0, rises as (1 − d/feathering)² inside the old image
    within ``feathering`` pixels of a padded side (d = distance to that side; unpadded sides do not
    count), so the repaint blends into the original."""
    b, h, w, c = image.shape
    out = torch.full((b, h + top + bottom, w + left + right, c), 0.5, dtype=torch.float32)
    out[:, top : top + h, left : left + w] = image.float()
    mask = torch.ones(h + top + bottom, w + left + right, dtype=torch.float32)
    inner = torch.zeros(h, w, dtype=torch.float32)
    if feathering > 0 and feathering * 2 < h and feathering * 2 < w:
        i = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
        j = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
        big_h, big_w = torch.full_like(i, float(h)), torch.full_like(j, float(w))
        d = torch.minimum(
            torch.minimum(i if top else big_h, (h - i) if bottom else big_h),
            torch.minimum(j if left else big_w, (w - j) if right else big_w),
        )
        v = (feathering - d) / feathering
        inner = torch.where(d < feathering, v * v, inner)
    mask[top : top + h, left : left + w] = inner
    return out, mask[None]


def batch_images(image1: Tensor, image2: Tensor) -> Tensor:
    """ImageBatch: ``image2`` appended to ``image1``, resized (bilinear, centre crop) to its size if needed."""
    if image2.shape[1:3] != image1.shape[1:3]:
        image2 = resize_image(image2, image1.shape[2], image1.shape[1], "bilinear", "center")
    if image2.shape[-1] != image1.shape[-1]:
        raise ValueError(f"image2 has {image2.shape[-1]} channels but image1 has {image1.shape[-1]}")
    return torch.cat([image1.float(), image2.float()], dim=0)


def grow(mask: Tensor, expand: int, tapered_corners: bool) -> Tensor:
    """GrowMask: ``|expand|`` grey dilations (erosions when negative) with a 3×3 footprint — a cross when
    ``tapered_corners`` (the corners grow diagonally slower), the full square otherwise. Edges repeat
    the border value, which is what scipy's default ``reflect`` mode gives a 3×3 footprint."""
    m = as_mask_batch(mask)[:, None]
    for _ in range(abs(expand)):
        p = F.pad(m, (1, 1, 1, 1), mode="replicate")
        h, w = m.shape[-2:]
        shifts = [(dy, dx) for dy in range(3) for dx in range(3)]
        if tapered_corners:
            shifts = [(dy, dx) for dy, dx in shifts if dy == 1 or dx == 1]
        stack = torch.stack([p[..., dy : dy + h, dx : dx + w] for dy, dx in shifts])
        m = stack.amax(0) if expand > 0 else stack.amin(0)
    return m[:, 0]


def feather(mask: Tensor, left: int, top: int, right: int, bottom: int) -> Tensor:
    """FeatherMask: fade the mask linearly to the given edges — the k-th column (row) from a feathered
    edge, counting from 1, is multiplied by k/n for an n-pixel feather."""
    out = as_mask_batch(mask).clone()
    h, w = out.shape[-2:]
    left, right, top, bottom = min(left, w), min(right, w), min(top, h), min(bottom, h)
    cols = torch.ones(w)
    rows = torch.ones(h)
    if left:
        cols[:left] *= torch.arange(1, left + 1) / left
    if right:
        cols[w - right :] *= torch.arange(right, 0, -1) / right
    if top:
        rows[:top] *= torch.arange(1, top + 1) / top
    if bottom:
        rows[h - bottom :] *= torch.arange(bottom, 0, -1) / bottom
    return out * rows[:, None] * cols[None, :]


def mask_composite(destination: Tensor, source: Tensor, x: int, y: int, operation: str) -> Tensor:
    """MaskComposite: ``operation`` applied where ``source`` (placed at x, y) overlaps ``destination``;
    the logical operations round both to 0/1 first; the result is clamped to 0..1."""
    dest = as_mask_batch(destination)
    src = as_mask_batch(source)
    b = max(dest.shape[0], src.shape[0])
    out = _to_batch(dest, b).clone()
    dh, dw = out.shape[-2:]
    if x >= dw or y >= dh:
        return out
    vh, vw = min(src.shape[-2], dh - y), min(src.shape[-1], dw - x)
    s = _to_batch(src, b)[:, :vh, :vw]
    d = out[:, y : y + vh, x : x + vw]
    if operation == "multiply":
        r = d * s
    elif operation == "add":
        r = d + s
    elif operation == "subtract":
        r = d - s
    elif operation in ("and", "or", "xor"):
        a, c = d.round().bool(), s.round().bool()
        op = {"and": torch.logical_and, "or": torch.logical_or, "xor": torch.logical_xor}[operation]
        r = op(a, c).float()
    else:
        raise ValueError(f"unknown operation {operation!r}")
    out[:, y : y + vh, x : x + vw] = r
    return out.clamp(0, 1)


__all__ = [
    "BLEND_MODES",
    "MASK_OPERATIONS",
    "as_mask_batch",
    "batch_images",
    "blend",
    "composite",
    "feather",
    "fit_mask",
    "grow",
    "mask_composite",
    "pad_for_outpaint",
    "scaled_size",
    "total_pixels_size",
]
