"""ControlNet nodes, named and wired as ComfyUI's so its workflows run: load a ControlNet, apply it to
conditioning (strength, part of the run), pick a union type, and make a Canny edge map to feed it."""

from __future__ import annotations

from typing import Any

from graph_engine import Combo, ExecutionContext, Float, InputError, Output, Socket, node
from nodes.folders import list_models, model_identity

# ComfyUI's SetUnionControlNetType choices (the control types of the ControlNet Union/ProMax models).
UNION_TYPES = [
    "auto",
    "openpose",
    "depth",
    "hed/pidi/scribble/ted",
    "canny/lineart/anime_lineart/mlsd",
    "normal",
    "segment",
    "tile",
    "repaint",
]


def _controlnet_fingerprint(values: Any) -> tuple[str, int, int]:
    return model_identity("controlnet", values["control_net_name"])


def _load(ctx: ExecutionContext, control_net_name: str) -> Any:
    from nodes.diffusion.controlnet import ControlNet
    from nodes.diffusion.errors import ModelError
    from nodes.diffusion.loading import resolve
    from nodes.diffusion.runtime import device_for, dtypes_for, manager

    path = resolve("controlnet", control_net_name, "control_net_name")
    device = device_for(ctx.device)
    dtype, _, _ = dtypes_for(device, ctx.settings)
    try:
        loaded = manager().controlnet(path, device=device, dtype=dtype)
    except ModelError as exc:
        raise InputError("control_net_name", str(exc)) from None
    return ControlNet(loaded.model, loaded.family, control_net_name)


@node(
    "ControlNetLoader",
    display_name="Load ControlNet Model",
    category="loaders",
    inputs=[Combo("control_net_name", lambda: list_models("controlnet"))],
    outputs=[Output("CONTROL_NET")],
    fingerprint=_controlnet_fingerprint,
)
def controlnet_loader(ctx: ExecutionContext, control_net_name: str) -> tuple[Any]:
    """Loads a ControlNet for SD 1.x, 2.x, SDXL, FLUX.1, SD3 or Z-Image from models/controlnet (an original
    ControlNet 1.1 file, a diffusers-layout file or a diffusers folder; union ones too, their type set by
    SetUnionControlNetType); the family is read from its weights."""
    return (_load(ctx, control_net_name),)


@node(
    "DiffControlNetLoader",
    display_name="Load ControlNet Model (diff)",
    category="loaders",
    inputs=[Socket("model", "MODEL"), Combo("control_net_name", lambda: list_models("controlnet"))],
    outputs=[Output("CONTROL_NET")],
    fingerprint=_controlnet_fingerprint,
)
def diff_controlnet_loader(ctx: ExecutionContext, model: Any, control_net_name: str) -> tuple[Any]:
    """Loads a ControlNet and checks it was made for this model's family. (ComfyUI's "diff" ControlNets
    store weights as differences to the model; today's ControlNet files are whole networks.)"""
    control_net = _load(ctx, control_net_name)
    problem = control_net.misfit(model)
    if problem is not None:
        raise InputError("control_net_name", problem)
    return (control_net,)


def _strength() -> Any:
    return Float("strength", 1.0, min=0.0, max=10.0, step=0.01)


@node(
    "ControlNetApplyAdvanced",
    display_name="Apply ControlNet",
    category="conditioning/controlnet",
    inputs=[
        Socket("positive", "CONDITIONING"),
        Socket("negative", "CONDITIONING"),
        Socket("control_net", "CONTROL_NET"),
        Socket("image", "IMAGE"),
        _strength(),
        Float("start_percent", 0.0, min=0.0, max=1.0, step=0.001),
        Float("end_percent", 1.0, min=0.0, max=1.0, step=0.001),
        Socket("vae", "VAE", optional=True),
    ],
    outputs=[Output("CONDITIONING", "positive"), Output("CONDITIONING", "negative")],
)
def controlnet_apply_advanced(
    ctx: ExecutionContext,
    positive: Any,
    negative: Any,
    control_net: Any,
    image: Any,
    strength: float,
    start_percent: float,
    end_percent: float,
    vae: Any = None,
) -> tuple[Any, Any]:
    """Steers the image with a control image (edges, pose, depth …) through a ControlNet, on both prompts,
    with `strength` and only from `start_percent` to `end_percent` of the run. Apply several to stack them
    (their effects add up). The SD ControlNets take the image as pixels; the FLUX.1 and SD3 ControlNets
    take it encoded by `vae` (the model's VAE), so for them it must be connected."""
    if strength == 0:
        return positive, negative
    if start_percent > end_percent:
        raise InputError(
            "end_percent", f"end_percent ({end_percent}) must not be before start_percent ({start_percent})"
        )
    if getattr(control_net, "is_transformer", False) and vae is None:
        raise InputError(
            "vae",
            f"the {control_net.display_family} ControlNet {control_net.source} takes the control image encoded by "
            "the VAE: connect the model's VAE to the vae input",
        )
    from nodes.diffusion.controlnet import apply_control

    pos, neg = apply_control(
        [positive, negative], control_net, _image(image), strength, start_percent, end_percent, vae=vae
    )
    return pos, neg


