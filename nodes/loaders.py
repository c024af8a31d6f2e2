"""Loader nodes: checkpoints, VAEs, LoRAs, and the CLIP layer setting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graph_engine import Combo, ExecutionContext, Float, InputError, Int, Output, Socket, node
from nodes.folders import list_models, model_identity


def _fingerprint(kind: str, input_id: str) -> Any:
    def fingerprint(values: Mapping[str, Any]) -> tuple[str, int, int]:
        return model_identity(kind, values[input_id])

    return fingerprint


@node(
    "CheckpointLoaderSimple",
    display_name="Load Checkpoint",
    category="loaders",
    inputs=[Combo("ckpt_name", lambda: list_models("checkpoints"))],
    outputs=[Output("MODEL"), Output("CLIP"), Output("VAE")],
    fingerprint=_fingerprint("checkpoints", "ckpt_name"),
)
def checkpoint_loader(ctx: ExecutionContext, ckpt_name: str) -> tuple[Any, Any, Any]:
    """Loads an SD 1.x, 2.x or SDXL checkpoint (.safetensors or a diffusers folder) or an all-in-one SD3.5 or
    FLUX.1 file; the family and architecture are read from the weights (families sdgraph knows but cannot
    run yet are named)."""
    from nodes.diffusion.loading import load_checkpoint

    return load_checkpoint(ctx, ckpt_name)


@node(
    "VAELoader",
    display_name="Load VAE",
    category="loaders",
    inputs=[Combo("vae_name", lambda: list_models("vae"))],
    outputs=[Output("VAE")],
    fingerprint=_fingerprint("vae", "vae_name"),
)
def vae_loader(ctx: ExecutionContext, vae_name: str) -> tuple[Any]:
    """Loads a standalone VAE, to use instead of the checkpoint's own."""
    from nodes.diffusion.loading import load_vae

    return (load_vae(ctx, vae_name),)


@node(
    "UNETLoader",
    display_name="Load Diffusion Model",
    category="advanced/loaders",
    inputs=[
        Combo("unet_name", lambda: list_models("diffusion_models")),
        Combo("weight_dtype", ["default", "fp8_e4m3fn", "fp8_e5m2"], "default"),
    ],
    outputs=[Output("MODEL")],
    fingerprint=_fingerprint("diffusion_models", "unet_name"),
)
def unet_loader(ctx: ExecutionContext, unet_name: str, weight_dtype: str) -> tuple[Any]:
    """Loads a diffusion model alone (SD3/3.5, FLUX.1, Z-Image; from models/diffusion_models): weights stay
    in the dtype they are stored in (or fp8 to halve them; GGUF files stay quantized) and each layer computes
    in the working precision."""
    from nodes.diffusion.loading import load_diffusion_model

    return (load_diffusion_model(ctx, unet_name, weight_dtype),)


def _gguf_models() -> list[str]:
    return [n for n in list_models("diffusion_models") if n.lower().endswith(".gguf")]


@node(
    "UnetLoaderGGUF",
    display_name="Unet Loader (GGUF)",
    category="advanced/loaders",
    inputs=[Combo("unet_name", _gguf_models)],
    outputs=[Output("MODEL")],
    fingerprint=_fingerprint("diffusion_models", "unet_name"),
)
def unet_loader_gguf(ctx: ExecutionContext, unet_name: str) -> tuple[Any]:
    """Loads a GGUF-quantized FLUX.1, SD3/3.5 or Z-Image transformer (models/diffusion_models or models/unet),
    as ComfyUI-GGUF's node does: the weights stay quantized in memory and each layer is dequantized for its
    own call only (UNETLoader reads .gguf files the same way)."""
    from nodes.diffusion.loading import load_diffusion_model

    if not unet_name.lower().endswith(".gguf"):
        raise InputError("unet_name", f"{unet_name} is not a .gguf file; load it with Load Diffusion Model")
    return (load_diffusion_model(ctx, unet_name, "default"),)


@node(
    "LoraLoader",
    display_name="Load LoRA",
    category="loaders",
    inputs=[
        Socket("model", "MODEL"),
        Socket("clip", "CLIP"),
        Combo("lora_name", lambda: list_models("loras")),
        Float("strength_model", 1.0, min=-100.0, max=100.0, step=0.01),
        Float("strength_clip", 1.0, min=-100.0, max=100.0, step=0.01),
    ],
    outputs=[Output("MODEL"), Output("CLIP")],
    fingerprint=_fingerprint("loras", "lora_name"),
)
def lora_loader(
    ctx: ExecutionContext, model: Any, clip: Any, lora_name: str, strength_model: float, strength_clip: float
) -> tuple[Any, Any]:
    """Applies a LoRA (kohya or diffusers format) to the model and text encoder without copying weights."""
    if strength_model == 0 and strength_clip == 0:
        return model, clip
    from nodes.diffusion import lora
    from nodes.diffusion.errors import ModelError
    from nodes.diffusion.loading import resolve

    path = resolve("loras", lora_name, "lora_name")
    try:
        return lora.apply_lora(model, clip, lora.load_lora(path), strength_model, strength_clip)
    except ModelError as exc:
        raise InputError("lora_name", str(exc)) from None


@node(
    "LoraLoaderModelOnly",
    display_name="Load LoRA (model only)",
    category="loaders",
    inputs=[
        Socket("model", "MODEL"),
        Combo("lora_name", lambda: list_models("loras")),
        Float("strength_model", 1.0, min=-100.0, max=100.0, step=0.01),
    ],
    outputs=[Output("MODEL")],
    fingerprint=_fingerprint("loras", "lora_name"),
)
def lora_loader_model_only(ctx: ExecutionContext, model: Any, lora_name: str, strength_model: float) -> tuple[Any]:
    """Applies only a LoRA's UNet layers: for diffusion-model-only workflows (no CLIP wire) and for LoRAs
    whose text-encoder part should stay off; the text-encoder layers in the file are not used."""
    if strength_model == 0:
        return (model,)
    from nodes.diffusion import lora
    from nodes.diffusion.errors import ModelError
    from nodes.diffusion.loading import resolve

    path = resolve("loras", lora_name, "lora_name")
    try:
        new_model, _ = lora.apply_lora(model, None, lora.load_lora(path), strength_model, 0.0)
    except ModelError as exc:
        raise InputError("lora_name", str(exc)) from None
    return (new_model,)


@node(
    "CLIPSetLastLayer",
    display_name="CLIP Set Last Layer",
    category="conditioning",
    inputs=[Socket("clip", "CLIP"), Int("stop_at_clip_layer", -1, min=-24, max=-1)],
    outputs=[Output("CLIP")],
)
def clip_set_last_layer(ctx: ExecutionContext, clip: Any, stop_at_clip_layer: int) -> tuple[Any]:
    """Reads the text encoder's output from an earlier layer ("clip skip")."""
    from nodes import families

    name = getattr(clip, "family", "")
    if name in families.names() and any(s.drop_last_block for s in families.get(name).text_encoders):
        # SD2 checkpoints carry OpenCLIP-H without its last block (the 23-layer encoder diffusers
        # builds), so ComfyUI's -2, its SD2 default, is our -1; its -1 names a layer that is not there.
        stop_at_clip_layer = min(-1, stop_at_clip_layer + 1)
    try:
        return (clip.with_last_layer(stop_at_clip_layer),)
    except ValueError as exc:
        raise InputError("stop_at_clip_layer", str(exc)) from None


NODES = [
    checkpoint_loader,
    vae_loader,
    unet_loader,
    unet_loader_gguf,
    lora_loader,
    lora_loader_model_only,
    clip_set_last_layer,
]
