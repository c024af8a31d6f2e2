"""Building diffusers/transformers models from checkpoints on disk, offline.

Two inputs are supported: a single file in the original LDM layout (``.safetensors``; ``.ckpt``/``.pt``
only with ``allow_pickle=True``) and a diffusers folder (``model_index.json``, ``unet/``, ``vae/``,
``text_encoder[_2]/``). Both end in the same steps:

1. decide the architecture (``detect.py`` for single files, the folder's own ``config.json`` files),
2. build every model on the *meta* device (no memory, no random init),
3. read weights lazily from the memory-mapped file, each cast to the component's dtype on access,
   renamed with diffusers' own LDM converters for single files,
4. ``load_state_dict(assign=True)``: parameters become those tensors, so an fp16 file loaded as fp16
   on the CPU is never copied, and an fp32 file loaded as bf16 holds one fp32 tensor at a time,
5. refuse the result if any weight is missing or still on the meta device (accelerate would otherwise
   leave it there silently and fail at the first forward), naming the component.

Nothing here touches the network: we never hand diffusers a repo id or let it look for configs, and
``HF_HUB_OFFLINE`` is set before diffusers/transformers are imported.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights  # type: ignore[import-untyped]
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from nodes.diffusion.checkpoint.detect import (
    DetectedModel,
    TextEncoderSpec,
    base_config,
    detect_checkpoint,
    detect_vae_file,
    expected_text_encoders,
    read_overrides,
)
from nodes.diffusion.checkpoint.files import (
    PICKLE_SUFFIXES,
    LazyStateDict,
    MappedStateDict,
    load_pickle_checkpoint,
    open_state_dict,
    read_safetensors_header,
)
from nodes.diffusion.errors import (
    CorruptCheckpointError,
    MissingComponentError,
    ModelError,
    PickleRefusedError,
    UnknownArchitectureError,
    UnsupportedFamilyError,
)
from nodes.families import read_diffusers_folder, recognise_diffusers_folder

log = logging.getLogger(__name__)

TextEncoder = CLIPTextModel | CLIPTextModelWithProjection


@dataclass
class LoadedCheckpoint:
    """The models of one checkpoint, ready for inference (eval mode, no grad), on one device."""

    family: str  # "sd1", "sd2", "sdxl", "sdxl_refiner"
    prediction_type: str  # "epsilon" or "v_prediction"
    unet: UNet2DConditionModel
    vae: AutoencoderKL | None  # None only when loaded with require_vae=False from a VAE-less file
    vae_scaling_factor: float
    text_encoders: list[TextEncoder]  # pipeline order: [L] SD1/SD2(H), [L, bigG] SDXL, [bigG] refiner
    scheduler_config: dict[str, Any]
    latent_channels: int
    dtype: torch.dtype  # the UNet's
    vae_dtype: torch.dtype
    text_dtype: torch.dtype
    device: torch.device
    source: Path
    inpainting: bool = False
    prediction_source: str = "default"
    notes: list[str] = field(default_factory=list)

    def modules(self) -> list[torch.nn.Module]:
        mods: list[torch.nn.Module] = [self.unet, *self.text_encoders]
        if self.vae is not None:
            mods.append(self.vae)
        return mods

    def nbytes(self) -> int:
        """Bytes held by all weights and buffers; what the model manager budgets with."""
        return sum(module_nbytes(m) for m in self.modules())

    def to(self, device: str | torch.device) -> LoadedCheckpoint:
        """Move every model (in place) and record the new device; used to offload off a GPU."""
        device = torch.device(device)
        for m in self.modules():
            m.to(device)
        self.device = device
        return self


def module_nbytes(module: torch.nn.Module) -> int:
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def load_checkpoint(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    vae_dtype: torch.dtype | None = None,
    text_dtype: torch.dtype | None = None,
    overrides: dict[str, Any] | None = None,
    allow_pickle: bool = False,
    require_vae: bool = True,
    unet_channels_last: bool = False,
) -> LoadedCheckpoint:
    """Load a single-file checkpoint or a diffusers folder.

    ``overrides`` (and a ``<path>.sdgraph.json`` sidecar) can set ``prediction_type``,
    ``scaling_factor`` and config fields per component (``{"unet": {...}}``) for facts the weights
    do not carry. ``unet_channels_last`` is a hint for the layout the first user runs the UNet in:
    a single file's cast weights are then written channels_last by the cast itself, instead of being
    copied once more by `runtime.prepare_unet` (which sets the layout on every request either way).
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"Checkpoint {path} does not exist.")
    device = torch.device(device)
    vae_dtype = vae_dtype or dtype
    text_dtype = text_dtype or dtype
    if path.is_dir():
        return _load_diffusers_folder(
            path,
            device=device,
            dtype=dtype,
            vae_dtype=vae_dtype,
            text_dtype=text_dtype,
            overrides=overrides,
            allow_pickle=allow_pickle,
            require_vae=require_vae,
        )
    detected = detect_checkpoint(path, overrides=overrides, allow_pickle=allow_pickle)
    state = open_state_dict(path, allow_pickle=allow_pickle)
    return _load_single_file(
        detected,
        state,
        device=device,
        dtype=dtype,
        vae_dtype=vae_dtype,
        text_dtype=text_dtype,
        require_vae=require_vae,
        unet_channels_last=unet_channels_last,
    )


