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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nodes.diffusion.conditioning import END_PERCENT_KEY, START_PERCENT_KEY, CondEntry
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


def _mean_output(
    model: DiffusionModel,
    x_in: Tensor,
    t: Tensor,
    groups: Sequence[Sequence[CondEntry]],
    hw: tuple[int, int],
    concat: Tensor | None,
) -> list[Tensor]:
    """Predict for every entry of every group in one batch; return each group's mean prediction."""
    flat = [c for g in groups for c in g]
    batch = x_in.shape[0]
    out = model.predict(x_in.repeat(len(flat), 1, 1, 1), t.repeat(len(flat)), flat, hw, concat)
    chunks = out.split(batch)
    means, k = [], 0
    for g in groups:
        means.append(torch.stack(chunks[k : k + len(g)]).mean(0))
        k += len(g)
    return means


@dataclass(frozen=True, eq=False)
class Guider:
    """The GUIDER socket's value: a model with its conditioning and a guidance scale."""

    model: DiffusionModel
    positive: Sequence[CondEntry]
    negative: Sequence[CondEntry] | None = None
    cfg: float = 1.0

    def denoiser(self, image_hw: tuple[int, int], concat: Tensor | None = None) -> CFGDenoiser:
        """`concat`: extra input channels for inpainting models (see `inpaint_concat`)."""
        if not self.positive:
            raise ValueError("the positive conditioning is empty")
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
            uncond, cond = _mean_output(model, x_in, t, [uncond_group, positive], self.image_hw, self.concat)
            out = uncond + g.cfg * (cond - uncond)
            guided = ms.calculate_denoised(sigma, out.to(x.dtype), x)
            return guided, ms.calculate_denoised(sigma, uncond.to(x.dtype), x)
        (out,) = _mean_output(model, x_in, t, [positive], self.image_hw, self.concat)
        guided = ms.calculate_denoised(sigma, out.to(x.dtype), x)
        return guided, guided


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
