"""Keeping loaded models in memory across runs, within a budget.

Loading a checkpoint costs seconds and gigabytes, and a graph asks for the same one on every run.
The manager loads each distinct request once — keyed by the file's resolved path, modification
time and size (so an overwritten file is reloaded), the device, the dtypes and any overrides — and
hands back the *same* object on later requests.

Memory: cached models count against a byte budget (default: 70 % of physical RAM). When a new load
would exceed it, least-recently-used models are dropped first; models marked in use
(``with manager.using(obj):``) are never dropped. A dropped model that a caller still holds is
adopted back instead of being loaded a second time. A transformer larger than the budget is
streamed from its file (``nodes.diffusion.dit.streaming``) and counts only what stays resident. On a
GPU, ``make_room`` first *moves* idle models to the CPU (they stay cached and move back on the next
request), and ``oom_guard`` turns a device out-of-memory into one ``OutOfMemoryError`` after freeing
everything it can, with a tip.

Thread safety: the executor runs on a worker thread while the UI may ask what is loaded. One lock
guards the table; each key has its own lock so two threads asking for the same model load it once,
while different models can load at the same time.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nodes.diffusion import host_memory
from nodes.diffusion.errors import ModelError, OutOfMemoryError

log = logging.getLogger(__name__)

# Loader arguments that do not make a different model: the device is keyed on its own, and a layout
# hint only changes how the first copy is laid out (`runtime.prepare_unet` sets it on every request).
_NOT_KEYS = frozenset({"device", "unet_channels_last"})

Loader = Callable[..., Any]


@dataclass(frozen=True)
class ModelKey:
    """Identity of one load request; equal keys share one loaded object."""

    kind: str
    path: str
    mtime_ns: int
    size: int
    device: str
    dtypes: tuple[str, ...]
    options: str  # overrides and other loader options, as canonical JSON


@dataclass
class ModelInfo:
    """What the UI shows about a cached model."""

    kind: str
    path: str
    device: str
    nbytes: int
    in_use: bool
    offloaded: bool


@dataclass
class _Entry:
    key: ModelKey
    value: Any
    nbytes: int
    last_used: float
    users: int = 0
    offloaded: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def default_budget_bytes() -> int:
    """70 % of physical RAM: room for the OS, the UI and intermediate tensors."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 * 1024**3
    return int(total * 0.7)


def size_of(obj: Any) -> int:
    """Bytes of weights held by a loaded object (LoadedCheckpoint, nn.Module, or anything with nbytes())."""
    if hasattr(obj, "nbytes") and callable(obj.nbytes):
        return int(obj.nbytes())
    if isinstance(obj, torch.nn.Module):
        from nodes.diffusion import prepack  # packed weights replace Parameters (not in parameters())

        plain = sum(t.numel() * t.element_size() for t in [*obj.parameters(), *obj.buffers()])
        return plain + prepack.packed_nbytes(obj)
    return 0


def _file_identity(path: Path) -> tuple[str, int, int]:
    """Resolved path, newest mtime and total size (a folder counts all its files)."""
    resolved = path.resolve()
    if resolved.is_dir():
        files = [p for p in resolved.rglob("*") if p.is_file()]
        stats = [p.stat() for p in files]
        return str(resolved), max((s.st_mtime_ns for s in stats), default=0), sum(s.st_size for s in stats)
    st = resolved.stat()
    return str(resolved), st.st_mtime_ns, st.st_size