def load_vae(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    family: str = "sd1",
    overrides: dict[str, Any] | None = None,
    allow_pickle: bool = False,
) -> AutoencoderKL:
    """Load a standalone VAE: an LDM-layout file (with or without ``first_stage_model.``), the VAE
    inside a full checkpoint, or a diffusers ``vae`` folder.

    ``family`` only picks the default scaling factor (SD1/SD2 0.18215, SDXL 0.13025); the weights of
    the two VAEs have identical shapes.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"VAE {path} does not exist.")
    device = torch.device(device)
    if path.is_dir():
        folder = path / "vae" if (path / "vae" / "config.json").is_file() else path
        vae = _load_diffusers_component(folder, "vae", dtype=dtype, allow_pickle=allow_pickle)
        merged = read_overrides(path, overrides)
        if "scaling_factor" in merged:
            vae.register_to_config(scaling_factor=float(merged["scaling_factor"][0]))
        return _finish(vae, device, path, "vae")
    config, prefix = detect_vae_file(path, family=family, overrides=overrides, allow_pickle=allow_pickle)
    state = open_state_dict(path, allow_pickle=allow_pickle)
    return _build_vae(path, state, config, prefix, dtype=dtype, device=device)


# --------------------------------------------------------------------------------------------
# Single files
# --------------------------------------------------------------------------------------------


def _load_single_file(
    detected: DetectedModel,
    state: LazyStateDict,
    *,
    device: torch.device,
    dtype: torch.dtype,
    vae_dtype: torch.dtype,
    text_dtype: torch.dtype,
    require_vae: bool,
    unet_channels_last: bool = False,
) -> LoadedCheckpoint:
    path = detected.path
    present = {t.name for t in detected.text_encoders}
    missing_te = [n for n in expected_text_encoders(detected.family) if n not in present]
    if missing_te:
        raise MissingComponentError(path, "text encoder", f"no weights for {', '.join(missing_te)}")
    if detected.vae_config is None and require_vae:
        raise MissingComponentError(path, "vae", "no first_stage_model.* weights")

    unet_cfg = detected.unet_config
    with _converting(path, "unet"):
        unet_sd = convert_ldm_unet_checkpoint(state.with_dtype(dtype, channels_last=unet_channels_last), unet_cfg)
    unet = _build(UNet2DConditionModel, unet_cfg, unet_sd, path, "unet", device)

    vae = None
    if detected.vae_config is not None and detected.vae_prefix is not None:
        vae = _build_vae(path, state, detected.vae_config, detected.vae_prefix, dtype=vae_dtype, device=device)

    text_encoders = [
        _build_text_encoder(path, state.with_dtype(text_dtype), spec, device) for spec in detected.text_encoders
    ]
    return LoadedCheckpoint(
        family=detected.family,
        prediction_type=detected.prediction_type,
        unet=unet,
        vae=vae,
        vae_scaling_factor=float((detected.vae_config or base_config(detected.family, "vae"))["scaling_factor"]),
        text_encoders=text_encoders,
        scheduler_config=dict(detected.scheduler_config),
        latent_channels=detected.latent_channels,
        dtype=dtype,
        vae_dtype=vae_dtype,
        text_dtype=text_dtype,
        device=device,
        source=path,
        inpainting=detected.inpainting,
        prediction_source=detected.prediction_source,
        notes=list(detected.notes),
    )


def _build_vae(
    path: Path, state: LazyStateDict, config: dict[str, Any], prefix: str, *, dtype: torch.dtype, device: torch.device
) -> AutoencoderKL:
    source = state.with_dtype(dtype)
    if prefix not in ("first_stage_model.", "vae."):
        # diffusers' converter only strips these prefixes; give it the bare keys under one it knows.
        source = _Prefixed(source, prefix, "vae.")
    with _converting(path, "vae"):
        vae_sd = convert_ldm_vae_checkpoint(source, config)
    return _build(AutoencoderKL, config, vae_sd, path, "vae", device)


def _build_text_encoder(path: Path, state: LazyStateDict, spec: TextEncoderSpec, device: torch.device) -> TextEncoder:
    config = CLIPTextConfig(**{k: v for k, v in spec.config.items() if k != "architectures"})
    cls = CLIPTextModelWithProjection if spec.with_projection else CLIPTextModel
    with init_empty_weights():
        model = cls(config)
    with _converting(path, spec.name):
        if spec.layout == "clip":
            converted = {k: v for k, v in convert_ldm_clip_checkpoint(_Only(state, spec.prefix)).items()}
            if spec.prefix.startswith("conditioner."):
                converted = {k.removeprefix("conditioner.embedders.0.transformer."): v for k, v in converted.items()}
        else:
            converted = convert_open_clip_checkpoint(model, state, prefix=spec.prefix)
    # Files may carry more OpenCLIP blocks than are used (SD2 conditions on the penultimate one).
    layers = config.num_hidden_layers
    converted = {
        k: v for k, v in converted.items() if not _layer_at_or_above(k, layers) and not k.endswith("position_ids")
    }
    if not hasattr(model, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    return _assign(model, converted, path, spec.name, device)


def _layer_at_or_above(key: str, n: int) -> bool:
    marker = "encoder.layers."
    pos = key.find(marker)
    if pos < 0:
        return False
    head = key[pos + len(marker) :].split(".", 1)[0]
    return head.isdigit() and int(head) >= n


class _Only(LazyStateDict):
    """A view of a lazy state dict restricted to keys under one prefix (so converters see one encoder)."""

    def __init__(self, base: LazyStateDict, prefix: str) -> None:
        keys = [k for k in base if k.startswith(prefix)]
        super().__init__(base, keys)
        self._base = base

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self:
            raise KeyError(key)
        return self._base[key]


class _Prefixed(LazyStateDict):
    """A view that renames ``old`` prefixes to ``new`` (for bare-key VAE files)."""

    def __init__(self, base: LazyStateDict, old: str, new: str) -> None:
        keys = [new + k[len(old) :] for k in base if k.startswith(old)]
        super().__init__(base, keys)
        self._base, self._old, self._new = base, old, new

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self:
            raise KeyError(key)
        return self._base[self._old + key[len(self._new) :]]


class _converting:
    """Turn converter crashes (KeyError on a missing block, shape errors) into errors naming the part."""

    def __init__(self, path: Path, component: str) -> None:
        self.path, self.component = path, component

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, KeyError | IndexError | ValueError | RuntimeError) and not isinstance(exc, ModelError):
            raise MissingComponentError(
                self.path, self.component, f"its weights could not be converted: {type(exc).__name__}: {exc}"
            ) from exc


def _build(
    cls: type[Any],
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    path: Path,
    component: str,
    device: torch.device,
) -> Any:
    with init_empty_weights():
        model = cls.from_config(config)
    return _assign(model, state, path, component, device)


def _dense(tensor: torch.Tensor) -> torch.Tensor:
    """Contiguous, keeping a 4-D tensor that is already dense in channels_last (`unet_channels_last`)."""
    if tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last):
        return tensor
    return tensor.contiguous()


def _assign(
    model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, component: str, device: torch.device
) -> Any:
    """Make the given tensors the model's parameters, then prove nothing is left unloaded."""
    state = {k: _dense(v) for k, v in state.items()}
    try:
        result = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = next((ln.strip() for ln in first if "size mismatch" in ln), first[-1] if first else str(exc))
        raise UnknownArchitectureError(
            path, f"{component} weights whose shapes do not fit the architecture read from the file ({detail})"
        ) from exc
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing:
        raise MissingComponentError(path, component, f"{len(missing)} weights missing, e.g. {', '.join(missing[:3])}")
    if result.unexpected_keys:
        log.debug(
            "%s: %d unused %s weights, e.g. %s",
            path,
            len(result.unexpected_keys),
            component,
            result.unexpected_keys[:3],
        )
    return _finish(model, device, path, component)


