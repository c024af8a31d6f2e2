"""Model sampling nodes: make a MODEL a flow-matching model with a given timestep shift.

Named and shaped as ComfyUI's (`comfy_extras/nodes_model_advanced.py`): ModelSamplingSD3 (constant
shift, timestep = σ·1000), ModelSamplingAuraFlow (the same with timestep = σ, Z-Image's and AuraFlow's
convention) and ModelSamplingFlux (shift from the image size). Each returns a new MODEL handle on the same
network with the new noise bookkeeping; the input handle is never changed, so other branches of the graph
keep theirs. Applied to an SD1/SDXL model it makes the UNet be *treated* as a flow model, as in ComfyUI
(only useful for models fine-tuned that way). The maths is in `nodes.diffusion.sampling.flow`.
"""

from __future__ import annotations

from typing import Any

from graph_engine import ExecutionContext, Float, InputError, Int, Output, Socket, node

MAX_RESOLUTION = 16384


def _flow(model: Any, **kwargs: Any) -> Any:
    from nodes.diffusion.sampling import FlowModelSampling

    return model.with_model_sampling(FlowModelSampling(**kwargs))


def _check_shift(shift: float) -> None:
    if shift <= 0.0:
        raise InputError("shift", f"the shift must be above 0 (got {shift}); 1.0 means no shift")


@node(
    "ModelSamplingSD3",
    display_name="Model Sampling (SD3)",
    category="advanced/model",
    inputs=[Socket("model", "MODEL"), Float("shift", 3.0, min=0.0, max=100.0, step=0.01)],
    outputs=[Output("MODEL")],
)
def model_sampling_sd3(ctx: ExecutionContext, model: Any, shift: float) -> tuple[Any]:
    """Rectified-flow sampling with SD3's constant timestep shift (higher: more steps at high noise)."""
    _check_shift(shift)
    return (_flow(model, shift=shift, multiplier=1000.0),)


@node(
    "ModelSamplingAuraFlow",
    display_name="Model Sampling (AuraFlow)",
    category="advanced/model",
    inputs=[Socket("model", "MODEL"), Float("shift", 1.73, min=0.0, max=100.0, step=0.01)],
    outputs=[Output("MODEL")],
)
def model_sampling_aura_flow(ctx: ExecutionContext, model: Any, shift: float) -> tuple[Any]:
    """Like Model Sampling (SD3) for models conditioned on σ itself (AuraFlow, Lumina 2, Z-Image)."""
    _check_shift(shift)
    return (_flow(model, shift=shift, multiplier=1.0),)


@node(
    "ModelSamplingFlux",
    display_name="Model Sampling (FLUX)",
    category="advanced/model",
    inputs=[
        Socket("model", "MODEL"),
        Float("max_shift", 1.15, min=0.0, max=100.0, step=0.01),
        Float("base_shift", 0.5, min=0.0, max=100.0, step=0.01),
        Int("width", 1024, min=16, max=MAX_RESOLUTION, step=8),
        Int("height", 1024, min=16, max=MAX_RESOLUTION, step=8),
    ],
    outputs=[Output("MODEL")],
)
def model_sampling_flux(
    ctx: ExecutionContext, model: Any, max_shift: float, base_shift: float, width: int, height: int
) -> tuple[Any]:
    """FLUX's resolution-dependent shift: base_shift at 256 image tokens (256² px), max_shift at 4096
    (1024² px), linear in the token count; set width and height to the image being generated."""
    from nodes.diffusion.sampling import flux_mu

    mu = flux_mu(width, height, base_shift=base_shift, max_shift=max_shift)
    return (_flow(model, mu=mu, multiplier=1.0, num_timesteps=10000),)


NODES = [model_sampling_sd3, model_sampling_aura_flow, model_sampling_flux]
