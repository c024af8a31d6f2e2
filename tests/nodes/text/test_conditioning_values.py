"""Conditioning list semantics (combine, zero-out, extras) and SDXL size conditioning vs diffusers."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import types

import pytest
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

from nodes.diffusion.conditioning import CondEntry, combine, sdxl_time_ids, with_extras, zero_out


def _entry(seed: int, pooled: bool = True, **extras: object) -> CondEntry:
    g = torch.Generator().manual_seed(seed)
    return CondEntry(
        embeds=torch.randn(1, 77, 8, generator=g),
        pooled=torch.randn(1, 4, generator=g) if pooled else None,
        extras=extras,
    )


def test_combine_concatenates_without_copying_or_mutating() -> None:
    a, b = [_entry(0)], [_entry(1), _entry(2, pooled=False)]
    out = combine(a, b)
    assert len(out) == 3 and all(x is y for x, y in zip(out, [*a, *b], strict=True))
    assert len(a) == 1 and len(b) == 2


def test_zero_out_keeps_shapes_and_extras() -> None:
    src = [_entry(0, width=832), _entry(1, pooled=False)]
    out = zero_out(src)
    assert len(out) == 2
    assert torch.equal(out[0].embeds, torch.zeros(1, 77, 8))
    assert out[0].pooled is not None and torch.equal(out[0].pooled, torch.zeros(1, 4))
    assert out[1].pooled is None
    assert out[0].extras == {"width": 832} and out[0].extras is not src[0].extras
    assert float(src[0].embeds.abs().sum()) > 0  # source untouched


def test_with_extras_merges_into_copies() -> None:
    src = [_entry(0, width=512, crop_w=8)]
    (out,) = with_extras(src, width=1024, target_width=2048)
    assert out.extras == {"width": 1024, "crop_w": 8, "target_width": 2048}
    assert src[0].extras == {"width": 512, "crop_w": 8}
    assert out.embeds is src[0].embeds


def _fake_pipe(n_ids: int, requires_aesthetics_score: bool = False) -> types.SimpleNamespace:
    """Just enough of a pipeline for diffusers' ``_get_add_time_ids`` dimension check."""
    time_dim, proj = 8, 4
    return types.SimpleNamespace(
        unet=types.SimpleNamespace(
            config=types.SimpleNamespace(addition_time_embed_dim=time_dim),
            add_embedding=types.SimpleNamespace(linear_1=torch.nn.Linear(time_dim * n_ids + proj, 1)),
        ),
        config=types.SimpleNamespace(requires_aesthetics_score=requires_aesthetics_score),
    )


@pytest.mark.parametrize(
    ("extras", "image_size", "original", "crop", "target"),
    [
        ({}, (1024, 1024), (1024, 1024), (0, 0), (1024, 1024)),
        ({}, (832, 1216), (1216, 832), (0, 0), (1216, 832)),  # (w, h) in, (h, w) out
        (
            {"width": 4096, "height": 2048, "crop_w": 16, "crop_h": 32, "target_width": 640, "target_height": 480},
            (1024, 1024),
            (2048, 4096),
            (32, 16),
            (480, 640),
        ),
    ],
)
def test_sdxl_time_ids_match_diffusers(
    extras: dict, image_size: tuple[int, int], original: tuple, crop: tuple, target: tuple
) -> None:
    ref = StableDiffusionXLPipeline._get_add_time_ids(
        _fake_pipe(6), original, crop, target, dtype=torch.float32, text_encoder_projection_dim=4
    )
    got = sdxl_time_ids(extras, image_width=image_size[0], image_height=image_size[1])
    assert got.shape == (1, 6) and got.dtype == torch.float32
    assert torch.equal(got, ref)


def test_sdxl_refiner_time_ids_match_diffusers() -> None:
    ref, neg = StableDiffusionXLImg2ImgPipeline._get_add_time_ids(
        _fake_pipe(5, requires_aesthetics_score=True),
        (768, 1024),
        (0, 8),
        (768, 1024),
        6.0,
        2.5,
        (768, 1024),
        (0, 8),
        (768, 1024),
        dtype=torch.float32,
        text_encoder_projection_dim=4,
    )
    got = sdxl_time_ids({"crop_w": 8}, image_width=1024, image_height=768, refiner=True)
    assert torch.equal(got, ref)
    negative = sdxl_time_ids({"crop_w": 8, "aesthetic_score": 2.5}, image_width=1024, image_height=768, refiner=True)
    assert torch.equal(negative, neg)
