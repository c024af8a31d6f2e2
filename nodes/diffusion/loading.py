"""From a model name in a workflow to the MODEL, CLIP and VAE values the graph passes around."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from graph_engine import ExecutionContext, InputError
from nodes import families
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
    prepare_vae,
    unet_channels_last,
)
from nodes.diffusion.sampling import ModelSampling
from nodes.folders import model_folders

log = logging.getLogger(__name__)


def resolve(kind: str, name: str, input_id: str) -> Path:
    try:
        return model_folders().resolve(kind, name)
    except ModelError as exc:
        raise InputError(input_id, str(exc)) from None


def load_checkpoint(ctx: ExecutionContext, name: str) -> tuple[DiffusionModel, Any, VAEModel]:
    path = resolve("checkpoints", name, "ckpt_name")
    family = transformer_family_of(path)
    if family is not None:
        return _load_flow_checkpoint(ctx, name, path, family)
    device = device_for(ctx.device)
    unet_dtype, vae_dtype, text_dtype = dtypes_for(device, ctx.settings)
    apply_memory_settings(ctx.settings)
    make_vram_room(device, path.stat().st_size if path.is_file() else 0)
    try:
        ckpt: Any = manager().checkpoint(
            path,
            device=device,
            dtype=unet_dtype,
            vae_dtype=vae_dtype,
            text_dtype=text_dtype,
            unet_channels_last=unet_channels_last(device, unet_dtype, fast=is_fast(ctx.settings)),
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
    return model, clip, served_vae(ctx, ckpt.vae, name)


def served_vae(ctx: ExecutionContext, vae: Any, name: str) -> VAEModel:
    """The VAE socket's value, its memory layout set for this run's precision mode (`prepare_vae`)."""
    prepare_vae(vae, fast=is_fast(ctx.settings))
    return VAEModel(vae, name)


def load_vae(ctx: ExecutionContext, name: str) -> VAEModel:
    path = resolve("vae", name, "vae_name")
    device = device_for(ctx.device)
    _, vae_dtype, _ = dtypes_for(device, ctx.settings)
    try:
        if _is_vae16(path):
            return served_vae(ctx, manager().vae16(path, device=device, dtype=vae_dtype), name)
        loaded: Any = manager().vae(path, device=device, dtype=vae_dtype)
    except ModelError as exc:
        raise InputError("vae_name", str(exc)) from None
    return served_vae(ctx, getattr(loaded, "vae", loaded), name)


# --------------------------------------------------------------------------------------------
# The flow-matching transformer families (SD3/3.5, FLUX.1, Z-Image)
# --------------------------------------------------------------------------------------------


def transformer_family_of(path: Path) -> families.ModelFamily | None:
    """The transformer family of a checkpoint file or folder, None for anything else (the SD path
    then reports what it is)."""
    from nodes.diffusion.checkpoint.files import read_shapes

    try:
        if path.is_dir():
            if (path / "model_index.json").is_file():
                folder = families.read_diffusers_folder(path)
                found = next((f for f in families.FAMILIES if folder.pipeline in f.diffusers_pipelines), None)
                return found if found is not None and found.denoiser_loader else None
            return None
        family = families.recognise_single_file(read_shapes(path))
    except (ModelError, OSError, ValueError):
        return None
    return family if family is not None and family.supported and family.denoiser_loader else None


def _is_vae16(path: Path) -> bool:
    from nodes.diffusion.checkpoint.files import read_shapes
    from nodes.diffusion.dit import autoencoder

    if path.is_dir():
        return False
    try:
        return autoencoder.recognise(read_shapes(path))
    except (ModelError, OSError, ValueError):
        return False


def flow_model(loaded: Any, source: str) -> DiffusionModel:
    """The MODEL value of a loaded transformer, with its family's latent format and default sampling."""
    from nodes.diffusion.dit.loading import model_sampling_for

    family = families.get(loaded.family)
    assert family.latent is not None
    return DiffusionModel(
        unet=loaded.network,
        family=family.name,
        prediction_type="flow",
        model_sampling=model_sampling_for(family.name, loaded.variant),
        latent_channels=family.latent.channels,
        latent_scale=family.latent.scaling_factor,
        latent_shift=family.latent.shift_factor,
        source=source,
        compute_dtype=loaded.compute_dtype,
    )


