"""The socket type table: which values flow along which wires.

Every input and output of every node carries one of these type names. A wire may join an output to an
input only when `types_compatible` says so; the reason it gives is shown to the person dragging the wire,
so it is phrased for them ("LATENT cannot feed IMAGE"), not for a programmer.
"""

from __future__ import annotations

from dataclasses import dataclass

ANY = "ANY"

# Types whose values are edited inline on a node (a widget) rather than only arriving over a wire.
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})


@dataclass(frozen=True)
class TypeInfo:
    """What the UI and the validator need to know about one socket type."""

    name: str
    color: str
    description: str


TYPES: dict[str, TypeInfo] = {
    t.name: t
    for t in (
        TypeInfo("MODEL", "#b39ddb", "a diffusion model (the UNet) with its noise schedule"),
        TypeInfo("CLIP", "#ffd54f", "text encoder(s) and tokenizer(s)"),
        TypeInfo("VAE", "#ef5350", "the autoencoder between pixels and latents"),
        TypeInfo("CONDITIONING", "#ffa726", "encoded prompt(s)"),
        TypeInfo("LATENT", "#f48fb1", "a batch of latents, optionally with a noise mask"),
        TypeInfo("IMAGE", "#64b5f6", "a batch of RGB images, float 0..1, [B, H, W, C]"),
        TypeInfo("MASK", "#81c784", "a batch of masks, float 0..1, [B, H, W]"),
        TypeInfo("CONTROL_NET", "#00d78d", "a ControlNet: steers sampling with an image (edges, pose, depth)"),
        TypeInfo("UPSCALE_MODEL", "#7e57c2", "an image upscale model (ESRGAN, SwinIR, …)"),
        TypeInfo("GUIDER", "#66ffcc", "a model with its conditioning and guidance rule"),
        TypeInfo("SAMPLER", "#ecb4b4", "a sampling algorithm"),
        TypeInfo("SIGMAS", "#cdffcd", "a descending list of noise levels"),
        TypeInfo("NOISE", "#b0b0b0", "a source of initial noise"),
        TypeInfo("INT", "#a5d6a7", "a whole number"),
        TypeInfo("FLOAT", "#90caf9", "a number"),
        TypeInfo("STRING", "#fff59d", "text"),
        TypeInfo("BOOLEAN", "#ce93d8", "on or off"),
        TypeInfo("COMBO", "#bcaaa4", "one choice from a list"),
        TypeInfo(ANY, "#eeeeee", "anything"),
    )
}


def is_known_type(name: str) -> bool:
    return name in TYPES


def types_compatible(output_type: str, input_type: str) -> str | None:
    """None when a value of `output_type` may feed an input of `input_type`, else the reason it may not.

    ANY on either side matches, so a generic node (a reroute, a preview of anything) can sit anywhere.
    A STRING may feed a COMBO: a combo's value is one of its choices, which validation checks separately.
    """
    if output_type == input_type or ANY in (output_type, input_type):
        return None
    if output_type == "STRING" and input_type == "COMBO":
        return None
    return f"{output_type} cannot feed {input_type}"
