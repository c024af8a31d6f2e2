"""Loading Stable Diffusion checkpoints (single files and diffusers folders) offline.

Modules, from cheap to heavy:

* ``files``: safetensors header parsing/validation, lazy memory-mapped tensors, the pickle gate;
* ``detect``: family, prediction type and full diffusers configs from tensor names and shapes;
* ``ldm_layout``: writing diffusers models back as one original-layout single file;
* ``load``: ``load_checkpoint`` / ``load_vae`` -> models on the chosen device and dtype;
* ``vae_ops``: IMAGE <-> LATENT through a VAE, with an fp32 retry for half-precision NaNs.

The names below are imported on first use, so ``import nodes.diffusion.checkpoint.detect`` (used by the UI
and validators) does not pay for importing diffusers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nodes.diffusion.checkpoint.detect import DetectedModel, detect_checkpoint
    from nodes.diffusion.checkpoint.ldm_layout import save_single_file
    from nodes.diffusion.checkpoint.load import LoadedCheckpoint, load_checkpoint, load_vae
    from nodes.diffusion.checkpoint.vae_ops import decode, encode

_EXPORTS = {
    "DetectedModel": "detect",
    "detect_checkpoint": "detect",
    "save_single_file": "ldm_layout",
    "LoadedCheckpoint": "load",
    "load_checkpoint": "load",
    "load_vae": "load",
    "decode": "vae_ops",
    "encode": "vae_ops",
}

__all__ = [
    "DetectedModel",
    "LoadedCheckpoint",
    "decode",
    "detect_checkpoint",
    "encode",
    "load_checkpoint",
    "load_vae",
    "save_single_file",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
