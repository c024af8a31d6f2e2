"""Guidance: turning a model and its conditioning into the denoiser `D(x, σ) -> x0` samplers need.

Classifier-free guidance mixes the predictions with and without the prompt,
ε̂ = ε̂_uncond + s·(ε̂_cond − ε̂_uncond), evaluated as one batched UNet call [uncond, cond]. At s = 1
the unconditional half cannot matter, so it is skipped (half the work). Several conditioning entries
on one side (Conditioning Combine) are each predicted and averaged, as ComfyUI does.

The mix is done on the raw network output (ε or v) before converting to x0. Both conversions are
linear in the output, so this equals mixing x0 predictions, and it is exactly what diffusers'
pipelines compute, which the parity tests rely on.

CFG++ samplers also need the unconditional prediction on its own: the denoiser's ``with_uncond`` returns
it beside the guided one from the same batched call (and computes it even at cfg 1, where plain
samplers skip it).

Timestep ranges (ConditioningSetTimestepRange): an entry with ``start_percent``/``end_percent`` takes
part only while σ_end ≤ σ ≤ σ_start, the bounds coming from the model's ``percent_to_sigma`` (ComfyUI's
rule). When no negative entry is active at a step, that step is unguided (the positive alone, as at
cfg 1); when no positive entry is active, sampling stops with a message — the ranges leave a gap.

Regions (ConditioningSetArea, -Percentage, -Strength, ConditioningSetMask), with ComfyUI's semantics:
an entry with an area is predicted on the latent cropped to that rectangle (the network sees only
it); each entry has a per-pixel weight ``w = strength × mask`` (mask 1 without one; a mask-less area
fades over its 8 cells next to every side that is not the image border), and each side's output is
the weighted average ``Σ w_e·out_e / (Σ w_e + 1e-37)`` over the entries covering each pixel — 0
where none does. Without any regional entry, this is the plain mean used before.

Inpainting models conditioned by InpaintModelConditioning get the conditioning's masked-image latent
and mask as their extra input channels (per entry), instead of the sampled latent's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from graph_engine import InputError
from nodes.diffusion.conditioning import (
    AREA_KEY,
    AREA_TO_BOUNDS_KEY,
    CONCAT_LATENT_KEY,
    CONCAT_MASK_KEY,
    END_PERCENT_KEY,
    MASK_KEY,
    MASK_STRENGTH_KEY,
    START_PERCENT_KEY,
    STRENGTH_KEY,
    CondEntry,
    is_regional,
)
from nodes.diffusion.controlnet import check_family
from nodes.diffusion.model import DiffusionModel
from nodes.diffusion.sampling.model_sampling import AnyModelSampling


class GuidanceError(Exception):
    user_facing = True


SigmaRange = tuple[float, float] | None


def sigma_range(entry: CondEntry, ms: AnyModelSampling) -> SigmaRange:
    """(σ_end, σ_start) of an entry with a timestep range, None for one that always applies."""
    start = entry.extras.get(START_PERCENT_KEY)
    end = entry.extras.get(END_PERCENT_KEY)
    if start is None and end is None:
        return None
    hi = ms.percent_to_sigma(float(start if start is not None else 0.0))
    lo = ms.percent_to_sigma(float(end if end is not None else 1.0))
    return lo, hi


def active_at(entries: Sequence[CondEntry], ranges: Sequence[SigmaRange], sigma: float) -> list[CondEntry]:
    """The entries whose timestep range contains σ."""
    return [e for e, r in zip(entries, ranges, strict=True) if r is None or r[0] <= sigma <= r[1]]


def _t_for(model: DiffusionModel, sigma: Tensor) -> Tensor:
    return model.model_sampling.timestep(sigma.float().cpu())


ConcatFor = Callable[[CondEntry], Tensor | None]
Area = tuple[int, int, int, int]
"""(height, width, top, left) in latent cells, as ComfyUI orders an area."""

FADE_CELLS = 8
"""A mask-less area's weight ramps up over this many cells from each side inside the image (ComfyUI)."""


