"""Noise-level bookkeeping for discrete-time (DDPM-trained) Stable Diffusion models.

SD1.x/SD2/SDXL UNets were trained on 1000 discrete timesteps t with a variance-preserving (VP) forward
process ``x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε``. The samplers in this package instead work in the
variance-exploding (VE) "sigma" parameterisation of Karras et al. 2022: ``x_σ = x0 + σ·ε`` with
``σ_t = √((1−ᾱ_t)/ᾱ_t)``. Both describe the same noisy data up to the scale ``√ᾱ = 1/√(σ²+1)``, so a VP
network is used on VE samples by feeding it ``x/√(σ²+1)`` and a timestep recovered from σ.

:class:`ModelSampling` owns that conversion: the 1000-entry σ table, σ ↔ t mapping, the input scaling,
turning the raw network output (ε or v) into an x0 prediction, and how the initial noise is scaled.
:func:`make_denoiser` glues it to a network so samplers only ever see ``denoiser(x, σ) -> x0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from .noise_process import VE, NoiseProcess

BetaSchedule = Literal["scaled_linear", "linear"]
PredictionType = Literal["epsilon", "v_prediction"]
TimestepMode = Literal["fractional", "nearest"]

#: A network in its native (VP) convention: ``model(x_scaled, t) -> ε or v``, with ``t`` a float tensor
#: of shape [B] (fractional or integer-valued timesteps).
NetworkFn = Callable[[Tensor, Tensor], Tensor]
#: What every sampler consumes: ``denoiser(x, sigma_batch) -> x0 prediction`` (``sigma_batch`` shape [B]).
Denoiser = Callable[[Tensor, Tensor], Tensor]


class GuidedDenoiser(Protocol):
    """A denoiser that can also report its *unconditional* x0 prediction, for CFG++ samplers.

    ``with_uncond(x, σ)`` returns (guided, unconditional) from one batched model call; the guider
    computes the unconditional half even at cfg 1 when asked this way (ComfyUI likewise turns off its
    cfg-1 shortcut for CFG++ samplers). Plain samplers only call the denoiser.
    """

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor: ...

    def with_uncond(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]: ...


def _bcast(sigma: Tensor | float, like: Tensor) -> Tensor:
    """Turn a scalar or per-batch sigma into something that broadcasts over ``like`` ([B, ...])."""
    if not isinstance(sigma, Tensor):
        return torch.tensor(sigma, dtype=like.dtype, device=like.device)
    sigma = sigma.to(device=like.device, dtype=like.dtype)
    if sigma.ndim == 0:
        return sigma
    return sigma.reshape(sigma.shape + (1,) * (like.ndim - sigma.ndim))


class AnyModelSampling(Protocol):
    """What schedules, guiders and the sampling driver need from a model's noise bookkeeping.

    Implemented by :class:`ModelSampling` (discrete-time ε/v models, VE samples) and
    :class:`.flow.FlowModelSampling` (rectified flow). ``sigmas`` is the ascending σ table the
    table-walking schedules read; ``timestep``/``sigma`` convert as ComfyUI's model_sampling does.
    """

    process: NoiseProcess
    sigmas: Tensor
    num_train_timesteps: int

    @property
    def sigma_min(self) -> float: ...
    @property
    def sigma_max(self) -> float: ...
    def timestep(self, sigma: Tensor | float) -> Tensor: ...
    def timestep_nearest(self, sigma: Tensor | float) -> Tensor: ...
    def sigma(self, t: Tensor | float) -> Tensor: ...
    def percent_to_sigma(self, percent: float) -> float: ...
    def calculate_input(self, sigma: Tensor | float, x: Tensor) -> Tensor: ...
    def calculate_denoised(self, sigma: Tensor | float, model_output: Tensor, x: Tensor) -> Tensor: ...
    def noise_scaling(
        self, sigma: Tensor | float, noise: Tensor, latent: Tensor, *, mode: Literal["sigma", "comfyui"] = "sigma"
    ) -> Tensor: ...
    def is_max_sigma(self, sigma: float) -> bool: ...


class ModelSampling:
    """σ table and parameterisation helpers for an ε- or v-predicting discrete-time SD model.

    The table is computed exactly as diffusers does (float32 ``linspace`` of betas, float32 cumulative
    product) because bit-for-bit parity with diffusers' schedulers is this project's reference; the
    values differ from ComfyUI's float64 table only in the 7th significant digit.
    """

    process: NoiseProcess = VE

    def __init__(
        self,
        beta_schedule: BetaSchedule = "scaled_linear",
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        num_train_timesteps: int = 1000,
        prediction_type: PredictionType = "epsilon",
    ) -> None:
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"unsupported prediction_type {prediction_type!r}")
        n = num_train_timesteps
        if beta_schedule == "scaled_linear":
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float32) ** 2
        elif beta_schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float32)
        else:
            raise ValueError(f"unsupported beta_schedule {beta_schedule!r}")
        self.beta_schedule: BetaSchedule = beta_schedule
        self.beta_start = beta_start
        self.beta_end = beta_end
        self.num_train_timesteps = n
        self.prediction_type: PredictionType = prediction_type
        self.betas: Tensor = betas
        self.alphas_cumprod: Tensor = torch.cumprod(1.0 - betas, dim=0)
        #: σ_t for t = 0…n−1, ascending, float32.
        self.sigmas: Tensor = ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5
        self.log_sigmas: Tensor = self.sigmas.log()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelSampling:
        """Build from a diffusers scheduler config, so a pipeline's own scheduler settings carry over."""
        return cls(
            beta_schedule=config.get("beta_schedule", "scaled_linear"),
            beta_start=float(config.get("beta_start", 0.00085)),
            beta_end=float(config.get("beta_end", 0.012)),
            num_train_timesteps=int(config.get("num_train_timesteps", 1000)),
            prediction_type=config.get("prediction_type", "epsilon"),
        )

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    # --- σ ↔ t ---------------------------------------------------------------------------------------
    def timestep(self, sigma: Tensor | float) -> Tensor:
        """Fractional timestep for σ by linear interpolation of log σ between table entries.

        This is the rule diffusers' EulerDiscreteScheduler uses, so a network conditioned on these
        timesteps sees exactly what it sees under diffusers. Values outside the table clamp to [0, n−1].
        """
        s = torch.as_tensor(sigma, dtype=torch.float32)
        log_sigma = s.clamp(min=1e-10).log()
        log_table = self.log_sigmas.to(s.device)
        low = (log_sigma.unsqueeze(-1) >= log_table).sum(-1) - 1
        low = low.clamp(0, log_table.shape[0] - 2)
        lo, hi = log_table[low], log_table[low + 1]
        w = ((lo - log_sigma) / (lo - hi)).clamp(0, 1)
        return (1 - w) * low + w * (low + 1)

    def timestep_nearest(self, sigma: Tensor | float) -> Tensor:
        """Integer timestep whose table σ is nearest in log space (ComfyUI feeds the UNet these)."""
        s = torch.as_tensor(sigma, dtype=torch.float32)
        log_sigma = s.clamp(min=1e-10).log()
        dists = (log_sigma.unsqueeze(-1) - self.log_sigmas.to(s.device)).abs()
        return dists.argmin(dim=-1).to(torch.float32)

    def sigma(self, t: Tensor | float) -> Tensor:
        """σ at a (fractional) timestep by log-linear interpolation; the inverse of :meth:`timestep`."""
        tt = torch.as_tensor(t, dtype=torch.float32).clamp(0, self.num_train_timesteps - 1)
        low = tt.floor().long().clamp(max=self.num_train_timesteps - 2)
        w = tt - low
        log_table = self.log_sigmas.to(tt.device)
        return ((1 - w) * log_table[low] + w * log_table[low + 1]).exp()

    def percent_to_sigma(self, percent: float) -> float:
        """σ at a fraction of the way through sampling, as ComfyUI converts timestep ranges: 0 → above
        every σ (1e9), 1 → 0, otherwise σ at table position (1 − percent)·999."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return float(self.sigma((1.0 - percent) * (self.num_train_timesteps - 1)))

    # --- parameterisation ------------------------------------------------------------------------------
    def calculate_input(self, sigma: Tensor | float, x: Tensor) -> Tensor:
        """Scale a VE sample back to the unit-variance VP input the network was trained on."""
        s = _bcast(sigma, x)
        return x / (s * s + 1.0) ** 0.5

    def calculate_denoised(self, sigma: Tensor | float, model_output: Tensor, x: Tensor) -> Tensor:
        """x0 from the network output, given the *unscaled* VE sample ``x``.

        ε-prediction: x = x0 + σ·ε, so x0 = x − σ·ε.
        v-prediction (Salimans & Ho 2022) with α = 1/√(σ²+1), σ_vp = σ/√(σ²+1): v = α·ε − σ_vp·x0 and
        x_vp = α·x0 + σ_vp·ε, hence x0 = α·x_vp − σ_vp·v = x/(σ²+1) − v·σ/√(σ²+1).
        """
        s = _bcast(sigma, x)
        if self.prediction_type == "epsilon":
            return x - s * model_output
        return x / (s * s + 1.0) - model_output * s / (s * s + 1.0) ** 0.5

    # --- start of sampling -----------------------------------------------------------------------------
    def noise_scaling(
        self,
        sigma: Tensor | float,
        noise: Tensor,
        latent: Tensor,
        *,
        mode: Literal["sigma", "comfyui"] = "sigma",
    ) -> Tensor:
        """Put ``latent`` at noise level σ: the starting sample of a sampling run.

        ``"sigma"`` (default, diffusers/k-diffusion parity): ``latent + σ·noise``. diffusers'
        EulerDiscrete with linspace/trailing spacing starts at ``σ_max·noise`` (its init_noise_sigma).
        ``"comfyui"``: ComfyUI uses ``latent + √(1+σ²)·noise`` when σ is the model's σ_max ("max
        denoise") and σ otherwise. For an empty latent the √(1+σ²) scale is the exact marginal std of
        unit-variance data at σ_max; at σ_max ≈ 14.6 the two differ by 0.23 %.
        """
        s = float(sigma)
        if mode == "comfyui" and self.is_max_sigma(s):
            scale = math.sqrt(1.0 + s * s)
        elif mode in ("sigma", "comfyui"):
            scale = s
        else:
            raise ValueError(f"unknown noise scaling mode {mode!r}")
        return latent + noise * scale

    def is_max_sigma(self, sigma: float) -> bool:
        """Whether σ is (at or above) the model's σ_max, i.e. the sample is pure noise."""
        return sigma >= self.sigma_max * (1 - 1e-5)


def make_denoiser(
    model_sampling: AnyModelSampling,
    network: NetworkFn,
    *,
    timestep_mode: TimestepMode = "fractional",
) -> Denoiser:
    """Wrap a network as the x0-predictor samplers expect: ``network(calculate_input(σ, x), t)`` is
    ε or v for a discrete model, the velocity for a flow model (t = σ·multiplier; ``timestep_mode``
    does not apply there).

    ``timestep_mode="fractional"`` conditions the network on interpolated timesteps (diffusers'
    EulerDiscrete behaviour, our parity target); ``"nearest"`` rounds to the nearest table index
    (ComfyUI's behaviour). CFG belongs inside ``network`` (or in a guider wrapped around the result).
    """
    to_t = model_sampling.timestep if timestep_mode == "fractional" else model_sampling.timestep_nearest

    def denoiser(x: Tensor, sigma: Tensor) -> Tensor:
        t = to_t(sigma.float().cpu()).to(x.device)
        out = network(model_sampling.calculate_input(sigma, x), t)
        return model_sampling.calculate_denoised(sigma, out, x)

    return denoiser
