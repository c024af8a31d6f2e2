"""Where model files live, how they are named in a graph, and turning a name back into a path.

A workflow refers to a model by a *name* relative to a model folder (``"sd15/dreamshaper.safetensors"``,
always with forward slashes), never by absolute path, so the same workflow works on another machine.
The folders for each kind (``checkpoints``, ``vae``, ``loras``, ``text_encoders``, ``diffusion_models``,
``controlnet``, ``upscale_models``, ``embeddings``: textual inversions, named in prompts rather than loader
nodes) are searched in order:

1. ``<home>/models/<kind>``, where home is ``$SDGRAPH_HOME`` or the platform's user data folder, then
   ComfyUI's older name for the kind (``clip`` for text encoders, ``unet`` for diffusion models)
   (tests always set ``SDGRAPH_HOME`` so they never see a real user's files);
2. extra roots added by the user: any folder, a ComfyUI ``extra_model_paths.yaml``, or an
   AUTOMATIC1111 install (``models/Stable-diffusion``, ``models/VAE``, ``models/Lora``).

Names come from workflow files, which may come from anyone, so ``resolve`` treats them as untrusted:
a name must be relative, without ``..`` components, so it can only walk down from a model folder.
Symlinks *inside* a model folder are followed, wherever they point: only the user can make them, and
linking one shared model store into ComfyUI, A1111 and sdgraph is how people avoid three copies of
every checkpoint. Missing names raise ``ModelNotFoundError`` listing the closest existing names first
(a typo or a renamed file is the usual cause).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from nodes.diffusion.errors import ModelError, ModelNotFoundError, UnsafePathError

KINDS = (
    "checkpoints",
    "vae",
    "loras",
    "text_encoders",
    "diffusion_models",
    "controlnet",
    "upscale_models",
    "embeddings",
)
SAFE_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth")
# Quantized GGUF files are listed where a loader reads them (UNETLoader / UnetLoaderGGUF, the CLIP loaders).
GGUF_SUFFIXES = (".gguf",)
_GGUF_KINDS = ("diffusion_models", "text_encoders")
_A1111_FOLDERS = {
    "checkpoints": "models/Stable-diffusion",
    "vae": "models/VAE",
    "loras": "models/Lora",
    "controlnet": "models/ControlNet",
    "upscale_models": "models/ESRGAN",
    "embeddings": "embeddings",
}
# ComfyUI's yaml keys that map onto our kinds (it also has "lora" in old examples, and the pre-2024
# folder names "clip" and "unet" for text encoders and diffusion models).
_COMFY_KEYS = {
    "checkpoints": "checkpoints",
    "vae": "vae",
    "loras": "loras",
    "lora": "loras",
    "text_encoders": "text_encoders",
    "clip": "text_encoders",
    "diffusion_models": "diffusion_models",
    "unet": "diffusion_models",
    "controlnet": "controlnet",
    "upscale_models": "upscale_models",
    "embeddings": "embeddings",
}
# Older folder names ComfyUI still reads for a kind, searched after the current one under every root.
_LEGACY_FOLDERS = {"text_encoders": ("clip",), "diffusion_models": ("unet",)}


@dataclass(frozen=True)
class ModelEntry:
    """One listed model: its name in workflows, where it is, and whether loading it needs pickle."""

    name: str
    path: Path
    format: str  # "safetensors", "pickle", "gguf" or "diffusers"

    @property
    def needs_pickle(self) -> bool:
        return self.format == "pickle"


def sdgraph_home() -> Path:
    """``$SDGRAPH_HOME`` if set, else the platform user data folder for sdgraph."""
    env = os.environ.get("SDGRAPH_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("sdgraph", appauthor=False))


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {KINDS}")


@dataclass
class ModelFolders:
    """The ordered folders searched for each model kind."""

    folders: dict[str, list[Path]] = field(default_factory=lambda: {k: [] for k in KINDS})

    @classmethod
    def default(cls, home: Path | None = None) -> ModelFolders:
        home = sdgraph_home() if home is None else home
        result = cls()
        for kind in KINDS:
            for name in (kind, *_LEGACY_FOLDERS.get(kind, ())):
                result.folders[kind].append(home / "models" / name)
        return result

    def add(self, kind: str, folder: str | Path) -> None:
        _check_kind(kind)
        path = Path(folder).expanduser()
        if path not in self.folders[kind]:
            self.folders[kind].append(path)

    def add_root(self, root: str | Path) -> None:
        """A folder laid out like ours: ``<root>/checkpoints``, ``<root>/vae``, ``<root>/loras``,
        ``<root>/text_encoders`` (or ``clip``), ``<root>/diffusion_models`` (or ``unet``)."""
        for kind in KINDS:
            for name in (kind, *_LEGACY_FOLDERS.get(kind, ())):
                self.add(kind, Path(root) / name)

    def add_a1111(self, install: str | Path) -> None:
        """An AUTOMATIC1111/Forge install folder (the one containing ``models/Stable-diffusion``)."""
        install = Path(install).expanduser()
        if not (install / "models").is_dir():
            raise ModelError(f"{install} does not look like an AUTOMATIC1111 install (no models/ folder).")
        for kind, sub in _A1111_FOLDERS.items():
            self.add(kind, install / sub)

    def add_comfyui_yaml(self, yaml_path: str | Path) -> None:
        """Folders from a ComfyUI ``extra_model_paths.yaml`` (its ``base_path`` + per-kind entries)."""
        for kind, folder in read_comfyui_extra_paths(yaml_path):
            self.add(kind, folder)

    # ------------------------------------------------------------------ listing

    def entries(self, kind: str) -> list[ModelEntry]:
        """Every model of ``kind``, first folder winning when two folders hold the same name."""
        _check_kind(kind)
        seen: dict[str, ModelEntry] = {}
        for folder in self.folders[kind]:
            for entry in _scan(folder, kind):
                seen.setdefault(entry.name, entry)
        return sorted(seen.values(), key=lambda e: e.name.lower())

    def list_models(self, kind: str) -> list[str]:
        return [e.name for e in self.entries(kind)]

    # ------------------------------------------------------------------ resolving

    def resolve(self, kind: str, name: str) -> Path:
        """The file (or diffusers folder) for a workflow's model name, refusing names that escape."""
        _check_kind(kind)
        parts = _safe_parts(kind, name)
        for folder in self.folders[kind]:
            candidate = folder.joinpath(*parts)  # may pass through the user's symlinks, never above `folder`
            if not (candidate.is_file() or candidate.is_dir()):
                continue
            if candidate.is_dir() and not _is_model_dir(candidate, kind):
                continue
            if candidate.is_file() and _format_of(candidate, kind) is None:
                continue
            return candidate
        names = self.list_models(kind)
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.3)
        # Also match on the bare file name, so "model.safetensors" finds "sd15/model.safetensors".
        base = PurePosixPath(name).name.lower()
        close += [n for n in names if PurePosixPath(n).name.lower() == base and n not in close]
        rest = [n for n in names if n not in close]
        raise ModelNotFoundError(kind, name, close + rest)


