"""Prompt nodes: encode text with CLIP, combine and zero out conditioning."""

from __future__ import annotations

from typing import Any

from graph_engine import ExecutionContext, Float, InputError, Int, Output, Socket, String, node


@node(
    "CLIPTextEncode",
    display_name="Encode Prompt",
    category="conditioning",
    inputs=[String("text", "", multiline=True), Socket("clip", "CLIP")],
    outputs=[Output("CONDITIONING")],
)
def clip_text_encode(ctx: ExecutionContext, text: str, clip: Any) -> tuple[Any]:
    """Encodes a prompt; `(word:1.2)`, `(word)` and `[word]` change a word's weight, `embedding:name` (or
    `embedding:name:1.2`) uses a textual inversion from models/embeddings, and prompts longer than 75
    tokens are encoded in 77-token chunks."""
    if clip is None:
        raise InputError("clip", "no text encoder: this checkpoint has none")
    from nodes.diffusion.text.embeddings import EmbeddingError

    try:
        return (clip.encode(text),)
    except EmbeddingError as exc:
        raise InputError("text", str(exc)) from None


@node(
    "CLIPTextEncodeSDXL",
    display_name="Encode Prompt (SDXL size)",
    category="conditioning",
    inputs=[
        Socket("clip", "CLIP"),
        Int("width", 1024, min=0, max=16384),
        Int("height", 1024, min=0, max=16384),
        Int("crop_w", 0, min=0, max=16384),
        Int("crop_h", 0, min=0, max=16384),
        Int("target_width", 1024, min=0, max=16384),
        Int("target_height", 1024, min=0, max=16384),
        String("text_g", "", multiline=True),
        String("text_l", "", multiline=True),
    ],
    outputs=[Output("CONDITIONING")],
)
def clip_text_encode_sdxl(
    ctx: ExecutionContext,
    clip: Any,
    width: int,
    height: int,
    crop_w: int,
    crop_h: int,
    target_width: int,
    target_height: int,
    text_g: str,
    text_l: str,
) -> tuple[Any]:
    """SDXL prompt with size conditioning (the size the model is told the image had and is cropped from).
    Both encoders read `text_g`; `text_l` is used when `text_g` is empty."""
    extras = {
        "width": width,
        "height": height,
        "crop_w": crop_w,
        "crop_h": crop_h,
        "target_width": target_width,
        "target_height": target_height,
    }
    from nodes.diffusion.text.embeddings import EmbeddingError

    try:
        return (clip.encode(text_g or text_l, extras),)
    except EmbeddingError as exc:
        raise InputError("text_g" if text_g else "text_l", str(exc)) from None


@node(
    "ConditioningCombine",
    display_name="Combine Conditioning",
    category="conditioning",
    inputs=[Socket("conditioning_1", "CONDITIONING"), Socket("conditioning_2", "CONDITIONING")],
    outputs=[Output("CONDITIONING")],
)
def conditioning_combine(ctx: ExecutionContext, conditioning_1: Any, conditioning_2: Any) -> tuple[Any]:
    """Both prompts guide the image; the sampler averages their predictions."""
    from nodes.diffusion.conditioning import combine

    return (combine(conditioning_1, conditioning_2),)


@node(
    "ConditioningZeroOut",
    display_name="Zero Out Conditioning",
    category="conditioning",
    inputs=[Socket("conditioning", "CONDITIONING")],
    outputs=[Output("CONDITIONING")],
)
def conditioning_zero_out(ctx: ExecutionContext, conditioning: Any) -> tuple[Any]:
    """All-zero embeddings of the same shape: the usual SDXL negative."""
    from nodes.diffusion.conditioning import zero_out

    return (zero_out(conditioning),)


@node(
    "ConditioningSetTimestepRange",
    display_name="Conditioning Timestep Range",
    category="advanced/conditioning",
    inputs=[
        Socket("conditioning", "CONDITIONING"),
        Float("start", 0.0, min=0.0, max=1.0, step=0.001),
        Float("end", 1.0, min=0.0, max=1.0, step=0.001),
    ],
    outputs=[Output("CONDITIONING")],
)
def conditioning_set_timestep_range(ctx: ExecutionContext, conditioning: Any, start: float, end: float) -> tuple[Any]:
    """This prompt guides only part of the run: from `start` to `end` (0 = pure noise, 1 = the clean
    image). Combine it with another prompt covering the rest, e.g. composition first, details later."""
    from nodes.diffusion.conditioning import with_timestep_range

    if start > end:
        raise InputError("end", f"end ({end}) must not be before start ({start})")
    return (with_timestep_range(conditioning, start, end),)


@node(
    "FluxGuidance",
    display_name="FLUX Guidance",
    category="advanced/conditioning/flux",
    inputs=[Socket("conditioning", "CONDITIONING"), Float("guidance", 3.5, min=0.0, max=100.0, step=0.1)],
    outputs=[Output("CONDITIONING")],
)
def flux_guidance(ctx: ExecutionContext, conditioning: Any, guidance: float) -> tuple[Any]:
    """The guidance strength a guidance-distilled model (FLUX.1-dev) is conditioned on; it replaces CFG,
    so sample with cfg 1 (FLUX.1-schnell ignores it)."""
    from nodes.diffusion.conditioning import GUIDANCE_KEY, with_extras

    return (with_extras(conditioning, **{GUIDANCE_KEY: float(guidance)}),)


NODES = [
    clip_text_encode,
    clip_text_encode_sdxl,
    conditioning_combine,
    conditioning_zero_out,
    conditioning_set_timestep_range,
    flux_guidance,
]
