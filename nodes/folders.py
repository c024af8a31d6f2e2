"""Which folders this process reads models and input images from, configured once by the app.

Torch-free on purpose: the editor lists model files for its combo boxes without loading anything.
"""

from __future__ import annotations

import difflib
import os
import tempfile
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


def configured() -> tuple[list[str], str, str]:
    """What `configure` was last given (extra roots, ComfyUI yaml, A1111 folder): batch workers copy it."""
    with _lock:
        return list(_extra_roots), _comfyui_yaml, _a1111


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
    """Where Load Image reads from: `$SDGRAPH_INPUT_DIR`, else `<home>/input`. May not exist yet."""
    return Path(os.environ.get("SDGRAPH_INPUT_DIR") or sdgraph_home() / "input")


def temp_dir() -> Path:
    """Where Preview Image and other temporary images go when the run names no folder of its own; the
    server's `/view?type=temp` serves from here."""
    return Path(tempfile.gettempdir()) / "sdgraph-preview"


def ensure_input_dir() -> Path:
    """The input folder, created if missing: it is made when the first image is added, not before."""
    folder = input_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def store_input_image(data: bytes, name: str) -> str:
    """Put an image's bytes into the input folder under `name` (a plain file name) and return the name
    a workflow stores: `name` itself, or `stem_1.png`, `stem_2.png`, … when a *different* file already
    has it. A file with the same bytes is reused, so adding one image twice does not make copies.

    Never overwrites: each candidate is created with O_EXCL, so two windows adding at once cannot
    clobber each other either.
    """
    base = Path(name).name  # a name from anywhere (a dropped file, a dialog) is only a name here
    if not base or base in (".", "..") or "\x00" in base:
        raise ValueError(f"{name!r} is not a usable file name")
    if not is_image_name(base):
        raise ValueError(f"{base!r} is not an image file ({', '.join(IMAGE_SUFFIXES)})")
    folder = ensure_input_dir()
    stem, suffix = Path(base).stem, Path(base).suffix
    for n in range(10_000):
        candidate = base if n == 0 else f"{stem}_{n}{suffix}"
        target = folder / candidate
        try:
            with open(target, "xb") as f:
                f.write(data)
            return candidate
        except FileExistsError:
            try:
                if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
                    return candidate
            except OSError:
                pass
    raise OSError(f"no free name for {base!r} in {folder}")


def import_input_image(path: str | Path) -> str:
    """Make the image at `path` (anywhere on disk) available to Load Image; returns its name there.

    A file already inside the input folder is used where it is; any other is copied in (`store_input_image`).
    """
    src = Path(path)
    if not src.is_file():
        raise FileNotFoundError(f"no such file: {src}")
    folder = input_dir().resolve()
    real = src.resolve()
    if real.is_relative_to(folder) and is_image_name(real.name):
        return real.relative_to(folder).as_posix()
    return store_input_image(src.read_bytes(), src.name)


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
