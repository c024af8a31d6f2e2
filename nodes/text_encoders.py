"""Text-encoder loaders and the per-encoder prompt nodes of SD3 and FLUX, named and shaped as in ComfyUI.

The loaders read standalone encoder files from ``models/text_encoders`` (and the older ``models/clip``)
and give a CLIP for the family named by ``type``; CLIPTextEncode, CLIPSetLastLayer and the nodes below
take it. The work happens in ``nodes.diffusion.clip_loading`` and ``nodes.diffusion.text_encoders``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from graph_engine import Combo, ExecutionContext, Float, InputError, Output, Socket, String, node
from nodes.folders import list_models, model_identity

KIND = "text_encoders"
# ComfyUI's choices, supported ones first in ComfyUI's order; the others import and are refused by name.
CLIP_LOADER_TYPES = (
    "stable_diffusion",
    "stable_cascade",
    "sd3",
    "stable_audio",
    "mochi",
    "ltxv",
    "pixart",
    "cosmos",
    "lumina2",
    "wan",
    "hidream",
    "chroma",
    "ace",
    "omnigen2",
    "qwen_image",
    "hunyuan_image",
    "flux2",
    "ovis",
    "flux",
)
DUAL_CLIP_TYPES = ("sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image", "kandinsky5")
DEVICES = ("default", "cpu")


def _files() -> list[str]:
    return list_models(KIND)


def _fingerprint(*input_ids: str) -> Any:
    def fingerprint(values: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(model_identity(KIND, values[i]) for i in input_ids)

    return fingerprint


@node(
    "CLIPLoader",
    display_name="Load CLIP",
    category="loaders",
    inputs=[
        Combo("clip_name", _files),
        Combo("type", CLIP_LOADER_TYPES, "stable_diffusion"),
        Combo("device", DEVICES, "default", optional=True),
    ],
    outputs=[Output("CLIP")],
    fingerprint=_fingerprint("clip_name"),
)
def clip_loader(ctx: ExecutionContext, clip_name: str, type: str, device: str) -> tuple[Any]:
    """Loads one text-encoder file: CLIP-L (stable_diffusion), any of CLIP-L/CLIP-G/T5-XXL or an all-in-one
    file (sd3), CLIP-L or T5-XXL (flux), Qwen3-4B (lumina2, for Z-Image)."""
    from nodes.diffusion.clip_loading import load_clip

    return (load_clip(ctx, "CLIPLoader", type, [("clip_name", clip_name)], device),)


@node(
    "DualCLIPLoader",
    display_name="Load Dual CLIP",
    category="loaders",
    inputs=[
        Combo("clip_name1", _files),
        Combo("clip_name2", _files),
        Combo("type", DUAL_CLIP_TYPES, "sdxl"),
        Combo("device", DEVICES, "default", optional=True),
    ],
    outputs=[Output("CLIP")],
    fingerprint=_fingerprint("clip_name1", "clip_name2"),
)
def dual_clip_loader(ctx: ExecutionContext, clip_name1: str, clip_name2: str, type: str, device: str) -> tuple[Any]:
    """Loads two text-encoder files: CLIP-L + CLIP-G (sdxl), two of CLIP-L/CLIP-G/T5-XXL (sd3),
    CLIP-L + T5-XXL in either order (flux)."""
    from nodes.diffusion.clip_loading import load_clip

    files = [("clip_name1", clip_name1), ("clip_name2", clip_name2)]
    return (load_clip(ctx, "DualCLIPLoader", type, files, device),)


@node(
    "CLIPLoaderGGUF",
    display_name="CLIPLoader (GGUF)",
    category="loaders",
    inputs=[Combo("clip_name", _files), Combo("type", CLIP_LOADER_TYPES, "stable_diffusion")],
    outputs=[Output("CLIP")],
    fingerprint=_fingerprint("clip_name"),
)
def clip_loader_gguf(ctx: ExecutionContext, clip_name: str, type: str) -> tuple[Any]:
    """ComfyUI-GGUF's name for Load CLIP: a GGUF T5-XXL or Qwen3 (kept quantized, each linear dequantized
    for its own call) or any file Load CLIP reads."""
    from nodes.diffusion.clip_loading import load_clip

    return (load_clip(ctx, "CLIPLoaderGGUF", type, [("clip_name", clip_name)]),)


@node(
    "DualCLIPLoaderGGUF",
    display_name="DualCLIPLoader (GGUF)",
    category="loaders",
    inputs=[Combo("clip_name1", _files), Combo("clip_name2", _files), Combo("type", DUAL_CLIP_TYPES, "sdxl")],
    outputs=[Output("CLIP")],
    fingerprint=_fingerprint("clip_name1", "clip_name2"),
)
def dual_clip_loader_gguf(ctx: ExecutionContext, clip_name1: str, clip_name2: str, type: str) -> tuple[Any]:
    """ComfyUI-GGUF's name for Load Dual CLIP (FLUX: a GGUF T5-XXL with a CLIP-L file)."""
    from nodes.diffusion.clip_loading import load_clip

    files = [("clip_name1", clip_name1), ("clip_name2", clip_name2)]
    return (load_clip(ctx, "DualCLIPLoaderGGUF", type, files),)