def _finish(model: Any, device: torch.device, path: Path, component: str) -> Any:
    meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if meta:
        raise MissingComponentError(
            path, component, f"{len(meta)} weights were never loaded, e.g. {', '.join(meta[:3])}"
        )
    model.requires_grad_(False)
    model.eval()
    if device.type != "cpu":
        model.to(device)
    return model


# --------------------------------------------------------------------------------------------
# Diffusers folders
# --------------------------------------------------------------------------------------------

_WEIGHT_NAMES = {
    "unet": "diffusion_pytorch_model",
    "vae": "diffusion_pytorch_model",
    "text_encoder": "model",
    "text_encoder_2": "model",
}
# Old diffusers folders name the VAE attention projections the pre-0.14 way.
_OLD_VAE_ATTENTION = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data
    except (OSError, json.JSONDecodeError) as exc:
        raise CorruptCheckpointError(path, f"config is not readable JSON ({exc})") from exc


def diffusers_family(folder: Path) -> str:
    """Family of a diffusers folder: the first registered family whose folder test matches its
    component configs (``nodes.families``); a family sdgraph cannot run yet is named."""
    info = read_diffusers_folder(folder)
    for component in ("unet", "text_encoder"):
        if component not in info.configs and (folder / component / "config.json").is_file():
            _read_config(folder / component / "config.json")  # raises, naming the unreadable file
    family = recognise_diffusers_folder(info)
    if family is not None and not family.supported:
        raise UnsupportedFamilyError(folder, family.name, family.display_name, family.description)
    if family is None:
        context = info.config("unet").get("cross_attention_dim")
        raise UnknownArchitectureError(folder, f"a diffusers UNet with cross_attention_dim {context}")
    return family.name


