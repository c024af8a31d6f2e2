"""The values that travel on MODEL and VAE wires, and how a MODEL is asked for a prediction.

A `DiffusionModel` is a light handle: the (shared, never copied) diffusers UNet, what family it is,
how its noise schedule works, and the LoRA patches applied on top. Loaders and LoRA nodes return new
handles around the same UNet, so a graph can hold the base model and a LoRA'd one at no extra memory;
the patches are hooked in only while that handle is being sampled (`DiffusionModel.active`).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from nodes import families
from nodes.diffusion.conditioning import CondEntry, sdxl_time_ids
from nodes.diffusion.controlnet import CONTROL_KEY, control_residuals
from nodes.diffusion.dit.runtime import TEXT_RECIPE_KEY, ConditioningMismatchError
from nodes.diffusion.sampling.model_sampling import AnyModelSampling

# The refiner's size conditioning: no target size, plus an aesthetic score (nodes.families.sdxl_refiner).
SDXL_REFINER_TIME_IDS = 5


@dataclass(frozen=True, eq=False)
class WeightPatch:
    """An update to one module's weight, applied as a forward hook (the weight itself is never written).

    * Low-rank (LoRA, LoCon): ``down``/``up`` set; the layer's output gains ``scale · up(down(x))`` — two
      thin matmuls/convs, no weight-sized tensor anywhere.
    * Dense (LyCORIS LoHa, LoKr, full diff): ``delta`` is ΔW in the weight's shape, computed once when the
      LoRA is applied (a LoHa's Hadamard product or a LoKr's Kronecker product has no cheap factored form);
      the output gains ``scale · (F.linear/conv(x, ΔW) + delta_bias)``.
    * DoRA: ``dora`` is the per-channel factor ``m / ‖W + ΔW‖`` (computed once at apply time, with ΔW at
      strength 1 as LyCORIS and ComfyUI do); the hook turns the output into ``W'x`` with
      ``W' = W + strength · (g ⊙ (W + ΔW) − W)`` without ever forming ``W'``: on the output axis that is a
      per-channel rescale of ``Wx + ΔWx``, on the input axis the input is rescaled before one more call of
      the layer's own op.
    """

    module: torch.nn.Module
    down: Tensor | None
    up: Tensor | None
    scale: float
    delta: Tensor | None = None
    delta_bias: Tensor | None = None
    dora: Tensor | None = None  # shaped to broadcast against the weight: (out, 1, …) or (1, in, …)
    dora_strength: float = 1.0

    @property
    def dora_on_output(self) -> bool:
        """DoRA's norm runs per output channel (LyCORIS' default, PEFT's only form) or per input channel."""
        from nodes.diffusion.lora import _weight_meta  # not module.weight: a packed layer unpacks on access

        return self.dora is not None and self.dora.shape[0] == _weight_meta(self.module)[0][0]

    def update(self, module: torch.nn.Module, x: Tensor) -> Tensor | None:
        """``scale · ΔW x`` (plus the bias diff) for this module's op, or ``None`` if the patch has no ΔW."""
        f = torch.nn.functional
        conv = module if isinstance(module, torch.nn.Conv2d) else None
        d: Tensor | None = None
        if self.down is not None and self.up is not None:
            down = self.down.to(device=x.device, dtype=x.dtype)
            up = self.up.to(device=x.device, dtype=x.dtype)
            if conv is not None:
                d = f.conv2d(f.conv2d(x, down, stride=conv.stride, padding=conv.padding), up)
            else:
                d = f.linear(f.linear(x, down), up)
        elif self.delta is not None:
            delta = self.delta.to(device=x.device, dtype=x.dtype)
            d = conv._conv_forward(x, delta, None) if conv is not None else f.linear(x, delta)
        if self.delta_bias is not None:
            b = self.delta_bias.to(device=x.device, dtype=x.dtype)
            b = b[:, None, None] if conv is not None else b
            d = b if d is None else d + b
        return None if d is None else d * self.scale

    def patched_output(self, module: torch.nn.Module, x: Tensor, output: Tensor) -> Tensor:
        """The layer's output with this patch applied, from its unpatched ``output`` on input ``x``."""
        if self.dora is None:
            d = self.update(module, x)
            return output if d is None else output + d
        assert isinstance(module, torch.nn.Conv2d | torch.nn.Linear)
        conv = module if isinstance(module, torch.nn.Conv2d) else None
        bias = module.bias
        plain = (
            output if bias is None else output - (bias[:, None, None] if conv is not None else bias).to(output.dtype)
        )
        g = self.dora.to(device=x.device, dtype=x.dtype).flatten()
        g = g[:, None, None] if conv is not None else g
        if self.dora_on_output:  # W' x = g ⊙ (W x + ΔW x)
            d = self.update(module, x)
            new = g * (plain if d is None else plain + d)
        else:  # W' x = (W + ΔW)(g ⊙ x)
            xg = x * g
            weight = module.weight.to(x.dtype)
            new = conv._conv_forward(xg, weight, None) if conv is not None else torch.nn.functional.linear(xg, weight)
            d = self.update(module, xg)
            new = new if d is None else new + d
        return output + self.dora_strength * (new - plain)


