"""Per-process state the diffusion nodes share: the device, the precision, and the model manager.

One `ModelManager` per process, so two loader nodes naming the same file (or two workflows open in
the editor) share one copy of the weights.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import torch

from nodes.sd.devices import pick_device, precision_for
from nodes.sd.model_manager import ModelManager

_lock = threading.Lock()
_manager: ModelManager | None = None


def manager() -> ModelManager:
    global _manager
    with _lock:
        if _manager is None:
            _manager = ModelManager()
        return _manager


def device_for(name: str) -> torch.device:
    return pick_device(name or "auto")


def dtypes_for(device: torch.device, settings: Mapping[str, Any]) -> tuple[torch.dtype, torch.dtype, torch.dtype]:
    """(unet, vae, text) dtypes for this run's precision mode ("exact" unless the settings say "fast")."""
    mode = str(settings.get("precision", "exact"))
    return precision_for(device, mode if mode in ("exact", "fast") else "exact")  # type: ignore[arg-type]