def load_diffusion_model(ctx: ExecutionContext, name: str, weight_dtype: str) -> DiffusionModel:
    """UNETLoader: a diffusion model alone (``models/diffusion_models``), as ComfyUI users download them."""
    path = resolve("diffusion_models", name, "unet_name")
    device = device_for(ctx.device)
    compute, _, _ = dtypes_for(device, ctx.settings)
    apply_memory_settings(ctx.settings)
    size = _size(path)  # a folder is walked once
    stream = _over_budget(name, size // (2 if weight_dtype.startswith("fp8") else 1))
    make_vram_room(device, 0 if stream else size)
    try:
        loaded = manager().diffusion_model(path, device=device, dtype=compute, weight_dtype=weight_dtype, stream=stream)
    except ModelError as exc:
        raise InputError("unet_name", str(exc)) from None
    return flow_model(loaded, name)


def _load_flow_checkpoint(
    ctx: ExecutionContext, name: str, path: Path, family: families.ModelFamily
) -> tuple[DiffusionModel, Any, VAEModel]:
    """An all-in-one SD3.5 or FLUX file: transformer, VAE and text encoders under their usual prefixes."""
    from nodes.diffusion.checkpoint.files import read_shapes
    from nodes.diffusion.clip_loading import fetch_encoders
    from nodes.diffusion.text.encoder_files import read_encoders, stored_dtype
    from nodes.diffusion.text_encoders import ClipFileError, assign_roles, build_clip_value, encoder_dtype

    if path.is_dir():
        return _load_flow_folder(ctx, name, path, family)
    shapes = read_shapes(path)
    module = importlib.import_module(family.resolve_module(family.denoiser_loader))
    parts = module.components(shapes) if hasattr(module, "components") else {"vae": None}
    try:
        encoders = [e for e in read_encoders(path) if e.prefix.startswith("text_encoders.")]
    except ModelError:  # no text encoder in the file at all
        encoders = []
    if not parts.get("vae"):
        raise InputError(
            "ckpt_name",
            f"{name} holds only the {family.display_name} diffusion model, not a whole checkpoint: put it in "
            "models/diffusion_models and load it with Load Diffusion Model (UNETLoader), with its text "
            "encoders (a CLIP loader) and VAE (Load VAE)",
        )
    device = device_for(ctx.device)
    compute, vae_dtype, text_dtype = dtypes_for(device, ctx.settings)
    apply_memory_settings(ctx.settings)
    size = _size(path)
    stream = _over_budget(name, size)
    make_vram_room(device, 0 if stream else size)
    clip_type = family.clip_type
    assert clip_type is not None
    try:
        loaded = manager().diffusion_model(path, device=device, dtype=compute, stream=stream)
        vae = manager().vae16(path, device=device, dtype=vae_dtype)
        if not encoders:  # the official SD3.5 single files: MMDiT and VAE, text encoders separate
            return flow_model(loaded, name), NoTextEncoders(name, family), served_vae(ctx, vae, name)
        roles = assign_roles(clip_type, "CheckpointLoaderSimple", [("ckpt_name", name, e) for e in encoders])
        requests = [
            (
                enc.role,
                dict(
                    path=path,
                    prefix=enc.prefix,
                    role=enc.role,
                    device=device,
                    dtype=encoder_dtype(enc.role, stored_dtype(path, enc.prefix), text_dtype),
                ),
            )
            for _, enc in roles
        ]
        modules = fetch_encoders(requests)
    except (ModelError, ClipFileError) as exc:
        raise InputError("ckpt_name", str(exc)) from None
    clip = build_clip_value(clip_type, modules, fetch=lambda: fetch_encoders(requests))
    return flow_model(loaded, name), clip, served_vae(ctx, vae, name)


def _load_flow_folder(
    ctx: ExecutionContext, name: str, path: Path, family: families.ModelFamily
) -> tuple[DiffusionModel, Any, VAEModel]:
    """A diffusers pipeline folder (``model_index.json``) of a transformer family: the transformer and VAE
    through the model manager, the text encoders with transformers from their own sub-folders."""
    import transformers

    from nodes.diffusion.text.encoder_files import CLIP_G, CLIP_L, QWEN3, T5XXL
    from nodes.diffusion.text_encoders import build_clip_value

    device = device_for(ctx.device)
    compute, vae_dtype, text_dtype = dtypes_for(device, ctx.settings)
    apply_memory_settings(ctx.settings)
    stream = _over_budget(name, _size(path / "transformer"))
    make_vram_room(device, _size(path) - (_size(path / "transformer") if stream else 0))
    modules: dict[str, Any] = {}
    try:
        loaded = manager().diffusion_model(path, device=device, dtype=compute, stream=stream)
        vae = manager().vae16(path, device=device, dtype=vae_dtype)
        for slot in family.text_encoders:
            folder = path / slot.component
            if not (folder / "config.json").is_file():
                continue
            clip_role = CLIP_L if slot.component == "text_encoder" else CLIP_G
            role = {"t5": T5XXL, "qwen3": QWEN3}.get(slot.layout, clip_role)
            small = slot.layout == "clip"  # CLIPs run in the text dtype; T5/Qwen3 stay as stored
            cls = getattr(transformers, slot.transformers_class)
            encoder = cls.from_pretrained(folder, torch_dtype=text_dtype if small else "auto", local_files_only=True)
            modules[role] = encoder.to(device).eval().requires_grad_(False)
    except (ModelError, OSError, ValueError) as exc:
        raise InputError("ckpt_name", f"{name}: {exc}") from None
    assert family.clip_type is not None
    clip = build_clip_value(family.clip_type, modules) if modules else NoTextEncoders(name, family)
    return flow_model(loaded, name), clip, served_vae(ctx, vae, name)


class NoTextEncoders:
    """The CLIP output of a checkpoint that has no text encoders: encoding with it says what to do."""

    def __init__(self, name: str, family: families.ModelFamily) -> None:
        self.name = name
        self.family = family.name
        self._display = family.display_name

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        loader = "TripleCLIPLoader (CLIP-L, CLIP-G, T5-XXL)" if self.family == "sd3" else "DualCLIPLoader (type flux)"
        raise InputError(
            "clip",
            f"{self.name} holds no text encoders; load the {self._display} text encoders with {loader} and "
            "connect its CLIP instead",
        )

    encode = encode_sd3 = encode_flux = with_last_layer = with_t5_length = _refuse

    def __repr__(self) -> str:
        return f"NoTextEncoders({self.name!r})"


_told_streaming: set[tuple[str, int]] = set()


def _over_budget(name: str, needed: int) -> bool:
    """Whether a transformer's weights alone exceed the model budget (what the manager may keep in
    memory). Such a model is not refused: it is streamed block by block from its file
    (``nodes.diffusion.dit.streaming``), and the user is told so once (a logged warning: stderr for
    ``sdgraph run``; the window has no view of the log yet, so there it reaches only the terminal)."""
    from nodes.diffusion.dit.streaming import over_budget_message

    budget = manager().budget_bytes
    if needed <= budget:
        return False
    if (name, budget) not in _told_streaming:
        _told_streaming.add((name, budget))
        log.warning("%s", over_budget_message(name, needed, budget))
    return True


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
