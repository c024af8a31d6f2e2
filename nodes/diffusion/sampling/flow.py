"""Model sampling for flow-matching (rectified flow) models: SD3/3.5, FLUX.1, Z-Image, AuraFlow.

These models were trained on the straight path ``x_σ = (1 − σ)·x0 + σ·ε`` for σ ∈ [0, 1] and predict
its velocity ``v = dx/dσ = ε − x0``, so ``x̂0 = x − σ·v``. The samplers see exactly that x̂0 through the
usual ``denoiser(x, σ) -> x0`` contract and step the same ODE as for VE models (see
:mod:`.noise_process`); only the start sample and fresh noise use the flow marginal.

**Shift.** Training draws σ from a distribution pushed towards high noise; at sampling time the same
push is applied to the schedule: ``σ' = shift·t/(1 + (shift − 1)·t)`` (SD3 paper, eq. 23, "timestep
shifting"; default 3.0 for SD3 and Z-Image). FLUX makes the shift depend on resolution: with ``mu``
linear in the image token count (0.5 at 256 tokens, 1.15 at 4096), ``σ' = e^mu/(e^mu + (1/t − 1))``,
which is the same curve with shift = e^mu. :func:`flux_mu` computes mu as diffusers' ``calculate_shift``
and ComfyUI's ModelSamplingFlux do (a FLUX token is a 2×2 patch of the 8× VAE latent: w·h/256).

**σ table.** For the schedules that walk a table (``simple``, ``beta``, ``ddim_uniform``) the model has
``num_timesteps`` entries ``σ_i = shift(i/num_timesteps)``, i = 1…N, as ComfyUI builds them (N = 1000
for SD3/AuraFlow, 10000 for FLUX). ``timestep(σ) = σ·multiplier`` and ``sigma(t)`` is its inverse with
the shift applied, again as ComfyUI, so ``normal`` gives ComfyUI's flow sigmas too.

**What the network is fed** (record of each reference pipeline in diffusers 0.42; the family's network
wrapper turns ``t = timestep(σ)`` into this and its output into v):

* SD3 (``SD3Transformer2DModel``): timestep σ·1000 (the scheduler's ``timesteps``); returns v.
  → ``FlowModelSampling(shift=3.0, multiplier=1000)``.
* FLUX (``FluxTransformer2DModel``): timestep σ ∈ [0, 1] (``FluxPipeline`` passes ``t/1000``; the
  model multiplies by 1000 itself, and likewise the distilled ``guidance`` value); returns v.
  → ``FlowModelSampling(mu=flux_mu(w, h), multiplier=1.0, num_timesteps=10000)``.
* Z-Image (``ZImageTransformer2DModel``): timestep **1 − σ** (``ZImagePipeline`` passes
  ``(1000 − t)/1000``; the model scales by ``t_scale`` = 1000 inside) and returns **−v** (the pipeline
  negates it before ``scheduler.step``). Its CFG is ``pos + g·(pos − neg)``, i.e. cfg = 1 + g.
  → ``FlowModelSampling(shift=3.0, multiplier=1.0)`` (ComfyUI's ModelSamplingAuraFlow) and the
  wrapper ``v = −net(x, 1 − t)``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from .model_sampling import _bcast
from .noise_process import FLOW, NoiseProcess

# diffusers' calculate_shift / ComfyUI's ModelSamplingFlux constants.
FLUX_BASE_SEQ_LEN = 256
FLUX_MAX_SEQ_LEN = 4096
FLUX_BASE_SHIFT = 0.5
FLUX_MAX_SHIFT = 1.15


def time_shift(shift: float, t: Tensor | np.ndarray | float) -> Tensor | np.ndarray | float:
    """SD3's timestep shift ``shift·t/(1 + (shift − 1)·t)``; shift 1 is the identity."""
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


