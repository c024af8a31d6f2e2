"""Which folders this process reads models and input images from, configured once by the app.

Torch-free on purpose: the editor lists model files for its combo boxes without loading anything.
"""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from nodes.diffusion.model_paths import ModelFolders, sdgraph_home

_lock = threading.Lock()
_extra_roots: list[str] = []
_comfyui_yaml: str = ""
_a1111: str = ""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def configure(extra_roots: Iterable[str] = (), comfyui_yaml: str = "", a1111: str = "") -> None:
    """Set the model roots beyond `<home>/models` (from the user's settings)."""
    global _comfyui_yaml, _a1111
    with _lock:
        _extra_roots[:] = list(extra_roots)
        _comfyui_yaml, _a1111 = comfyui_yaml, a1111


def model_folders() -> ModelFolders:
    """Built on each call: cheap, and it follows `SDGRAPH_HOME` and folders created since."""
    folders = ModelFolders.default(sdgraph_home())
    with _lock:
        for root in _extra_roots:
            folders.add_root(root)
        if _comfyui_yaml:
            folders.add_comfyui_yaml(_comfyui_yaml)
        if _a1111:
            folders.add_a1111(_a1111)
    return folders


def list_models(kind: str) -> list[str]:
    try:
        return model_folders().list_models(kind)
    except Exception:  # an unreadable extra root must not break the editor's combo boxes
        return []


def model_identity(kind: str, name: str) -> tuple[str, int, int]:
    """(path, mtime, size): part of a loader's cache key, so replacing a file on disk re-runs it."""
    path = model_folders().resolve(kind, name)
    st = path.stat()
    return (str(path), st.st_mtime_ns, st.st_size)


def input_dir() -> Path:
    return Path(os.environ.get("SDGRAPH_INPUT_DIR") or sdgraph_home() / "input")


def list_input_images() -> list[str]:
    folder = input_dir()
    if not folder.is_dir():
        return []
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def resolve_input_image(name: str) -> Path:
    """An input image by its name in the workflow; names never leave the input folder."""
    folder = input_dir().resolve()
    if not name or Path(name).is_absolute() or ".." in Path(name).parts or "\x00" in name:
        raise ValueError(f"image name {name!r} is not a plain name inside the input folder")
    path = (folder / name).resolve()
    if not path.is_relative_to(folder):
        raise ValueError(f"image {name!r} leads outside the input folder")
    if not path.is_file():
        names = list_input_images()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.3)
        hint = (
            f"; closest: {', '.join(close)}" if close else (f"; there are {len(names)} images there" if names else "")
        )
        raise FileNotFoundError(f"no image {name!r} in {folder}{hint}")
    return path
