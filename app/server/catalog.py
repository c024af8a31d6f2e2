"""What the machine offers, as ComfyUI reports it: model folders and files, embeddings, system stats.

Folder names are sdgraph's model kinds, which are ComfyUI's folder names; ComfyUI's older `unet` and
`clip` are accepted as the same folders. System stats name the device prompts run on, so a client can
pick sizes that fit (the Krita plugin reads `devices[0]`).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

from nodes.diffusion.model_paths import KINDS
from nodes.folders import list_models

FOLDER_ALIASES = {"unet": "diffusion_models", "clip": "text_encoders"}


def model_folder(name: str) -> str | None:
    kind = FOLDER_ALIASES.get(name, name)
    return kind if kind in KINDS else None


def embeddings() -> list[str]:
    """Names as a prompt writes them (`embedding:name`): without the file suffix."""
    return sorted({str(Path(name).with_suffix("")) for name in list_models("embeddings")})


def _memory() -> tuple[int, int]:
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return page * os.sysconf("SC_PHYS_PAGES"), page * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on Linux: unknown, said as 0
        return 0, 0


def system_stats(device: str) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    ram_total, ram_free = _memory()
    try:
        sdgraph_version = version("sdgraph")
    except PackageNotFoundError:
        sdgraph_version = "unknown"
    system = {
        "os": os.name if sys.platform != "linux" else "posix",
        "python_version": sys.version,
        "embedded_python": False,
        "sdgraph_version": sdgraph_version,
        "pytorch_version": "",
        "argv": ["sdgraph", "serve"],
        "ram_total": ram_total,
        "ram_free": ram_free,
        "platform": platform.platform(),
    }
    cpu = {
        "name": "cpu",
        "type": "cpu",
        "index": None,
        "vram_total": ram_total,
        "vram_free": ram_free,
        "torch_vram_total": 0,
        "torch_vram_free": 0,
    }
    try:
        import torch
    except ImportError:
        return {"system": system, "devices": [cpu]}
    system["pytorch_version"] = torch.__version__
    devices = []
    if device in ("auto", "cuda") and torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            devices.append(
                {
                    "name": f"cuda:{index} {torch.cuda.get_device_name(index)}",
                    "type": "cuda",
                    "index": index,
                    "vram_total": total,
                    "vram_free": free,
                    "torch_vram_total": torch.cuda.memory_reserved(index),
                    "torch_vram_free": torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index),
                }
            )
    return {"system": system, "devices": devices or [cpu]}