def _weight_files(folder: Path, component: str, allow_pickle: bool) -> list[Path]:
    base = _WEIGHT_NAMES[component]
    for variant in ("", ".fp16"):
        single = folder / f"{base}{variant}.safetensors"
        if single.is_file():
            return [single]
        index = folder / f"{base}{variant}.safetensors.index.json"
        if index.is_file():
            weight_map = _read_config(index).get("weight_map", {})
            return [folder / name for name in sorted(set(weight_map.values()))]
    pickles = [p for p in sorted(folder.glob(f"{base}*")) if p.suffix in PICKLE_SUFFIXES]
    if pickles:
        if not allow_pickle:
            raise PickleRefusedError(pickles[0])
        return pickles
    raise MissingComponentError(folder, component, f"no {base}.safetensors in {folder}")


class _MultiHandle:
    def __init__(self, handles: dict[str, Any]) -> None:
        self._handles = handles

    def get_tensor(self, key: str) -> torch.Tensor:
        return self._handles[key].get_tensor(key)


def _open_component(folder: Path, component: str, dtype: torch.dtype, allow_pickle: bool) -> LazyStateDict:
    files = _weight_files(folder, component, allow_pickle)
    if files[0].suffix in PICKLE_SUFFIXES:
        tensors: dict[str, torch.Tensor] = {}
        for f in files:
            tensors.update(load_pickle_checkpoint(f, allow_pickle=True))
        return MappedStateDict(tensors, dtype=dtype)
    from safetensors import safe_open

    handles: dict[str, Any] = {}
    for f in files:
        header = read_safetensors_header(f)
        handle = safe_open(str(f), framework="pt", device="cpu")
        handles.update(dict.fromkeys(header.tensors, handle))
    return LazyStateDict(_MultiHandle(handles), list(handles), dtype=dtype, source=files[0])