def _batched_concat(entries: Sequence[CondEntry], concat_for: ConcatFor) -> Tensor | None:
    parts = [concat_for(e) for e in entries]
    if any(p is None for p in parts):
        return None
    return torch.cat([p for p in parts if p is not None])


def _mean_output(
    model: DiffusionModel,
    x_in: Tensor,
    t: Tensor,
    groups: Sequence[Sequence[CondEntry]],
    hw: tuple[int, int],
    concat_for: ConcatFor,
    sigma: float | None = None,
) -> list[Tensor]:
    """Predict for every entry of every group in one batch; return each group's mean prediction.
    `sigma`: the step's noise level, for controls active only part of the way (ControlNet start/end)."""
    flat = [c for g in groups for c in g]
    batch = x_in.shape[0]
    concat = _batched_concat(flat, concat_for)
    out = model.predict(x_in.repeat(len(flat), 1, 1, 1), t.repeat(len(flat)), flat, hw, concat, sigma=sigma)
    chunks = out.split(batch)
    means, k = [], 0
    for g in groups:
        means.append(torch.stack(chunks[k : k + len(g)]).mean(0))
        k += len(g)
    return means


def _fit_batch(t: Tensor, b: int) -> Tensor:
    if t.shape[0] == b:
        return t
    reps = -(-b // t.shape[0])
    return t.repeat(reps, *([1] * (t.ndim - 1)))[:b]


def entry_region(entry: CondEntry, batch: int, h: int, w: int) -> tuple[Area, Tensor] | None:
    """Where an entry applies on an ``h``×``w`` latent and with what weight: its area (clamped to the
    latent) and a ``[batch or 1, 1, area h, area w]`` weight map; None when the area lies outside."""
    ex = entry.extras
    spec = ex.get(AREA_KEY)
    area: Area | None = None
    if spec is not None:
        kind, ah, aw, ay, ax = spec
        if kind == "percentage":
            area = (max(1, round(ah * h)), max(1, round(aw * w)), round(ay * h), round(ax * w))
        else:
            area = (int(ah), int(aw), int(ay), int(ax))
    mask = ex.get(MASK_KEY)
    m: Tensor | None = None
    if mask is not None:
        m = mask.float().reshape(-1, mask.shape[-2], mask.shape[-1])
        mh, mw = m.shape[-2:]
        if abs(mw / mh - w / h) > 0.01 * w / h:
            raise GuidanceError(
                f"the mask of Conditioning (Set Mask) is {mw}x{mh} but the image is {w * 8}x{h * 8}; "
                "they must have the same shape"
            )
        if tuple(m.shape[-2:]) != (h, w):
            m = F.interpolate(m[:, None], size=(h, w), mode="bilinear")[:, 0]
        if ex.get(AREA_TO_BOUNDS_KEY):
            cells = m.abs().amax(0).nonzero()
            if len(cells) == 0:
                area = (8, 8, 0, 0)
            else:
                (y0, x0), (y1, x1) = cells.amin(0).tolist(), cells.amax(0).tolist()
                area = (max(8, y1 - y0 + 1), max(8, x1 - x0 + 1), y0, x0)
    if area is None:
        area = (h, w, 0, 0)
    ah, aw, ay, ax = area
    ah, aw = min(h - ay, ah), min(w - ax, aw)
    if ah <= 0 or aw <= 0:
        return None
    if m is not None:
        weight = _fit_batch(m, batch)[:, None, ay : ay + ah, ax : ax + aw] * float(ex.get(MASK_STRENGTH_KEY, 1.0))
    else:
        weight = torch.ones(1, 1, ah, aw)
    weight = weight * float(ex.get(STRENGTH_KEY, 1.0))
    if m is None and spec is not None:
        weight = weight.clone()
        fade = [(t + 1) / FADE_CELLS for t in range(FADE_CELLS)]
        for t in range(min(FADE_CELLS, ah)):
            if ay != 0:
                weight[..., t, :] *= fade[t]
            if ay + ah < h:
                weight[..., ah - 1 - t, :] *= fade[t]
        for t in range(min(FADE_CELLS, aw)):
            if ax != 0:
                weight[..., :, t] *= fade[t]
            if ax + aw < w:
                weight[..., :, aw - 1 - t] *= fade[t]
    return (ah, aw, ay, ax), weight


def _regional_output(
    model: DiffusionModel,
    x_in: Tensor,
    t: Tensor,
    groups: Sequence[Sequence[CondEntry]],
    hw: tuple[int, int],
    concat_for: ConcatFor,
    sigma: float | None = None,
) -> list[Tensor]:
    """Each group's weighted average of its entries' predictions, entries with the same area batched
    into one call on the cropped latent (see the module docstring)."""
    b, _, h, w = x_in.shape
    outs = [torch.zeros(x_in.shape, dtype=torch.float32, device=x_in.device) for _ in groups]
    counts = [torch.full(x_in.shape, 1e-37, dtype=torch.float32, device=x_in.device) for _ in groups]
    buckets: dict[Area, list[tuple[int, CondEntry, Tensor]]] = {}
    for gi, group in enumerate(groups):
        for entry in group:
            region = entry_region(entry, b, h, w)
            if region is not None:
                buckets.setdefault(region[0], []).append((gi, entry, region[1]))
    for (ah, aw, ay, ax), items in buckets.items():
        entries = [e for _, e, _ in items]
        crop = x_in[:, :, ay : ay + ah, ax : ax + aw]
        concat = _batched_concat(entries, concat_for)
        if concat is not None:
            concat = concat[:, :, ay : ay + ah, ax : ax + aw]
        n = len(entries)
        out = model.predict(crop.repeat(n, 1, 1, 1), t.repeat(n), entries, hw, concat, sigma=sigma).float()
        for k, (gi, _, weight) in enumerate(items):
            wgt = weight.to(out.device)
            outs[gi][:, :, ay : ay + ah, ax : ax + aw] += out[k * b : (k + 1) * b] * wgt
            counts[gi][:, :, ay : ay + ah, ax : ax + aw] += wgt
    return [o / c for o, c in zip(outs, counts, strict=True)]


@dataclass(frozen=True, eq=False)
class Guider:
    """The GUIDER socket's value: a model with its conditioning and a guidance scale."""

    model: DiffusionModel
    positive: Sequence[CondEntry]
    negative: Sequence[CondEntry] | None = None
    cfg: float = 1.0

    def denoiser(self, image_hw: tuple[int, int], concat: Tensor | None = None) -> CFGDenoiser:
        """`concat`: extra input channels for inpainting models (see `inpaint_concat`); entries made by
        InpaintModelConditioning bring their own."""
        if not self.positive:
            raise ValueError("the positive conditioning is empty")
        negative = list(self.negative) if self.negative is not None and self.cfg != 1.0 else []  # unused at 1
        for side, entries in (("positive", self.positive), ("negative", negative)):
            problem = check_family(self.model, entries)
            if problem is not None:
                raise InputError(side, problem)
        return CFGDenoiser(self, image_hw, concat)


class CFGDenoiser:
    """A guider's denoiser ``D(x, σ) -> x0``; ``with_uncond`` also returns the unconditional prediction
    (the side channel CFG++ samplers read, see ``model_sampling.GuidedDenoiser``)."""

    def __init__(self, guider: Guider, image_hw: tuple[int, int], concat: Tensor | None) -> None:
        self.guider = guider
        self.image_hw = image_hw
        self.concat = concat
        ms = guider.model.model_sampling
        self.negative = list(guider.negative) if guider.negative is not None else []
        self.pos_ranges = [sigma_range(e, ms) for e in guider.positive]
        self.neg_ranges = [sigma_range(e, ms) for e in self.negative]
        regional = any(is_regional(e) for e in [*guider.positive, *self.negative])
        self.combine = _regional_output if regional else _mean_output
        self._own_concat: dict[int, Tensor] = {}

    def concat_for(self, entry: CondEntry) -> Tensor | None:
        """The inpainting channels for an entry: its own (InpaintModelConditioning) or the latent's."""
        model, concat = self.guider.model, self.concat
        if not model.inpainting or CONCAT_LATENT_KEY not in entry.extras or concat is None:
            return concat
        key = id(entry)
        if key not in self._own_concat:
            self._own_concat[key] = entry_concat(model, entry, concat)
        return self._own_concat[key]

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        return self._predict(x, sigma, self.guider.cfg != 1.0)[0]

    def with_uncond(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """(guided, unconditional) x0; the unconditional one is the guided one when no negative applies."""
        return self._predict(x, sigma, True)

    def _predict(self, x: Tensor, sigma: Tensor, use_negative: bool) -> tuple[Tensor, Tensor]:
        g = self.guider
        model, ms = g.model, g.model.model_sampling
        sigma = sigma.reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(x.shape[0])
        level = float(sigma[0])
        positive = active_at(g.positive, self.pos_ranges, level)
        if not positive:
            raise GuidanceError(
                f"no positive conditioning applies at σ = {level:.4g}: the timestep ranges set with "
                "ConditioningSetTimestepRange leave a gap; make them cover 0 to 1 together"
            )
        uncond_group = active_at(self.negative, self.neg_ranges, level) if use_negative else []
        x_in = ms.calculate_input(sigma, x)
        t = _t_for(model, sigma)
        if uncond_group:
            groups = [uncond_group, positive]
            uncond, cond = self.combine(model, x_in, t, groups, self.image_hw, self.concat_for, level)
            out = uncond + g.cfg * (cond - uncond)
            guided = ms.calculate_denoised(sigma, out.to(x.dtype), x)
            return guided, ms.calculate_denoised(sigma, uncond.to(x.dtype), x)
        (out,) = self.combine(model, x_in, t, [positive], self.image_hw, self.concat_for, level)
        guided = ms.calculate_denoised(sigma, out.to(x.dtype), x)
        return guided, guided


def entry_concat(model: DiffusionModel, entry: CondEntry, like: Tensor) -> Tensor:
    """An InpaintModelConditioning entry's [mask, masked-image latent] channels, on ``like``'s grid,
    batch and device (the latent resized bilinearly if the sampled latent has another size)."""
    latent = entry.extras[CONCAT_LATENT_KEY].float()
    b, _, h, w = like.shape
    if tuple(latent.shape[-2:]) != (h, w):
        latent = F.interpolate(latent, size=(h, w), mode="bilinear")
    out = inpaint_concat(model.to_model_space(latent), entry.extras.get(CONCAT_MASK_KEY))
    return _fit_batch(out, b).to(like)


def inpaint_concat(samples: Tensor, noise_mask: Tensor | None) -> Tensor:
    """[mask, masked-image latent] for an inpainting UNet's extra 5 input channels.

    The latent from "VAE Encode (for Inpainting)" already is the masked image's latent and carries the
    mask; without a mask the whole image is to be generated (mask 1 everywhere).
    """
    b, _, h, w = samples.shape
    if noise_mask is None:
        mask = torch.ones(b, 1, h, w)
    else:
        m = noise_mask.float().reshape(-1, 1, *noise_mask.shape[-2:])
        mask = torch.nn.functional.interpolate(m, size=(h, w), mode="bilinear")
        if mask.shape[0] != b:
            mask = mask.expand(b, -1, -1, -1)
    return torch.cat([mask.round(), samples.float()], dim=1)
