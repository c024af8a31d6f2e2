"""CONDITIONING: what a text encoder hands to a sampler.

A conditioning is a *list* of entries, each one prompt's encoding: the per-token embeddings the UNet
attends to (``embeds``, shape ``[1, tokens, dim]`` with ``tokens`` a multiple of 77), the pooled sentence
vector SDXL adds to its timestep embedding (``pooled``, ``[1, dim]``, ``None`` for SD1.x/SD2.x), and a
free-form ``extras`` dict for per-entry options (SDXL size conditioning today; area, strength, masks
later). The list form is ComfyUI's: ``ConditioningCombine`` concatenates lists and the sampler evaluates
every entry and averages the predictions, so combining is cheap and loses nothing.

Tensors are float32 on the CPU (see :mod:`nodes.diffusion.text.encode`): conditioning is small, is cached by the
graph and may meet models on any device; the sampler moves it to the UNet's device and dtype.
Entries are immutable values shared between nodes — never modify a tensor or an ``extras`` dict in
place, build a new entry (:func:`dataclasses.replace`) instead.

SDXL size conditioning ("micro-conditioning"): the SDXL UNet also receives six numbers — the original
image size, the top-left crop offset and the target size — embedded next to the pooled text vector.
They live in ``extras`` under :data:`SDXL_SIZE_KEYS`; :func:`sdxl_time_ids` turns them into the tensor
diffusers calls ``add_time_ids``. Missing keys fall back to the size being generated, which is what both
diffusers (``original_size = target_size = (height, width)``) and ComfyUI do for a plain text encode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import torch
from torch import Tensor

SDXL_SIZE_KEYS = ("width", "height", "crop_w", "crop_h", "target_width", "target_height")
"""``extras`` keys read by :func:`sdxl_time_ids` (pixels; ``crop_w``/``crop_h`` are the left/top offsets)."""
AESTHETIC_SCORE_KEY = "aesthetic_score"
"""``extras`` key for the SDXL refiner's aesthetic score (diffusers/ComfyUI default 6.0, negatives 2.5)."""
START_PERCENT_KEY = "start_percent"
END_PERCENT_KEY = "end_percent"
"""``extras`` keys of ConditioningSetTimestepRange (ComfyUI's names): the entry only guides sampling
between these fractions of the run (0 = pure noise, 1 = clean), converted to σ by the model's own
``percent_to_sigma`` when sampling, so one range means the same part of the run for every model."""
GUIDANCE_KEY = "guidance"
"""``extras`` key of FluxGuidance: the distilled guidance value a FLUX-dev model is conditioned on."""
AREA_KEY = "area"
"""``extras`` key of ConditioningSetArea(Percentage): ``("cells", h, w, y, x)`` in latent cells (pixels
// 8, as ComfyUI stores it) or ``("percentage", h, w, y, x)`` as fractions of the image. The entry then
only guides that rectangle; see :mod:`nodes.diffusion.guidance` for how regions are combined."""
STRENGTH_KEY = "strength"
"""``extras`` key of an entry's weight where regions overlap (ConditioningSetArea/-Strength)."""
MASK_KEY = "mask"
MASK_STRENGTH_KEY = "mask_strength"
AREA_TO_BOUNDS_KEY = "set_area_to_bounds"
"""``extras`` keys of ConditioningSetMask: a ``[B, H, W]`` (or ``[1, H, W]``) weight map, its strength, and
whether the model should only see the mask's bounding box (ComfyUI's "mask bounds")."""
CONCAT_LATENT_KEY = "concat_latent_image"
CONCAT_MASK_KEY = "concat_mask"
"""``extras`` keys of InpaintModelConditioning: the masked image's latent (VAE space) and the mask an
inpainting model receives as its extra input channels, instead of the latent being sampled."""


@dataclass(frozen=True, eq=False)
class CondEntry:
    """One encoded prompt. Treat as immutable; see the module docstring.

    ``eq=False``: equality is identity, because element-wise tensor ``==`` has no single truth value.
    """

    embeds: Tensor
    """``[1, 77·chunks, dim]`` token embeddings for cross-attention."""
    pooled: Tensor | None = None
    """``[1, dim]`` pooled text embedding (SDXL: OpenCLIP-bigG projection of the first chunk's EOS)."""
    extras: Mapping[str, Any] = field(default_factory=dict)
    """Per-entry options such as the SDXL size keys; never mutated in place."""


Conditioning: TypeAlias = list[CondEntry]
"""The runtime value of a CONDITIONING socket."""


def combine(a: Sequence[CondEntry], b: Sequence[CondEntry]) -> Conditioning:
    """``ConditioningCombine``: concatenate the entry lists (the sampler averages their predictions).

    Returns a new list; the entries themselves are shared, which is safe because they are immutable.
    """
    return [*a, *b]


