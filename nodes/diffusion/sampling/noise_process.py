"""The forward process a sample lives in: ``x_σ = α(σ)·x0 + σ·ε``, for the two kinds of model we run.

* **VE** (variance exploding, α = 1): Stable Diffusion's discrete-time models, once rewritten in
  Karras's σ units (see :mod:`.model_sampling`). σ runs from ~14.6 down to 0.
* **Flow** (rectified flow, α = 1 − σ): SD3, FLUX, Z-Image. σ ∈ [0, 1]; σ = 1 is pure noise.

Why one sampler serves both: with ``D(x, σ) = E[x0 | x_σ = x]`` the probability-flow ODE of *either*
process is ``dx/dσ = (x − D)/σ``. (VE: ε̂ = (x − D)/σ. Flow: the velocity ε − x0 has expectation
(x − (1 − σ)·D)/σ − D = (x − D)/σ.) So every deterministic sampler, which only integrates that ODE,
runs unchanged on a flow model's samples — the step ``x' = (σ'/σ)·x + (1 − σ'/σ)·D`` is even exact in both
for a constant D. What differs is *fresh noise*: a stochastic step must re-noise to the process's
marginal at σ', and for flow that marginal also shrinks the data by 1 − σ'. This module owns that part.

The trick used throughout: y = x/α is a VE sample at the "VE-equivalent" level s = σ/α (= 1/√SNR), so
any VE noise rule can be applied to y and mapped back (x' = α'·y'). For flow, s = σ/(1 − σ) is infinite
at σ = 1; the helpers below are written in ratios so σ = 1 (the usual first step) needs no special case
in the samplers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

ProcessKind = Literal["ve", "flow"]


@dataclass(frozen=True)
class NoiseProcess:
    """``x_σ = α(σ)·x0 + σ·ε`` with α = 1 (``"ve"``) or α = 1 − σ (``"flow"``)."""

    kind: ProcessKind

    def alpha(self, sigma: float) -> float:
        """The data scale α(σ)."""
        return 1.0 if self.kind == "ve" else 1.0 - sigma

    def noised(self, x0: Tensor, noise: Tensor, sigma: Tensor | float) -> Tensor:
        """``α(σ)·x0 + σ·noise``: a clean latent put at noise level σ (σ scalar or broadcastable)."""
        if self.kind == "ve":
            return x0 + noise * sigma
        return x0 * (1.0 - sigma) + noise * sigma

    def unit_scale(self, sigma: float) -> float:
        """Factor that shows a sample at σ as the unit-variance picture the network sees: 1/√(1 + σ²)
        for VE (x/√(1+σ²) is DDPM's x_t), 1 for flow (its samples never grow)."""
        return 1.0 / math.sqrt(1.0 + sigma * sigma) if self.kind == "ve" else 1.0

    def log_snr_half(self, sigma: float) -> float:
        """λ = log(α/σ) (half the log signal-to-noise ratio); −∞ at pure noise, +∞ at σ = 0.

        Exponential integrators (DPM-Solver++, SDE variants) step in λ; for VE it is −log σ.
        """
        if sigma <= 0.0:
            return math.inf
        a = self.alpha(sigma)
        if a <= 0.0:
            return -math.inf
        return math.log(a) - math.log(sigma)

    def ve_ratio(self, sigma: float, sigma_next: float) -> float:
        """s'/s, the step's ratio of VE-equivalent levels (0 when σ is pure flow noise or σ' = 0)."""
        if self.kind == "ve":
            return sigma_next / sigma
        if sigma >= 1.0 or sigma_next <= 0.0:
            return 0.0
        return sigma_next * (1.0 - sigma) / (sigma * (1.0 - sigma_next))

    def sigma_at(self, lam: float) -> float:
        """Inverse of :meth:`log_snr_half`: the σ whose λ = log(α/σ) is ``lam`` (stages of one-step solvers)."""
        if self.kind == "ve":
            return math.exp(-lam)
        return 1.0 / (1.0 + math.exp(lam)) if lam < 700.0 else math.exp(-lam)

    def step_h(self, sigma: float, sigma_next: float) -> float:
        """h = λ' − λ of the step σ → σ' (> 0 when denoising); +∞ when σ is pure flow noise."""
        if self.kind == "ve":
            return math.log(sigma / sigma_next)
        r = self.ve_ratio(sigma, sigma_next)
        return math.inf if r <= 0.0 else -math.log(r)


VE = NoiseProcess("ve")
FLOW = NoiseProcess("flow")


@dataclass(frozen=True)
class AncestralStep:
    """One ancestral step σ → σ': a deterministic move to ``down``, then ``x' = scale·x_down + up·z``.

    VE: ``scale`` = 1 and (down, up) are Karras/k-diffusion's σ_down, σ_up. Flow: moving to ``down``
    leaves the data at scale 1 − down; ``scale`` = (1 − σ')/(1 − down) brings it to 1 − σ', and ``up``
    tops the noise up to σ' (so ``scale²·down² + up² = σ'²``).
    """

    down: float
    up: float
    scale: float = 1.0

    def renoise(self, x_down: Tensor, z: Tensor | None) -> Tensor:
        """``scale·x_down + up·z`` (``z`` may be None when ``up`` is 0)."""
        if self.up <= 0.0 or z is None:
            return x_down if self.scale == 1.0 else x_down * self.scale
        if self.scale != 1.0:
            x_down = x_down * self.scale
        return x_down + z * self.up


def ve_ancestral_split(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """Split a VE step σ → σ' into a deterministic move to σ_down and fresh noise of std σ_up.

    σ_up² = η²·σ'²(σ² − σ'²)/σ² is DDPM's posterior variance rewritten in VE units (η=1 is ancestral
    DDPM sampling, η=0 deterministic DDIM); σ_down² + σ_up² = σ'² keeps the marginal noise level right.
    """
    if sigma_next <= 0.0 or eta == 0.0:
        return sigma_next, 0.0
    up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    down = math.sqrt(max(sigma_next**2 - up**2, 0.0))
    return down, up


def ancestral_step(process: NoiseProcess, sigma: float, sigma_next: float, eta: float = 1.0) -> AncestralStep:
    """The ancestral split of σ → σ' for ``process``: DDPM's posterior noise at strength η.

    Flow: apply the VE split to the VE-equivalent levels s = σ/(1−σ), s' (the posterior of y = x/α is
    the VE one), then map back: σ_down = s_down/(1 + s_down), noise std (1 − σ')·s_up. At σ = 1 the
    sample holds no information about x0, so η = 1 jumps straight to D and re-noises to σ'.
    """
    if process.kind == "ve":
        down, up = ve_ancestral_split(sigma, sigma_next, eta)
        return AncestralStep(down, up)
    if sigma_next <= 0.0 or eta == 0.0:
        return AncestralStep(sigma_next, 0.0)
    s_next = sigma_next / (1.0 - sigma_next)
    r = process.ve_ratio(sigma, sigma_next)
    s_up = min(s_next, eta * s_next * math.sqrt(max(1.0 - r * r, 0.0)))
    s_down = math.sqrt(max(s_next * s_next - s_up * s_up, 0.0))
    down = s_down / (1.0 + s_down)
    alpha_next = 1.0 - sigma_next
    return AncestralStep(down, alpha_next * s_up, alpha_next / (1.0 - down))