# The patches in force for the code running now, by module id. A context variable, so each thread (and
# each asyncio task) sees only the handle it is running: two graphs can sample one shared UNet with
# different LoRAs at the same time. The hook on a module is one shared dispatcher that reads this.
_ACTIVE: contextvars.ContextVar[Mapping[int, tuple[WeightPatch, ...]]] = contextvars.ContextVar(
    "sdgraph_active_weight_patches", default=types.MappingProxyType({})
)
# module id → [hook handle, number of patches_applied blocks using it]; the dispatcher is removed when
# the last user leaves, so an unpatched model runs with no hooks at all.
_DISPATCHERS: dict[int, list[Any]] = {}
_DISPATCHERS_LOCK = threading.Lock()


@contextlib.contextmanager
def patches_applied(patches: Sequence[WeightPatch]) -> Iterator[None]:
    """Make LoRA updates active on their modules for the duration of a call, in this thread only.

    The weights are never modified and the hooks are shared dispatchers that look the patches up in a
    context variable, so the same UNet serves every handle in the graph — and every thread: a handle
    sampling on one thread does not see the patches of another handle sampling at the same time.
    """
    if not patches:
        yield
        return
    active = dict(_ACTIVE.get())
    modules: dict[int, torch.nn.Module] = {}
    for p in patches:
        key = id(p.module)
        active[key] = (*active.get(key, ()), p)
        modules[key] = p.module
    with _DISPATCHERS_LOCK:
        for key, module in modules.items():
            entry = _DISPATCHERS.get(key)
            if entry is None:
                _DISPATCHERS[key] = [module.register_forward_hook(_dispatch), 1]
            else:
                entry[1] += 1
    token = _ACTIVE.set(active)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
        with _DISPATCHERS_LOCK:
            for key in modules:
                entry = _DISPATCHERS[key]
                entry[1] -= 1
                if entry[1] == 0:
                    entry[0].remove()
                    del _DISPATCHERS[key]


