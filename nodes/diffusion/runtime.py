"""Per-process state the diffusion nodes share: the device, the precision, and the model manager.

One `ModelManager` per process, so two loader nodes naming the same file (or two workflows open in
the editor) share one copy of the weights.

Settings reach the nodes as the executor's ``settings`` mapping: plain keys (``precision``,
``compile``, ``cpu_bf16``) set by a caller win over the fields of the app's `Settings` object,
which travels under the key ``settings`` (see `setting`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import torch

from nodes.diffusion import host_memory
from nodes.diffusion.devices import channels_last_helps, cpu_has_native_bf16, pick_device, precision_for
from nodes.diffusion.model_manager import ModelManager

_lock = threading.Lock()
_manager: ModelManager | None = None
_vram_budget_bytes = 0  # 0: no budget beyond what the card has


def manager() -> ModelManager:
    global _manager
    with _lock:
        if _manager is None:
            _manager = ModelManager()
        return _manager


def device_for(name: str) -> torch.device:
    return pick_device(name or "auto")


def setting(settings: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """A setting from the run's mapping, else from the app's `Settings` object under "settings"."""
    if name in settings:
        return settings[name]
    app_settings = settings.get("settings")
    if app_settings is not None and hasattr(app_settings, name):
        return getattr(app_settings, name)
    return default


def dtypes_for(device: torch.device, settings: Mapping[str, Any]) -> tuple[torch.dtype, torch.dtype, torch.dtype]:
    """(unet, vae, text) dtypes for this run's precision mode ("exact" unless the settings say "fast").

    ``cpu_bf16`` (True/False) overrides the CPU's bf16 detection: fast mode then uses bf16 on a CPU
    that only emulates it (slower, but it lets tests and benchmarks exercise the bf16 path anywhere).
    """
    mode = str(setting(settings, "precision", "exact"))
    override = setting(settings, "cpu_bf16", None)
    cpu_bf16 = None if override is None else bool(override)
    return precision_for(device, mode if mode in ("exact", "fast") else "exact", cpu_bf16=cpu_bf16)  # type: ignore[arg-type]


def compile_enabled(settings: Mapping[str, Any]) -> bool:
    return bool(setting(settings, "compile", False))


def unet_channels_last(device: torch.device, dtype: torch.dtype, *, fast: bool) -> bool:
    """The UNet layout a request runs in: channels_last in fast mode where it was measured to help
    (`channels_last_helps`); exact mode keeps the reference layout (see `prepare_unet`)."""
    return fast and channels_last_helps(device, dtype)


def prepare_unet(unet: torch.nn.Module, device: torch.device, dtype: torch.dtype, *, fast: bool) -> bool:
    """Put a served UNet in the memory format its mode asks for; returns whether it runs channels_last.

    Exact mode always uses the reference (contiguous) layout: another layout changes the order of
    floating-point sums, so results would drift from diffusers' by ~1e-4 (the parity tests see it).
    Fast mode uses channels_last where it was measured to help. The UNet object is shared by every
    request with the same (file, device, dtype), so the layout is set on each request, not assumed;
    switching modes on one model converts the weights once per switch.

    Fast mode in bf16 on a CPU that computes it natively also packs the convolution and linear
    weights for oneDNN once (`nodes.diffusion.prepack`) instead of on every call: 0.67× the step
    time of the plain bf16 UNet, measured (docs/benchmarks.md).
    """
    channels_last = unet_channels_last(device, dtype, fast=fast)
    with host_memory.returning_freed_memory():  # each weight is copied once here when the layout changes
        unet.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if fast and device.type == "cpu" and dtype == torch.bfloat16 and cpu_has_native_bf16():
        from nodes.diffusion import prepack

        prepack.prepack(unet)
    return channels_last


def prepare_vae(vae: torch.nn.Module, *, fast: bool) -> bool:
    """Put a served VAE in the memory format its mode asks for; returns whether it runs channels_last.

    Fast mode runs a reduced-precision VAE channels_last where `channels_last_helps` says so. Measured on
    the 2-core AMX Xeon (full-size SD1.5 VAE, 512² decode, interleaved, docs/benchmarks.md "Parts of the
    graph"): bf16 alone is barely faster than fp32 (1.07x: oneDNN reorders every activation to its
    blocked layout and back), bf16 + channels_last is 3x faster, at 50.9 dB PSNR against fp32. An fp32
    VAE (exact mode, or fast mode on a CPU without native bf16) keeps the reference layout: exact results
    must match diffusers', and fp32 channels_last was not measured to help the VAE. Set on every request,
    like the UNet's, because one VAE object is shared by requests of both modes when their dtypes agree.
    Weights that cannot take the 4-D layout (a 3-D-convolution video VAE) stay as they are.
    """
    param = next(vae.parameters(), None)
    if param is None:
        return False
    channels_last = fast and param.dtype != torch.float32 and channels_last_helps(param.device, param.dtype)
    try:
        with host_memory.returning_freed_memory():
            vae.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)  # type: ignore[call-overload]
    except RuntimeError:  # 5-D weights: channels_last is for 4-D tensors only
        vae.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        return False
    return channels_last


def is_fast(settings: Mapping[str, Any]) -> bool:
    return str(setting(settings, "precision", "exact")) == "fast"


def apply_memory_settings(settings: Mapping[str, Any]) -> None:
    """Model budget (RAM) and VRAM budget from the settings; 0 keeps the automatic choice."""
    global _vram_budget_bytes
    model_mb = int(setting(settings, "model_budget_mb", 0) or 0)
    if model_mb > 0:
        manager().budget_bytes = model_mb * 2**20
    _vram_budget_bytes = max(0, int(setting(settings, "vram_budget_mb", 0) or 0)) * 2**20


def vram_budget_bytes() -> int:
    return _vram_budget_bytes


def make_vram_room(device: torch.device, nbytes: int) -> bool:
    """Before putting ``nbytes`` of weights on a GPU: move idle models to the CPU until they fit both
    the card's free memory and the VRAM budget. No-op on the CPU."""
    if device.type == "cpu":
        return True
    budget = _vram_budget_bytes
    mgr = manager()
    if budget <= 0:
        return mgr.make_room(device, nbytes)

    def free_bytes() -> int:
        resident = sum(m.nbytes for m in mgr.loaded() if m.device == str(device) and not m.offloaded)
        room = budget - resident
        if device.type == "cuda" and torch.cuda.is_available():
            room = min(room, int(torch.cuda.mem_get_info(device)[0]))
        return room

    return mgr.make_room(device, nbytes, free_bytes=free_bytes)