@node(
    "TripleCLIPLoader",
    display_name="Load Triple CLIP",
    category="loaders",
    inputs=[Combo("clip_name1", _files), Combo("clip_name2", _files), Combo("clip_name3", _files)],
    outputs=[Output("CLIP")],
    fingerprint=_fingerprint("clip_name1", "clip_name2", "clip_name3"),
)
def triple_clip_loader(ctx: ExecutionContext, clip_name1: str, clip_name2: str, clip_name3: str) -> tuple[Any]:
    """Loads SD3's three text encoders: CLIP-L, CLIP-G and T5-XXL (recognised from the files, any order)."""
    from nodes.diffusion.clip_loading import load_clip

    files = [("clip_name1", clip_name1), ("clip_name2", clip_name2), ("clip_name3", clip_name3)]
    return (load_clip(ctx, "TripleCLIPLoader", "sd3", files),)


def _flow_clip(clip: Any, recipe: str, node_name: str) -> Any:
    from nodes.diffusion.text_encoders import FlowClip

    if clip is None:
        raise InputError("clip", "no text encoder: connect a CLIP loader")
    if not isinstance(clip, FlowClip) or clip.family != recipe:
        family = getattr(clip, "family", type(clip).__name__)
        loader = (
            "DualCLIPLoader with type 'flux'"
            if recipe == "flux"
            else "TripleCLIPLoader or a CLIP loader with type 'sd3'"
        )
        raise InputError(
            "clip", f"{node_name} needs {recipe.upper()} text encoders ({loader}); this CLIP is for {family}."
        )
    return clip


@node(
    "CLIPTextEncodeFlux",
    display_name="Encode Prompt (FLUX)",
    category="conditioning",
    inputs=[
        Socket("clip", "CLIP"),
        String("clip_l", "", multiline=True),
        String("t5xxl", "", multiline=True),
        Float("guidance", 3.5, min=0.0, max=100.0, step=0.1),
    ],
    outputs=[Output("CONDITIONING")],
)
def clip_text_encode_flux(ctx: ExecutionContext, clip: Any, clip_l: str, t5xxl: str, guidance: float) -> tuple[Any]:
    """FLUX prompt: CLIP-L reads `clip_l` (a summary), T5-XXL reads `t5xxl` (the full prompt); `guidance` is
    the distilled guidance strength FLUX.1-dev is conditioned on."""
    flow = _flow_clip(clip, "flux", "CLIPTextEncodeFlux")
    with _embedding_errors_name("clip_l"):
        return (flow.encode_flux(clip_l, t5xxl, guidance=guidance),)


@node(
    "CLIPTextEncodeSD3",
    display_name="Encode Prompt (SD3)",
    category="conditioning",
    inputs=[
        Socket("clip", "CLIP"),
        String("clip_l", "", multiline=True),
        String("clip_g", "", multiline=True),
        String("t5xxl", "", multiline=True),
        Combo("empty_padding", ("none", "empty_prompt"), "none"),
    ],
    outputs=[Output("CONDITIONING")],
)
def clip_text_encode_sd3(
    ctx: ExecutionContext, clip: Any, clip_l: str, clip_g: str, t5xxl: str, empty_padding: str
) -> tuple[Any]:
    """SD3 prompt with one text per encoder. With `empty_padding` "none" an empty text leaves its encoder
    out; "empty_prompt" encodes the empty prompt instead."""
    flow = _flow_clip(clip, "sd3", "CLIPTextEncodeSD3")
    with _embedding_errors_name("clip_l"):
        return (flow.encode_sd3(clip_l, clip_g, t5xxl, empty_padding=empty_padding),)


@contextmanager
def _embedding_errors_name(default: str) -> Iterator[None]:
    """An unknown or unfit ``embedding:name`` becomes an error on the prompt input that named it."""
    from nodes.diffusion.text.embeddings import EmbeddingError

    try:
        yield
    except EmbeddingError as exc:
        raise InputError(exc.field or default, str(exc)) from None


NODES = [
    clip_loader,
    dual_clip_loader,
    clip_loader_gguf,
    dual_clip_loader_gguf,
    triple_clip_loader,
    clip_text_encode_flux,
    clip_text_encode_sd3,
]