def calculate_mu(
    image_seq_len: float,
    base_seq_len: int = FLUX_BASE_SEQ_LEN,
    max_seq_len: int = FLUX_MAX_SEQ_LEN,
    base_shift: float = FLUX_BASE_SHIFT,
    max_shift: float = FLUX_MAX_SHIFT,
) -> float:
    """FLUX's mu, linear in the image token count (diffusers' ``calculate_shift``, same arithmetic)."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    b = base_shift - m * base_seq_len
    return float(image_seq_len * m + b)


def flux_mu(width: int, height: int, base_shift: float = FLUX_BASE_SHIFT, max_shift: float = FLUX_MAX_SHIFT) -> float:
    """mu for a ``width``×``height`` pixel image: one token per 16×16 pixels (2×2 patches of the latent)."""
    return calculate_mu(width * height / (8 * 8 * 2 * 2), base_shift=base_shift, max_shift=max_shift)


class FlowModelSampling:
    """σ table, σ ↔ timestep and the x̂0 rule of a velocity-predicting rectified-flow model.

    ``shift`` is SD3's constant shift; passing ``mu`` instead gives FLUX's resolution-dependent form
    ``e^mu/(e^mu + (1/t − 1))`` (same curve as shift = e^mu, evaluated in that form for bit parity with
    diffusers' dynamic shifting). ``multiplier`` scales σ into the timestep the network wrapper receives.
    Immutable in practice: ModelSampling* nodes build a new one rather than changing a shared model's.
    """

    process: NoiseProcess = FLOW
    prediction_type: Literal["flow"] = "flow"

    def __init__(
        self,
        shift: float = 1.0,
        *,
        mu: float | None = None,
        multiplier: float = 1000.0,
        num_timesteps: int = 1000,
    ) -> None:
        if mu is None and not shift > 0:
            raise ValueError(f"shift must be > 0, got {shift}")
        if num_timesteps < 2:
            raise ValueError(f"num_timesteps must be >= 2, got {num_timesteps}")
        self.mu = None if mu is None else float(mu)
        self.shift = math.exp(self.mu) if self.mu is not None else float(shift)
        self.multiplier = float(multiplier)
        self.num_train_timesteps = int(num_timesteps)
        ts = np.arange(1, num_timesteps + 1, dtype=np.float64) / num_timesteps
        #: σ_i = shift(i/N) for i = 1…N, ascending, float32 (ComfyUI's table for flow models).
        self.sigmas: Tensor = torch.from_numpy(np.asarray(self.shifted(ts), dtype=np.float64)).to(torch.float32)
        self.log_sigmas: Tensor = self.sigmas.log()

    def __repr__(self) -> str:
        form = f"mu={self.mu:g}" if self.mu is not None else f"shift={self.shift:g}"
        return f"FlowModelSampling({form}, multiplier={self.multiplier:g}, num_timesteps={self.num_train_timesteps})"

    def shifted(self, t: Tensor | np.ndarray | float) -> Tensor | np.ndarray | float:
        """The shifted noise level for unshifted time t ∈ [0, 1]."""
        if self.mu is None:
            return time_shift(self.shift, t)
        e = math.exp(self.mu)
        if isinstance(t, float | int):
            return 0.0 if t <= 0 else e / (e + (1.0 / t - 1.0))
        return e / (e + (1.0 / t - 1.0))

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    # --- σ ↔ t ---------------------------------------------------------------------------------------
    def timestep(self, sigma: Tensor | float) -> Tensor:
        """What the network wrapper receives: σ·multiplier (continuous, no table lookup)."""
        return torch.as_tensor(sigma, dtype=torch.float32) * self.multiplier

    def timestep_nearest(self, sigma: Tensor | float) -> Tensor:
        """Flow models are conditioned on continuous time; same as :meth:`timestep`."""
        return self.timestep(sigma)

    def sigma(self, t: Tensor | float) -> Tensor:
        """σ for a timestep: the shift applied to t/multiplier (ComfyUI's ``sigma(timestep)``)."""
        tt = torch.as_tensor(t, dtype=torch.float64) / self.multiplier
        return torch.as_tensor(self.shifted(tt.clamp(min=1e-12)), dtype=torch.float32)

    def percent_to_sigma(self, percent: float) -> float:
        """σ at a fraction of the way through sampling (0 → σ = 1, 1 → σ = 0), for timestep ranges."""
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        return float(self.shifted(1.0 - percent))

    # --- parameterisation ------------------------------------------------------------------------------
    def calculate_input(self, sigma: Tensor | float, x: Tensor) -> Tensor:
        """Flow networks take the sample as it is (it already has unit-ish variance)."""
        return x

    def calculate_denoised(self, sigma: Tensor | float, model_output: Tensor, x: Tensor) -> Tensor:
        """x̂0 = x − σ·v for a velocity prediction v = ε − x0."""
        return x - _bcast(sigma, x) * model_output

    def noise_scaling(
        self,
        sigma: Tensor | float,
        noise: Tensor,
        latent: Tensor,
        *,
        mode: Literal["sigma", "comfyui"] = "sigma",
    ) -> Tensor:
        """The start sample ``σ·noise + (1 − σ)·latent`` (txt2img: σ = 1, pure noise; img2img: less).

        ``mode`` is accepted for the shared interface; ComfyUI and diffusers agree here.
        """
        return FLOW.noised(latent, noise, _bcast(sigma, latent))

    def is_max_sigma(self, sigma: float) -> bool:
        return sigma >= self.sigma_max * (1 - 1e-5)

    # --- diffusers parity ------------------------------------------------------------------------------
    def diffusers_sigmas(self, steps: int) -> Tensor:
        """FlowMatchEulerDiscreteScheduler's sigmas for the FLUX/Z-Image pipelines' default request,
        ``set_timesteps(sigmas=np.linspace(1, 1/steps, steps), mu=...)``, bit for bit: the same float32
        arithmetic in the same order (static shift, or the exponential dynamic shift when ``mu`` is set).
        """
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        sig = np.linspace(1.0, 1.0 / steps, steps).astype(np.float32)
        if self.mu is not None:
            sig = math.exp(self.mu) / (math.exp(self.mu) + (1 / sig - 1) ** 1.0)
        else:
            sig = self.shift * sig / (1 + (self.shift - 1) * sig)
        body = torch.from_numpy(np.asarray(sig)).to(torch.float32)
        return torch.cat([body, torch.zeros(1)])