def _load_diffusers_component(folder: Path, component: str, *, dtype: torch.dtype, allow_pickle: bool) -> Any:
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise MissingComponentError(folder.parent, component, f"no {component}/config.json")
    config = _read_config(cfg_path)
    state = _open_component(folder, component, dtype, allow_pickle)
    if component in ("unet", "vae"):
        cls = UNet2DConditionModel if component == "unet" else AutoencoderKL
        sd = {k: state[k] for k in state}
        if component == "vae":
            sd = {_rename_old_vae(k): v for k, v in sd.items()}
            sd = {k: (v[:, :, 0, 0] if v.ndim == 4 and ".to_" in k and "weight" in k else v) for k, v in sd.items()}
        with init_empty_weights():
            model = cls.from_config(config)
        return _assign_no_move(model, sd, folder, component)
    arch = (config.get("architectures") or ["CLIPTextModel"])[0]
    cls_te = CLIPTextModelWithProjection if "WithProjection" in arch else CLIPTextModel
    te_config = CLIPTextConfig(**{k: v for k, v in config.items() if k not in ("architectures", "_name_or_path")})
    with init_empty_weights():
        model = cls_te(te_config)
    sd = {k: state[k] for k in state if not k.endswith("position_ids")}
    if hasattr(model, "text_model"):
        sd = {
            (k if k.startswith("text_model.") or k.startswith("text_projection") else "text_model." + k): v
            for k, v in sd.items()
        }
    else:
        sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
    return _assign_no_move(model, sd, folder, component)


def _rename_old_vae(key: str) -> str:
    for old, new in _OLD_VAE_ATTENTION.items():
        if "attentions." in key and old in key:
            return key.replace(old, new)
    return key


def _assign_no_move(model: torch.nn.Module, sd: dict[str, torch.Tensor], folder: Path, component: str) -> Any:
    return _assign(model, sd, folder, component, torch.device("cpu"))


def _load_diffusers_folder(
    folder: Path,
    *,
    device: torch.device,
    dtype: torch.dtype,
    vae_dtype: torch.dtype,
    text_dtype: torch.dtype,
    overrides: dict[str, Any] | None,
    allow_pickle: bool,
    require_vae: bool,
) -> LoadedCheckpoint:
    if not (folder / "unet" / "config.json").is_file():
        known = recognise_diffusers_folder(read_diffusers_folder(folder))
        if known is not None and not known.supported:
            raise UnsupportedFamilyError(folder, known.name, known.display_name, known.description)
        raise UnknownArchitectureError(
            folder, "a folder without unet/config.json (not a diffusers Stable Diffusion folder)"
        )
    family = diffusers_family(folder)
    merged = read_overrides(folder, overrides)
    unet = _load_diffusers_component(folder / "unet", "unet", dtype=dtype, allow_pickle=allow_pickle)
    vae = None
    if (folder / "vae").is_dir():
        vae = _load_diffusers_component(folder / "vae", "vae", dtype=vae_dtype, allow_pickle=allow_pickle)
        if "scaling_factor" in merged:
            vae.register_to_config(scaling_factor=float(merged["scaling_factor"][0]))
    elif require_vae:
        raise MissingComponentError(folder, "vae", "no vae/ folder")
    text_encoders = []
    for name in expected_text_encoders(family):
        if not (folder / name).is_dir():
            raise MissingComponentError(folder, "text encoder", f"no {name}/ folder")
        text_encoders.append(
            _load_diffusers_component(folder / name, name, dtype=text_dtype, allow_pickle=allow_pickle)
        )

    scheduler = base_config(family, "scheduler")
    sched_path = folder / "scheduler" / "scheduler_config.json"
    source = "default"
    if sched_path.is_file():
        scheduler.update(_read_config(sched_path))
        source = "config"
    if "scheduler" in merged:
        scheduler.update(merged["scheduler"][0])
    if "prediction_type" in merged:
        scheduler["prediction_type"], source = merged["prediction_type"]
    scheduler.setdefault("prediction_type", "epsilon")

    loaded = LoadedCheckpoint(
        family=family,
        prediction_type=str(scheduler["prediction_type"]),
        unet=unet,
        vae=vae,
        vae_scaling_factor=float((vae.config if vae is not None else base_config(family, "vae"))["scaling_factor"]),
        text_encoders=text_encoders,
        scheduler_config=scheduler,
        latent_channels=int(unet.config.out_channels),
        dtype=dtype,
        vae_dtype=vae_dtype,
        text_dtype=text_dtype,
        device=torch.device("cpu"),
        source=folder,
        inpainting=int(unet.config.in_channels) == 9,
        prediction_source=source,
    )
    if device.type != "cpu":
        loaded.to(device)
    return loaded
