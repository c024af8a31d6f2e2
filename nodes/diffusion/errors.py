"""Typed errors for finding, reading and loading model files.

Every error here is a ``ModelError`` so the executor can catch one class and show the message as is:
each message names the file (or the name the user typed) and says what to do about it, because the
person reading it is the one who picked the file, not the one who wrote the loader.

This module imports nothing heavy (no torch) so the UI and the graph validator can use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class ModelError(Exception):
    """Base class: something is wrong with a model file or a model name the user chose."""


class ModelNotFoundError(ModelError):
    """A model name did not resolve to a file in any model folder."""

    def __init__(self, kind: str, name: str, available: Sequence[str] = (), *, reason: str = "") -> None:
        self.kind = kind
        self.name = name
        self.available = list(available)
        msg = f"No {kind} model named {name!r}"
        msg += f": {reason}." if reason else "."
        if self.available:
            shown = ", ".join(repr(a) for a in self.available[:5])
            more = f" (and {len(self.available) - 5} more)" if len(self.available) > 5 else ""
            msg += f" Closest matches: {shown}{more}."
        else:
            msg += f" No {kind} models were found; put files into the models/{kind} folder."
        super().__init__(msg)


class UnsafePathError(ModelNotFoundError):
    """A model name tried to leave its model folder (``..``, an absolute path, a symlink pointing out)."""


class CorruptCheckpointError(ModelError):
    """The file is not a readable safetensors/pickle checkpoint (truncated download, damaged header)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"{self.path} is damaged or not a model file: {reason}. "
            "If it was downloaded, the download may be incomplete; download it again."
        )


class PickleRefusedError(ModelError):
    """A ``.ckpt``/``.pt`` file was offered but unpickling is not allowed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(
            f"Refusing to unpickle {self.path}: pickle-based checkpoints (.ckpt/.pt/.bin) can run code "
            "when loaded. Convert it to .safetensors, or allow pickle loading explicitly "
            "(allow_pickle=True) if you trust where the file came from."
        )


class UnknownArchitectureError(ModelError):
    """The weights do not look like any model family we know how to build."""

    def __init__(self, path: str | Path, found: str) -> None:
        self.path = Path(path)
        self.found = found
        super().__init__(
            f"Could not tell what kind of model {self.path} is: {found}. "
            f"Supported are {_supported_families()} checkpoints (single .safetensors files or diffusers folders)."
        )


class UnsupportedFamilyError(UnknownArchitectureError):
    """The file is of a model family sdgraph recognises but cannot run yet (``nodes.families``)."""

    def __init__(self, path: str | Path, family: str, display_name: str, description: str) -> None:
        self.path = Path(path)
        self.family = family
        self.found = description
        ModelError.__init__(
            self,
            f"{self.path} is {description}, which sdgraph cannot run yet ({display_name} models are "
            f"recognised but not supported). sdgraph runs {_supported_families()} checkpoints.",
        )


def _supported_families() -> str:
    from nodes.families import supported

    shown = [f.display_name for f in sorted(supported(), key=lambda f: f.name)]
    return ", ".join(shown[:-1]) + " and " + shown[-1] if len(shown) > 1 else "".join(shown)


class MissingComponentError(ModelError):
    """A checkpoint lacks a whole part (VAE, text encoder, UNet) or some of its weights."""

    def __init__(self, path: str | Path, component: str, detail: str = "") -> None:
        self.path = Path(path)
        self.component = component
        msg = f"{self.path} has no usable {component}"
        msg += f" ({detail})" if detail else ""
        if component == "vae":
            msg += ". Load a separate VAE file with a VAE loader, or use a checkpoint that includes one."
        else:
            msg += ". The file may be a partial checkpoint (for example a UNet-only or LoRA file)."
        super().__init__(msg)


class ConfigOverrideError(ModelError):
    """An override (argument or ``<file>.sdgraph.json`` sidecar) has a key or value we cannot use."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        super().__init__(f"Invalid model settings in {source}: {problem}.")


class OutOfMemoryError(ModelError):
    """The device ran out of memory even after unloading every model we could."""

    def __init__(self, device: str, what: str = "", tip: str = "") -> None:
        self.device = device
        msg = f"Out of memory on {device}"
        msg += f" while {what}" if what else ""
        msg += ". Unused models were unloaded but it still did not fit."
        msg += " " + (
            tip or "Try a smaller image size or batch size, a lower precision (fast mode), or run on the CPU."
        )
        super().__init__(msg)
