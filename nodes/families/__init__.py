"""Model families: what each family sdgraph knows is, declared in one module per family.

A family (``base.ModelFamily``) states how to recognise its files (single files in the original
layout and in the layouts ComfyUI users download; diffusers folders by ``model_index.json``), the
classes it builds and the configs it ships in ``resources/sd_configs/``, its latent format, text
encoders and how prompts become conditioning, its model sampling, and where the code that derives
its architecture from tensor shapes lives. Detection (``nodes.diffusion.checkpoint.detect``), the
loaders, previews and text encoding ask this registry instead of branching on family names.

Families sdgraph cannot run yet are registered too (``supported=False``), so a file of one of them
gets one message naming it ("… is a FLUX.1 (Black Forest Labs Flux) diffusion transformer, which
sdgraph cannot run yet") instead of "unknown architecture".

Nothing here imports torch: these are data modules the UI and node declarations read freely.

Adding a family
---------------
1. One module ``nodes/families/<name>.py`` defining ``FAMILY = ModelFamily(...)``; add it to
   ``FAMILIES`` below at the place detection should try it (before any family whose keys its files
   also contain). A recognised-only family fits in ``others.py``.
2. To make it runnable, set ``supported=True`` and fill in what the conformance test
   (``tests/nodes/families/test_registry.py``) requires of supported families: latent format with
   preview factors, sampling, text-encoder slots and conditioning, shipped configs under
   ``resources/sd_configs/<config_dir>/``, and ``detector`` naming the function that derives the
   architecture from a single file's shapes. The network and its loader are the family's runtime
   code under ``nodes/diffusion/``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nodes.families import flux, others, sd1, sd2, sd3, sdxl, sdxl_refiner, z_image
from nodes.families.base import (
    DiffusersFolder,
    LatentFormat,
    ModelFamily,
    Sampling,
    Shapes,
    TextConditioning,
    TextEncoderSlot,
)

#: Every family, in the order detection tries them.
FAMILIES: tuple[ModelFamily, ...] = (
    sdxl.FAMILY,
    sdxl_refiner.FAMILY,
    sd2.FAMILY,
    sd1.FAMILY,
    sd3.FAMILY,
    others.AURAFLOW,
    others.FLUX2,
    others.CHROMA,
    flux.FAMILY,
    z_image.FAMILY,
    others.LUMINA2,
    others.QWEN_IMAGE,
)
_BY_NAME: dict[str, ModelFamily] = {f.name: f for f in FAMILIES}

__all__ = [
    "FAMILIES",
    "DiffusersFolder",
    "LatentFormat",
    "ModelFamily",
    "Sampling",
    "TextConditioning",
    "TextEncoderSlot",
    "get",
    "names",
    "read_diffusers_folder",
    "recognise_diffusers_folder",
    "recognise_single_file",
    "supported",
]


def get(name: str) -> ModelFamily:
    """The family with this id; ``KeyError`` naming the known ones otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}; known are {sorted(_BY_NAME)}") from None


def names(*, only_supported: bool = True) -> tuple[str, ...]:
    return tuple(f.name for f in FAMILIES if f.supported or not only_supported)


def supported() -> tuple[ModelFamily, ...]:
    return tuple(f for f in FAMILIES if f.supported)


def recognise_single_file(shapes: Shapes) -> ModelFamily | None:
    """The first family, in registry order, whose single-file key test matches; None if none does."""
    return next((f for f in FAMILIES if f.recognise(shapes)), None)


def recognise_unet_signature(context: int | None, size_embedding: bool) -> ModelFamily | None:
    """The LDM family whose full-size UNet has this cross-attention width and size embedding; for
    UNet-only files, where no text encoder tells the family."""
    sig = (context or 0, size_embedding)
    return next((f for f in FAMILIES if f.ldm_unet is not None and f.ldm_unet.signature == sig), None)


def read_diffusers_folder(folder: Path) -> DiffusersFolder:
    """``model_index.json``'s class name and every component's ``config.json`` (unreadable ones
    are left out; the loader reports them when it needs them)."""
    index = _read_json(folder / "model_index.json") or {}
    configs: dict[str, Mapping[str, Any]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        cfg = _read_json(sub / "config.json")
        if cfg is not None:
            configs[sub.name] = cfg
    pipeline = index.get("_class_name")
    return DiffusersFolder(pipeline=pipeline if isinstance(pipeline, str) else None, configs=configs)


def recognise_diffusers_folder(folder: DiffusersFolder) -> ModelFamily | None:
    """Known-unsupported families by pipeline class name first (their folders have no UNet to
    inspect); then the first family whose folder test matches its component configs."""
    if folder.pipeline is not None:
        for f in FAMILIES:
            if not f.supported and folder.pipeline in f.diffusers_pipelines:
                return f
    return next((f for f in FAMILIES if f.recognise_diffusers is not None and f.recognise_diffusers(folder)), None)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