def zero_out(c: Sequence[CondEntry]) -> Conditioning:
    """``ConditioningZeroOut``: same shapes and extras, all-zero embeddings and pooled vectors.

    SDXL-family models are commonly run with a zeroed negative instead of an encoded empty prompt
    (diffusers' ``force_zeros_for_empty_prompt``); this is that negative.
    """
    return [
        CondEntry(
            embeds=torch.zeros_like(e.embeds),
            pooled=None if e.pooled is None else torch.zeros_like(e.pooled),
            extras=dict(e.extras),
        )
        for e in c
    ]


def with_extras(c: Sequence[CondEntry], **extras: Any) -> Conditioning:
    """Copy of ``c`` with ``extras`` merged into every entry (later keys win).

    How a "CLIP Text Encode (SDXL)" style node sets size conditioning:
    ``with_extras(cond, width=1024, height=1024, crop_w=0, crop_h=0, target_width=1024, target_height=1024)``.
    """
    return [CondEntry(e.embeds, e.pooled, {**e.extras, **extras}) for e in c]


def with_timestep_range(c: Sequence[CondEntry], start: float, end: float) -> Conditioning:
    """``ConditioningSetTimestepRange``: every entry applies only from ``start`` to ``end`` of the run."""
    return with_extras(c, **{START_PERCENT_KEY: float(start), END_PERCENT_KEY: float(end)})


def is_regional(entry: CondEntry) -> bool:
    """Whether an entry guides only part of the image or carries a weight (area, mask, strength)."""
    return any(k in entry.extras for k in (AREA_KEY, MASK_KEY, STRENGTH_KEY))


def concat_entries(to: Sequence[CondEntry], source: Sequence[CondEntry]) -> Conditioning:
    """``ConditioningConcat``: every entry of ``to`` gets the tokens of ``source``'s first entry appended
    (one longer prompt: both texts attended to at once, unlike Combine's two predictions). The pooled
    vector and extras stay ``to``'s."""
    if not source:
        return list(to)
    extra = source[0].embeds
    return [CondEntry(torch.cat([e.embeds, extra.to(e.embeds)], dim=1), e.pooled, dict(e.extras)) for e in to]


def average_entries(to: Sequence[CondEntry], source: Sequence[CondEntry], to_strength: float) -> Conditioning:
    """``ConditioningAverage``: ``to·s + from·(1 − s)`` per token (``from`` = the first entry of ``source``,
    cut or zero-padded to ``to``'s token count), pooled vectors likewise when both have one."""
    if not source:
        return list(to)
    src = source[0]
    out = []
    for e in to:
        n = e.embeds.shape[1]
        f = src.embeds[:, :n].to(e.embeds)
        if f.shape[1] < n:
            f = torch.cat([f, torch.zeros(f.shape[0], n - f.shape[1], f.shape[2], dtype=f.dtype)], dim=1)
        embeds = e.embeds * to_strength + f * (1.0 - to_strength)
        pooled = e.pooled
        if src.pooled is not None and e.pooled is not None:
            pooled = e.pooled * to_strength + src.pooled.to(e.pooled) * (1.0 - to_strength)
        elif src.pooled is not None:
            pooled = src.pooled
        out.append(CondEntry(embeds, pooled, dict(e.extras)))
    return out


def sdxl_time_ids(
    extras: Mapping[str, Any],
    *,
    image_width: int = 1024,
    image_height: int = 1024,
    refiner: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """SDXL ``add_time_ids`` for one entry, as diffusers' ``_get_add_time_ids`` builds them.

    Base model, shape ``[1, 6]``: ``(height, width, crop_h, crop_w, target_height, target_width)`` —
    diffusers' ``original_size + crops_coords_top_left + target_size`` with sizes given as (h, w) and the
    crop as (top, left). Refiner (``refiner=True``), shape ``[1, 5]``:
    ``(height, width, crop_h, crop_w, aesthetic_score)`` as in diffusers' img2img pipeline with
    ``requires_aesthetics_score``.

    ``image_width``/``image_height`` are the pixel size being generated; they stand in for any missing
    size key (crops default to 0, the aesthetic score to 6.0), so a plain prompt encode conditions on
    "an uncropped image of the requested size".
    """
    width = extras.get("width", image_width)
    height = extras.get("height", image_height)
    crop_w = extras.get("crop_w", 0)
    crop_h = extras.get("crop_h", 0)
    if refiner:
        values = [height, width, crop_h, crop_w, extras.get(AESTHETIC_SCORE_KEY, 6.0)]
    else:
        target_w = extras.get("target_width", image_width)
        target_h = extras.get("target_height", image_height)
        values = [height, width, crop_h, crop_w, target_h, target_w]
    return torch.tensor([[float(v) for v in values]], dtype=dtype, device=device)
