"""What the three transformer families share at run time: weight storage, batching, input checks.

**Storage and compute dtypes.** A released FLUX.1 is 24 GB in bf16, T5-XXL 9 GB; holding a float32
copy to compute in is out of the question on most machines. The network is built from the file's
tensors as they are stored (bf16, fp16 or fp8; memory-mapped, not copied), and only when the working
dtype differs is each linear/conv layer cast to it for its own forward call and back afterwards
(diffusers' layerwise-casting hook). Small tensors outside those layers (norm scales, pad tokens,
position tables, and modules a family names in ``KEEP_IN_COMPUTE``) are cast once. UNETLoader's
``weight_dtype`` (fp8_e4m3fn / fp8_e5m2) stores the linear weights in fp8 the same way, halving a
bf16 model; a ComfyUI "scaled fp8" file keeps its fp8 layers and their per-layer scales
(``nodes.diffusion.scaled_fp8``), those layers managing their own dtypes. Stored in higher precision
than the working dtype (an fp32 file on a GPU in fp16), the model is simply cast down once.

**Batching.** The guider batches every conditioning entry of a step into one call; entries from
prompts of different lengths are made the same length as for the UNet (see ``same_length``), and a
latent whose sides are not a multiple of the patch size is padded at the bottom/right edge and the
prediction cropped back, so any size a latent node allows runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from nodes.diffusion.conditioning import CondEntry
from nodes.diffusion.scaled_fp8 import is_fp8
from nodes.diffusion.text_encoders import TEXT_RECIPE_KEY

__all__ = ["TEXT_RECIPE_KEY", "ConditioningMismatchError", "check_recipe", "set_compute_dtype"]
#: UNETLoader's ``weight_dtype`` choices, as ComfyUI names them.
WEIGHT_DTYPES = ("default", "fp8_e4m3fn", "fp8_e5m2")
_FP8 = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
_CAST_LAYERS = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv1d, torch.nn.Conv3d)


class ConditioningMismatchError(ValueError):
    """Conditioning made by another family's text encoders reached this model."""

    user_facing = True


def storage_dtype(stored: torch.dtype, weight_dtype: str) -> torch.dtype:
    """The dtype the linear weights are kept in: fp8 when asked for, else as stored."""
    if weight_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weight_dtype must be one of {', '.join(WEIGHT_DTYPES)}, not {weight_dtype!r}")
    return _FP8.get(weight_dtype, stored)


def stored_dtype(dtypes: Iterable[torch.dtype]) -> torch.dtype:
    """The floating dtype most tensors of a network are stored in (float32 when there are none)."""
    counts: dict[torch.dtype, int] = {}
    for d in dtypes:
        if d.is_floating_point:
            counts[d] = counts.get(d, 0) + 1
    return max(counts, key=lambda d: counts[d]) if counts else torch.float32


def set_compute_dtype(
    network: torch.nn.Module, storage: torch.dtype, compute: torch.dtype, keep_in_compute: Sequence[str] = ()
) -> None:
    """Keep linear/conv weights in ``storage`` and run every layer in ``compute`` (see module docstring).

    ``keep_in_compute``: names of submodules cast to ``compute`` whole, for code that reads a weight's
    dtype to decide its input's (Z-Image's timestep embedder).
    """
    from diffusers.hooks import apply_layerwise_casting

    if storage == compute or (storage.itemsize >= compute.itemsize and not is_fp8(storage)):
        _cast_floating(network, compute)  # no precision to protect: one cast down (or nothing)
        return
    kept = {n for n, _ in network.named_modules() if any(n == k or n.startswith(k + ".") for k in keep_in_compute)}
    for name, module in network.named_modules():
        if _keeps_own_dtypes(module, compute):
            continue
        layer = isinstance(module, _CAST_LAYERS) and name not in kept
        for _, param in module.named_parameters(recurse=False):
            if param.is_floating_point():
                param.data = param.data.to(storage if layer else compute)
        for bname, buf in module.named_buffers(recurse=False):
            if buf.is_floating_point():
                module._buffers[bname] = buf.to(compute)
    pattern = tuple(f"^{k}(\\.|$)" for k in keep_in_compute)
    apply_layerwise_casting(network, storage, compute, skip_modules_pattern=pattern or ("(?!)",))  # (?!) never matches


def _cast_floating(network: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast floating parameters and buffers that are not ``dtype`` yet (no copy of those that are);
    a layer that keeps its own storage (a scaled fp8 linear) is only told the working dtype."""
    for module in network.modules():
        if _keeps_own_dtypes(module, dtype):
            continue
        for _, param in module.named_parameters(recurse=False):
            if param.is_floating_point() and param.dtype != dtype:
                param.data = param.data.to(dtype)
        for name, buf in module.named_buffers(recurse=False):
            if buf.is_floating_point() and buf.dtype != dtype:
                module._buffers[name] = buf.to(dtype)


def _keeps_own_dtypes(module: torch.nn.Module, compute: torch.dtype) -> bool:
    """A layer that stores its weight its own way (``own_dtypes``, a scaled fp8 linear) is only told the
    working dtype; True when ``module`` is one."""
    if not getattr(module, "own_dtypes", False):
        return False
    compute_in: Any = getattr(module, "compute_in")  # noqa: B009 (not a Module attribute mypy knows)
    compute_in(compute)
    return True


def check_recipe(conds: Sequence[CondEntry], family: str, display_name: str) -> None:
    """Refuse conditioning encoded for another family, naming both (SD prompts in FLUX, FLUX's in SD3…)."""
    for c in conds:
        recipe = c.extras.get(TEXT_RECIPE_KEY)
        if recipe != family:
            made = f"{recipe} text encoders" if recipe else "a Stable Diffusion checkpoint's CLIP"
            raise ConditioningMismatchError(
                f"the conditioning was encoded with {made}, but the model is {display_name}; "
                f"load {display_name}'s text encoders (a CLIP loader with type {_clip_type(family)!r}) "
                "and encode the prompts with them"
            )


def _clip_type(family: str) -> str:
    from nodes import families

    return families.get(family).clip_type or family


def same_length(embeds: Sequence[Tensor]) -> list[Tensor]:
    """Token sequences repeated to a common length (their least common multiple), as for the UNet:
    joint attention over a sequence repeated k times equals attention over it once, so batching a
    long prompt with a short one changes neither result."""
    lengths = {e.shape[1] for e in embeds}
    if len(lengths) == 1:
        return list(embeds)
    target = math.lcm(*lengths)
    return [e.repeat(1, target // e.shape[1], 1) for e in embeds]


def batch_rows(conds: Sequence[CondEntry], per: int, value: Any) -> Tensor:
    """One row per sample: ``value(entry)`` ([1, …]) repeated for the ``per`` samples of its block."""
    rows = [value(c) for c in conds]
    return torch.cat([r.expand(per, *r.shape[1:]) for r in rows])


def pad_to_patch(x: Tensor, patch: int) -> tuple[Tensor, tuple[int, int]]:
    """Pad the last two dims up to multiples of ``patch`` (edge values repeated); returns the original size."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % patch, (-w) % patch
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)