def is_out_of_memory(exc: BaseException) -> bool:
    """A device or host allocation failure. The CPU allocator says "can't allocate memory" (a plain
    RuntimeError, no "out of memory" in it), which is what a too-large VAE decode on the CPU raises."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "not enough memory" in text or "can't allocate memory" in text
    )


class ModelManager:
    """A thread-safe LRU cache of loaded models with a memory budget (see the module docstring)."""

    def __init__(
        self,
        budget_bytes: int | None = None,
        *,
        loaders: dict[str, Loader] | None = None,
        measure: Callable[[Any], int] = size_of,
    ) -> None:
        self.budget_bytes = default_budget_bytes() if budget_bytes is None else budget_bytes
        self._loaders = loaders
        self._measure = measure
        self._entries: dict[ModelKey, _Entry] = {}
        self._dropped: dict[ModelKey, weakref.ref[Any]] = {}
        self._lock = threading.RLock()
        self._key_locks: dict[ModelKey, threading.Lock] = {}
        self.loads = 0  # how many real loads happened (for tests and the UI's status line)

    # ---------------------------------------------------------------- requests

    def checkpoint(
        self,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        vae_dtype: torch.dtype | None = None,
        text_dtype: torch.dtype | None = None,
        overrides: dict[str, Any] | None = None,
        allow_pickle: bool = False,
        unet_channels_last: bool = False,
    ) -> Any:
        """The LoadedCheckpoint for these settings, loading it only if it is not cached
        (``unet_channels_last``: see `load_checkpoint`; not part of what is cached)."""
        kwargs = dict(
            device=torch.device(device),
            dtype=dtype,
            vae_dtype=vae_dtype or dtype,
            text_dtype=text_dtype or dtype,
            overrides=overrides,
            allow_pickle=allow_pickle,
            unet_channels_last=unet_channels_last,
        )
        return self._get("checkpoint", Path(path), kwargs)

    def vae(
        self,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        family: str = "sd1",
        overrides: dict[str, Any] | None = None,
        allow_pickle: bool = False,
    ) -> Any:
        """A standalone VAE (see ``load_vae``), cached like checkpoints."""
        kwargs = dict(
            device=torch.device(device), dtype=dtype, family=family, overrides=overrides, allow_pickle=allow_pickle
        )
        return self._get("vae", Path(path), kwargs)

    def text_encoder(
        self,
        path: str | Path,
        *,
        prefix: str,
        role: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> Any:
        """One text encoder of a standalone file (see ``load_text_encoder``); ``dtype=None`` keeps the stored one."""
        kwargs = dict(device=torch.device(device), dtype=dtype, prefix=prefix, role=role)
        return self._get("text_encoder", Path(path), kwargs)

    def diffusion_model(
        self,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        weight_dtype: str = "default",
        stream: bool = False,
    ) -> Any:
        """A flow transformer (SD3/3.5, FLUX.1, Z-Image) of a file, all-in-one checkpoint or folder,
        computing in ``dtype`` with its weights as stored or in fp8, or streamed block by block from the
        file when it is larger than the budget (see ``load_transformer``)."""
        kwargs = dict(device=torch.device(device), dtype=dtype, weight_dtype=weight_dtype, stream=stream)
        return self._get("diffusion_model", Path(path), kwargs)

    def vae16(self, path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Any:
        """The 16-channel VAE of SD3/FLUX/Z-Image files (standalone or inside an all-in-one checkpoint)."""
        return self._get("vae16", Path(path), dict(device=torch.device(device), dtype=dtype))

    def controlnet(
        self, path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> Any:
        """A ControlNet for the UNet families (see ``nodes.diffusion.controlnet.load_controlnet``)."""
        return self._get("controlnet", Path(path), dict(device=torch.device(device), dtype=dtype))

    def _key(self, kind: str, path: Path, kwargs: dict[str, Any]) -> ModelKey:
        if not path.exists():
            raise ModelError(f"Model file {path} does not exist.")
        resolved, mtime, size = _file_identity(path)
        device = str(kwargs["device"])
        dtypes = tuple(str(v) for k, v in sorted(kwargs.items()) if "dtype" in k)
        options = json.dumps(
            {k: v for k, v in kwargs.items() if k not in _NOT_KEYS and "dtype" not in k}, sort_keys=True, default=str
        )
        return ModelKey(kind, resolved, mtime, size, device, dtypes, options)

    def _get(self, kind: str, path: Path, kwargs: dict[str, Any]) -> Any:
        key = self._key(kind, path, kwargs)
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                entry = self._entries.get(key) or self._adopt(key)
                if entry is not None:
                    entry.last_used = time.monotonic()
                    if entry.offloaded:
                        self._bring_back(entry)
                    return entry.value
                on_disk = key.size
            self._evict_until(self.budget_bytes - on_disk, keep=key)
            value = self._load(kind, path, kwargs)
            with self._lock:
                self.loads += 1
                entry = _Entry(key, value, self._measure(value), time.monotonic())
                self._entries[key] = entry
                self._evict_until(self.budget_bytes, keep=key)
            return value

    def _load(self, kind: str, path: Path, kwargs: dict[str, Any]) -> Any:
        # Each weight in its own mapping, so what a later conversion frees leaves the process
        # (nodes.diffusion.host_memory).
        with host_memory.returning_freed_memory():
            return self._load_once_more_on_oom(kind, path, kwargs)

    def _load_once_more_on_oom(self, kind: str, path: Path, kwargs: dict[str, Any]) -> Any:
        loader = self._loader(kind)
        device: torch.device = kwargs["device"]
        try:
            return loader(path, **kwargs)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
        # Out of memory while loading: free everything idle on that device and try once more.
        log.warning("out of memory loading %s on %s; unloading idle models and retrying", path, device)
        self.free_device(device)
        with self.oom_guard(device, f"loading {path.name}"):
            return loader(path, **kwargs)

    def _loader(self, kind: str) -> Loader:
        if self._loaders is not None:
            return self._loaders[kind]
        from nodes.diffusion.checkpoint.load import load_checkpoint, load_vae
        from nodes.diffusion.controlnet import load_controlnet
        from nodes.diffusion.dit.loading import load_transformer, load_vae16
        from nodes.diffusion.text.encoder_files import load_text_encoder

        loaders: dict[str, Loader] = {
            "checkpoint": load_checkpoint,
            "vae": load_vae,
            "text_encoder": load_text_encoder,
            "diffusion_model": load_transformer,
            "vae16": load_vae16,
            "controlnet": load_controlnet,
        }
        return loaders[kind]

    def _adopt(self, key: ModelKey) -> _Entry | None:
        """A model dropped from the cache but still held by a caller is reused, not loaded twice."""
        ref = self._dropped.pop(key, None)
        value = ref() if ref is not None else None
        if value is None:
            return None
        entry = _Entry(key, value, self._measure(value), time.monotonic())
        self._entries[key] = entry
        return entry

    # ---------------------------------------------------------------- in-use pins

    @contextlib.contextmanager
    def using(self, value: Any) -> Iterator[Any]:
        """Pin a model while a node runs with it: it is not evicted or offloaded meanwhile."""
        with self._lock:
            entry = self._entry_for(value)
            if entry is not None:
                entry.users += 1
        try:
            yield value
        finally:
            with self._lock:
                if entry is not None:
                    entry.users -= 1
                    entry.last_used = time.monotonic()

    def _entry_for(self, value: Any) -> _Entry | None:
        return next((e for e in self._entries.values() if e.value is value), None)

    # ---------------------------------------------------------------- memory

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def loaded(self) -> list[ModelInfo]:
        with self._lock:
            return [
                ModelInfo(e.key.kind, e.key.path, e.key.device, e.nbytes, e.users > 0, e.offloaded)
                for e in sorted(self._entries.values(), key=lambda e: -e.last_used)
            ]

    def _evict_until(self, target_bytes: int, *, keep: ModelKey | None = None) -> int:
        """Drop least-recently-used idle entries until the cache fits ``target_bytes``; bytes freed."""
        freed = 0
        with self._lock:
            for entry in sorted(self._entries.values(), key=lambda e: e.last_used):
                if sum(e.nbytes for e in self._entries.values()) <= target_bytes:
                    break
                if entry.users > 0 or entry.key == keep:
                    continue
                self._drop(entry)
                freed += entry.nbytes
        if freed:
            gc.collect()
        return freed

    def _drop(self, entry: _Entry) -> None:
        log.info("unloading %s (%d MB)", entry.key.path, entry.nbytes // 2**20)
        del self._entries[entry.key]
        with contextlib.suppress(TypeError):  # values that cannot be weakly referenced are just dropped
            self._dropped[entry.key] = weakref.ref(entry.value)

    def unload_all(self) -> None:
        """Drop every idle model (the UI's "free memory" button)."""
        with self._lock:
            for entry in list(self._entries.values()):
                if entry.users == 0:
                    self._drop(entry)
        _empty_device_caches()

    def free_device(self, device: str | torch.device) -> None:
        """Drop every idle model on ``device`` and release the allocator's cached blocks."""
        device = str(torch.device(device))
        with self._lock:
            for entry in list(self._entries.values()):
                if entry.users == 0 and entry.key.device == device and not entry.offloaded:
                    self._drop(entry)
        _empty_device_caches()

    def make_room(
        self, device: str | torch.device, nbytes: int, *, free_bytes: Callable[[], int] | None = None
    ) -> bool:
        """Move idle models off ``device`` (to the CPU, staying cached) until ``nbytes`` are free.

        Returns whether enough is free afterwards. On the CPU there is nothing to move to.
        """
        device = torch.device(device)
        if device.type == "cpu":
            return True
        if free_bytes is None:
            if device.type != "cuda" or not torch.cuda.is_available():
                return True

            def free_bytes() -> int:
                return int(torch.cuda.mem_get_info(device)[0])

        with self._lock:
            candidates = sorted(
                (e for e in self._entries.values() if e.key.device == str(device) and not e.offloaded and e.users == 0),
                key=lambda e: e.last_used,
            )
            for entry in candidates:
                if free_bytes() >= nbytes:
                    break
                log.info("moving %s to the CPU to make room on %s", entry.key.path, device)
                entry.value.to("cpu")
                entry.offloaded = True
                _empty_device_caches()
        return free_bytes() >= nbytes

    def _bring_back(self, entry: _Entry) -> None:
        device = torch.device(entry.key.device)
        self.make_room(device, entry.nbytes)
        with self.oom_guard(device, f"moving {Path(entry.key.path).name} back to {device}"):
            entry.value.to(device)
        entry.offloaded = False

    @contextlib.contextmanager
    def oom_guard(self, device: str | torch.device, what: str = "") -> Iterator[None]:
        """Turn a device OOM inside the block into one ``OutOfMemoryError``, after freeing idle models."""
        try:
            yield
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            self.free_device(device)
            raise OutOfMemoryError(str(torch.device(device)), what) from exc


def _empty_device_caches() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        mps.empty_cache()