def _dispatch(module: torch.nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor | None:
    """The forward hook on a patched module: applies the patches active in *this* context, in order."""
    patches = _ACTIVE.get().get(id(module))
    if not patches:
        return None
    x = args[0]
    for p in patches:
        output = p.patched_output(module, x, output)
    return output


@dataclass(frozen=True, eq=False)
class DiffusionModel:
    """The MODEL socket's value."""

    unet: Any  # diffusers UNet2DConditionModel
    family: str  # a supported family of nodes.families: sd1 | sd2 | sdxl | sdxl_refiner | ...
    prediction_type: str  # epsilon | v_prediction | flow
    # How σ maps to the network's timestep and its output to x0: ModelSampling (discrete ε/v) or
    # FlowModelSampling (rectified flow). ModelSampling* nodes return a copy with another one.
    model_sampling: AnyModelSampling
    latent_channels: int = 4
    # LATENT values hold the VAE's own latents; the UNet works on them times this factor. Keeping the
    # factor with the model (not the VAE) lets any VAE file decode any model's latents correctly.
    latent_scale: float = 0.18215
    # The 16-channel VAEs are also centred: the denoiser works on (z − latent_shift)·latent_scale.
    latent_shift: float = 0.0
    inpainting: bool = False
    source: str = ""
    patches: tuple[WeightPatch, ...] = field(default=())
    # Speed options decided by the loader from the device, dtype and settings (nodes/diffusion/runtime.py):
    # feed the UNet channels_last inputs, and run it through torch.compile (per-shape cache).
    channels_last: bool = False
    compile: bool = False
    # The dtype the network computes in when its weights are stored in another (bf16/fp8 files run
    # layer by layer in float32 on a CPU; see nodes.diffusion.dit.runtime). None: the weights' dtype.
    compute_dtype: torch.dtype | None = None

    @property
    def dtype(self) -> torch.dtype:
        if self.compute_dtype is not None:
            return self.compute_dtype
        return next(self.unet.parameters()).dtype

    def to_model_space(self, z: Tensor) -> Tensor:
        """A LATENT value (the VAE's own latent) as the denoiser sees it."""
        return (z - self.latent_shift) * self.latent_scale if self.latent_shift else z * self.latent_scale

    def from_model_space(self, x: Tensor) -> Tensor:
        """The inverse of :meth:`to_model_space`: back to what the VAE decodes."""
        return x / self.latent_scale + self.latent_shift if self.latent_shift else x / self.latent_scale

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def size_conditioning_ids(self) -> int | None:
        """How many SDXL size/crop ids the UNet takes (6 base, 5 refiner), None for families without."""
        if self.family not in families.names(only_supported=False):
            return None
        spec = families.get(self.family).ldm_unet
        return None if spec is None else spec.time_ids

    def with_patches(self, extra: Sequence[WeightPatch]) -> DiffusionModel:
        return replace(self, patches=(*self.patches, *extra))

    def with_model_sampling(self, model_sampling: AnyModelSampling) -> DiffusionModel:
        """A new handle on the same network with another noise parameterisation (ModelSamplingSD3 &
        co.); the shared handle, and every other node holding it, keeps its own."""
        kind = getattr(model_sampling, "prediction_type", self.prediction_type)
        return replace(self, model_sampling=model_sampling, prediction_type=kind)

    def active(self) -> contextlib.AbstractContextManager[None]:
        return patches_applied(self.patches)

    def predict(
        self,
        x_in: Tensor,
        t: Tensor,
        conds: Sequence[CondEntry],
        image_hw: tuple[int, int],
        concat: Tensor | None = None,
        sigma: float | None = None,
    ) -> Tensor:
        """One UNet call on a batch: `x_in` is [N·B, C, h, w], `conds` one entry per N-block of the batch.

        Returns the raw network output (ε or v) in float32. Embeddings of different lengths (a long
        prompt against a short negative) are repeated to a common multiple of 77 tokens, which leaves
        cross-attention unchanged. `concat` ([B, 5, h, w]: mask and masked-image latent) is appended
        to the input channels of inpainting models, unscaled, as they were trained.

        Families whose denoiser is called differently (the flow transformers) name their own call in
        the registry (``ModelFamily.predictor``); this method hands the batch to it.

        Entries carrying ControlNets (``nodes.diffusion.controlnet``) active at `sigma` (all of them when
        `sigma` is None) get their residuals added to the UNet's skip connections; the other entries of
        the batch get none.
        """
        predictor = self._predictor()
        if predictor is not None:
            return predictor(self, x_in, t, conds, sigma=sigma)
        for c in conds:
            recipe = c.extras.get(TEXT_RECIPE_KEY)
            if recipe is not None:
                raise ConditioningMismatchError(
                    f"the conditioning was encoded with {recipe} text encoders, but the model is a "
                    f"{families.get(self.family).display_name} model; encode the prompts with the CLIP "
                    "output of its own checkpoint loader"
                )
        per = x_in.shape[0] // len(conds)
        embeds = _same_length([c.embeds for c in conds])
        context = torch.cat([e.expand(per, -1, -1) for e in embeds]).to(self.device, self.dtype)
        kwargs: dict[str, Any] = {}
        n_ids = self.size_conditioning_ids
        if n_ids is not None:
            h, w = image_hw
            pooled, time_ids = [], []
            for c in conds:
                if c.pooled is None:
                    raise ValueError("SDXL needs pooled text embeddings; encode the prompt with the SDXL checkpoint")
                pooled.append(c.pooled.expand(per, -1))
                ids = sdxl_time_ids(c.extras, image_width=w, image_height=h, refiner=n_ids == SDXL_REFINER_TIME_IDS)
                time_ids.append(ids.expand(per, -1))
            kwargs["added_cond_kwargs"] = {
                "text_embeds": torch.cat(pooled).to(self.device, self.dtype),
                "time_ids": torch.cat(time_ids).to(self.device, self.dtype),
            }
        x = x_in
        if concat is not None:
            extra = concat.to(x)
            if extra.shape[0] != x.shape[0]:  # one for the whole batch, or one per entry already
                extra = extra.repeat(len(conds), 1, 1, 1)
            x = torch.cat([x, extra], dim=1)
        x = x.to(self.device, self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        t = t.to(self.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if any(CONTROL_KEY in c.extras for c in conds):
            # ControlNets see the noisy latent alone: an inpainting UNet's mask channels are its own input.
            noisy = x_in.to(self.device, self.dtype)
            added = kwargs.get("added_cond_kwargs")
            kwargs.update(control_residuals(self, conds, per, noisy, t, context, added, image_hw, sigma))
        out = self._forward(x, context)(x, t, encoder_hidden_states=context, return_dict=False, **kwargs)[0]
        return out.float()

    @property
    def is_transformer(self) -> bool:
        """Whether the family calls its denoiser its own way (the flow transformers), not as a UNet."""
        return self._predictor() is not None

    def _predictor(self) -> Any:
        if self.family not in families.names(only_supported=False):
            return None
        family = families.get(self.family)
        return family.resolve(family.predictor) if family.predictor else None

    def _forward(self, x: Tensor, context: Tensor) -> Any:
        """The UNet, or its compiled form for this input shape when compiling is on and no LoRA is hooked
        in (frozen weights would not see the hooks)."""
        if not self.compile or self.patches:
            return self.unet
        from nodes.diffusion.compile import compiled

        key = (tuple(x.shape), tuple(context.shape), x.dtype, self.channels_last)
        return compiled(self.unet, key=key, channels_last=self.channels_last)


def _same_length(embeds: list[Tensor]) -> list[Tensor]:
    lengths = {e.shape[1] for e in embeds}
    if len(lengths) == 1:
        return embeds
    import math

    target = math.lcm(*lengths)
    return [e.repeat(1, target // e.shape[1], 1) for e in embeds]


@dataclass(frozen=True, eq=False)
class VAEModel:
    """The VAE socket's value. It encodes to and decodes from raw latents (no model scale applied)."""

    vae: Any  # diffusers AutoencoderKL
    source: str = ""
