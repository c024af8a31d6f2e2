"""From a model name in a workflow to the MODEL, CLIP and VAE values the graph passes around."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graph_engine import ExecutionContext, InputError
from nodes.diffusion.clip import ClipModel
from nodes.diffusion.errors import ModelError
from nodes.diffusion.model import DiffusionModel, VAEModel
from nodes.diffusion.runtime import (
    apply_memory_settings,
    compile_enabled,
    device_for,
    dtypes_for,
    is_fast,
    make_vram_room,
    manager,
    prepare_unet,
)
from nodes.diffusion.sampling import ModelSampling
from nodes.folders import model_folders


def resolve(kind: str, name: str, input_id: str) -> Path:
    try:
        return model_folders().resolve(kind, name)
    except ModelError as exc:
        raise InputError(input_id, str(exc)) from None


def load_checkpoint(ctx: ExecutionContext, name: str) -> tuple[DiffusionModel, ClipModel, VAEModel]:
    path = resolve("checkpoints", name, "ckpt_name")
    device = device_for(ctx.device)
    unet_dtype, vae_dtype, text_dtype = dtypes_for(device, ctx.settings)
    apply_memory_settings(ctx.settings)
    make_vram_room(device, path.stat().st_size if path.is_file() else 0)
    try:
        ckpt: Any = manager().checkpoint(
            path, device=device, dtype=unet_dtype, vae_dtype=vae_dtype, text_dtype=text_dtype
        )
    except ModelError as exc:
        raise InputError("ckpt_name", str(exc)) from None
    channels_last = prepare_unet(ckpt.unet, device, unet_dtype, fast=is_fast(ctx.settings))
    config = dict(ckpt.scheduler_config, prediction_type=ckpt.prediction_type)
    model = DiffusionModel(
        unet=ckpt.unet,
        family=ckpt.family,
        prediction_type=ckpt.prediction_type,
        model_sampling=ModelSampling.from_config(config),
        latent_channels=ckpt.latent_channels,
        latent_scale=float(ckpt.vae_scaling_factor),
        inpainting=ckpt.inpainting,
        source=name,
        channels_last=channels_last,
        compile=compile_enabled(ctx.settings),
    )
    clip = ClipModel(ckpt.family, ckpt.text_encoders)
    if ckpt.vae is None:
        raise InputError("ckpt_name", f"{name} has no VAE; add a Load VAE node")
    return model, clip, VAEModel(ckpt.vae, name)


def load_vae(ctx: ExecutionContext, name: str) -> VAEModel:
    path = resolve("vae", name, "vae_name")
    device = device_for(ctx.device)
    _, vae_dtype, _ = dtypes_for(device, ctx.settings)
    try:
        loaded: Any = manager().vae(path, device=device, dtype=vae_dtype)
    except ModelError as exc:
        raise InputError("vae_name", str(exc)) from None
    return VAEModel(getattr(loaded, "vae", loaded), name)