@node(
    "ControlNetApplySD3",
    display_name="Apply Controlnet with VAE",
    category="conditioning/controlnet",
    inputs=[
        Socket("positive", "CONDITIONING"),
        Socket("negative", "CONDITIONING"),
        Socket("control_net", "CONTROL_NET"),
        Socket("vae", "VAE"),
        Socket("image", "IMAGE"),
        _strength(),
        Float("start_percent", 0.0, min=0.0, max=1.0, step=0.001),
        Float("end_percent", 1.0, min=0.0, max=1.0, step=0.001),
    ],
    outputs=[Output("CONDITIONING", "positive"), Output("CONDITIONING", "negative")],
)
def controlnet_apply_sd3(
    ctx: ExecutionContext,
    positive: Any,
    negative: Any,
    control_net: Any,
    vae: Any,
    image: Any,
    strength: float,
    start_percent: float,
    end_percent: float,
) -> tuple[Any, Any]:
    """ComfyUI's deprecated form of Apply ControlNet with the VAE required (SD3 and FLUX workflows saved
    before Apply ControlNet had a vae input use it); it does exactly what Apply ControlNet does."""
    pos, neg = controlnet_apply_advanced.execute(
        ctx,
        positive=positive,
        negative=negative,
        control_net=control_net,
        image=image,
        strength=strength,
        start_percent=start_percent,
        end_percent=end_percent,
        vae=vae,
    )
    return pos, neg


@node(
    "ControlNetApply",
    display_name="Apply ControlNet (OLD)",
    category="conditioning/controlnet",
    inputs=[
        Socket("conditioning", "CONDITIONING"),
        Socket("control_net", "CONTROL_NET"),
        Socket("image", "IMAGE"),
        _strength(),
    ],
    outputs=[Output("CONDITIONING")],
)
def controlnet_apply(
    ctx: ExecutionContext, conditioning: Any, control_net: Any, image: Any, strength: float
) -> tuple[Any]:
    """The older form: a ControlNet on one conditioning for the whole run (old workflows use it; Apply
    ControlNet also covers the negative prompt, which is what the ControlNet was trained with)."""
    if strength == 0:
        return (conditioning,)
    if getattr(control_net, "is_transformer", False):
        raise InputError(
            "control_net",
            f"the {control_net.display_family} ControlNet {control_net.source} needs the VAE to encode the control "
            "image; use Apply ControlNet (ControlNetApplyAdvanced) with its vae input connected",
        )
    from nodes.diffusion.controlnet import apply_control

    (out,) = apply_control([conditioning], control_net, _image(image), strength)
    return (out,)


def _image(image: Any) -> Any:
    if getattr(image, "ndim", 0) != 4 or image.shape[-1] not in (1, 3, 4):
        raise InputError("image", "the control image must be an IMAGE ([batch, height, width, channels])")
    if image.shape[-1] == 1:
        image = image.expand(-1, -1, -1, 3)
    return image


@node(
    "SetUnionControlNetType",
    display_name="SetUnionControlNetType",
    category="conditioning/controlnet",
    inputs=[Socket("control_net", "CONTROL_NET"), Combo("type", UNION_TYPES, "auto")],
    outputs=[Output("CONTROL_NET")],
)
def set_union_controlnet_type(ctx: ExecutionContext, control_net: Any, type: str) -> tuple[Any]:
    """Chooses which control type a ControlNet Union/ProMax applies: SDXL's (xinsir's) and FLUX.1's
    (InstantX's, Shakker Labs') get the type's index in this list, as ComfyUI gives it — for the FLUX.1
    unions, whose own order differs (canny 0, tile 1, depth 2, blur 3, pose 4, gray 5, low quality 6), the
    index is what counts (see README). "auto" runs the union model without a type, as ComfyUI does. A
    single-type ControlNet ignores it."""
    from dataclasses import replace

    chosen = replace(control_net, union_type=None if type == "auto" else type)
    problem = chosen.union_problem()
    if problem is not None:
        raise InputError("type", problem)
    return (chosen,)


@node(
    "Canny",
    display_name="Canny",
    category="image/preprocessors",
    inputs=[
        Socket("image", "IMAGE"),
        Float("low_threshold", 0.4, min=0.01, max=0.99, step=0.01),
        Float("high_threshold", 0.8, min=0.01, max=0.99, step=0.01),
    ],
    outputs=[Output("IMAGE")],
)
def canny(ctx: ExecutionContext, image: Any, low_threshold: float, high_threshold: float) -> tuple[Any]:
    """White edges on black (the control image a canny ControlNet takes), by scikit-image's Canny
    detector; the thresholds are on the gradient of the 0..1 grey image, as ComfyUI's."""
    if low_threshold > high_threshold:
        raise InputError(
            "high_threshold", f"high_threshold ({high_threshold}) is below low_threshold ({low_threshold})"
        )
    from nodes.diffusion.edges import canny_edges

    return (canny_edges(image, low_threshold, high_threshold),)


NODES = [
    controlnet_loader,
    diff_controlnet_loader,
    controlnet_apply_advanced,
    controlnet_apply_sd3,
    controlnet_apply,
    set_union_controlnet_type,
    canny,
]