def _safe_parts(kind: str, name: str) -> list[str]:
    if not isinstance(name, str) or not name.strip():
        raise ModelNotFoundError(kind, str(name), reason="the name is empty")
    if "\x00" in name:
        raise UnsafePathError(kind, name, reason="it contains a NUL character")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or Path(name).is_absolute():
        raise UnsafePathError(kind, name, reason="absolute paths are not allowed, use a name inside the folder")
    parts = [p for p in re.split(r"[\\/]+", name) if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafePathError(kind, name, reason="'..' may not be used to leave the model folder")
    return parts


def _is_model_dir(path: Path, kind: str) -> bool:
    if kind == "checkpoints":
        return (path / "model_index.json").is_file()
    if kind in ("vae", "diffusion_models", "controlnet"):
        return (path / "config.json").is_file() and any(path.glob("*.safetensors"))
    return False


def _format_of(path: Path, kind: str = "") -> str | None:
    suffix = path.suffix.lower()
    if suffix in GGUF_SUFFIXES and kind in _GGUF_KINDS:
        return "gguf"
    if suffix in SAFE_SUFFIXES:
        return "safetensors"
    if suffix in PICKLE_SUFFIXES:
        return "pickle"
    return None


def _scan(folder: Path, kind: str) -> Iterable[ModelEntry]:
    """Every model under ``folder``, following symlinked files and folders (a shared model store linked
    in). Each real folder is walked once, so a link back up the tree (a loop) ends instead of recursing;
    a dangling link is skipped."""
    if not folder.is_dir():
        return
    seen = {os.path.realpath(folder)}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        current = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            sub = current / d
            if d.startswith("."):
                continue
            if _is_model_dir(sub, kind):
                yield ModelEntry(_name(sub, folder), sub, "diffusers")
                continue  # a diffusers folder is one model; do not list its inner files
            real = os.path.realpath(sub)
            if real in seen:
                continue
            seen.add(real)
            keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            path = current / f
            fmt = _format_of(path, kind)
            if fmt is None or f.startswith(".") or not path.is_file():
                continue
            yield ModelEntry(_name(path, folder), path, fmt)


def _name(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def read_comfyui_extra_paths(yaml_path: str | Path) -> list[tuple[str, Path]]:
    """Parse ComfyUI's ``extra_model_paths.yaml`` into (kind, folder) pairs for our kinds.

    Each top-level section has an optional ``base_path`` (relative to the yaml file's folder when not
    absolute) and per-kind entries holding one or more folders, one per line.
    """
    import yaml  # type: ignore[import-untyped]

    yaml_path = Path(yaml_path).expanduser()
    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"Cannot read ComfyUI model paths file {yaml_path}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ModelError(f"{yaml_path} is not a ComfyUI extra_model_paths.yaml (expected sections).")
    pairs: list[tuple[str, Path]] = []
    for section in data.values():
        if not isinstance(section, Mapping):
            continue
        base = _expand(section.get("base_path"), yaml_path.parent)
        for key, value in section.items():
            kind = _COMFY_KEYS.get(str(key))
            if kind is None or value is None:
                continue
            for line in str(value).splitlines():
                line = line.strip()
                if line:
                    pairs.append((kind, _join(base, line)))
    return pairs


def _expand(value: Any, relative_to: Path) -> Path:
    if not value:
        return relative_to
    path = Path(os.path.expandvars(str(value))).expanduser()
    return path if path.is_absolute() else relative_to / path


def _join(base: Path, entry: str) -> Path:
    path = Path(os.path.expandvars(entry)).expanduser()
    return path if path.is_absolute() else base / path


# Module-level conveniences over the default folders (home only); the app passes its own ModelFolders.


def list_models(kind: str, folders: ModelFolders | None = None) -> list[str]:
    return (folders or ModelFolders.default()).list_models(kind)


def resolve(kind: str, name: str, folders: ModelFolders | None = None) -> Path:
    return (folders or ModelFolders.default()).resolve(kind, name)
