"""Reading checkpoint files: the safetensors header, lazily mapped tensors, and the pickle gate.

A safetensors file is an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
byte range) and one flat data blob. Everything the detector needs (names and shapes) is in the
header, so we parse it ourselves: opening a 7 GB checkpoint to decide what it is then costs one small
read, and the same parse lets us say *why* a file is damaged (truncated download, garbage header)
instead of surfacing a Rust panic from deep inside a loader.

Tensors are read through ``safetensors.safe_open``, which memory-maps the file: a tensor obtained
from it shares the page cache, so weights that are already in the target dtype are never copied and
the ones that need a cast are converted one at a time (no full-precision copy of the whole model).

Pickle files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) can execute code when loaded. They are read only
through ``torch.load(weights_only=True, mmap=True)`` and only when the caller passes
``allow_pickle=True``; nothing else in the project unpickles.
"""

from __future__ import annotations

import json
import math
import pickle
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodes.diffusion.errors import CorruptCheckpointError, ModelError, PickleRefusedError

if TYPE_CHECKING:
    import torch

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")

# Bytes per element for every dtype the safetensors format defines.
_DTYPE_SIZES: dict[str, float] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "F4": 0.5,
    "F6_E2M3": 0.75,
    "F6_E3M2": 0.75,
}
# Floating dtypes a cast may start from, by safetensors name (as torch attribute names).
_TORCH_FLOATS = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}
# A real header is a few hundred KB even for SDXL; anything near this is garbage, not metadata.
_MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    """What the header says about one tensor."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed header of one safetensors file; reading it touches no tensor data."""

    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    # Where the tensor data begins in the file (8-byte length + header); `TensorInfo` offsets count from here.
    data_offset: int = 0

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: info.shape for name, info in self.tensors.items()}


def is_pickle_file(path: Path) -> bool:
    return path.suffix.lower() in PICKLE_SUFFIXES


def read_safetensors_header(path: str | Path) -> SafetensorsHeader:
    """Parse and validate the header; raise ``CorruptCheckpointError`` naming what is wrong.

    Validation checks that every byte range lies inside the file, matches its dtype and shape, and
    that the ranges tile the data blob exactly, which is what a truncated or partially overwritten
    file violates.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise CorruptCheckpointError(path, f"the file is only {size} bytes long")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > _MAX_HEADER_BYTES or header_len + 8 > size:
                raise CorruptCheckpointError(
                    path,
                    f"the header claims {header_len} bytes but the file has {size} bytes "
                    "(not a safetensors file, or cut off)",
                )
            raw = f.read(header_len)
    except OSError as exc:
        raise CorruptCheckpointError(path, f"it cannot be read ({exc.strerror or exc})") from exc
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptCheckpointError(path, f"the header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise CorruptCheckpointError(path, "the header is not a JSON object")

    data_len = size - 8 - header_len
    metadata_raw = header.pop("__metadata__", None) or {}
    metadata = {str(k): str(v) for k, v in metadata_raw.items()} if isinstance(metadata_raw, dict) else {}
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        tensors[name] = _parse_entry(path, name, entry, data_len)
    _check_coverage(path, tensors, data_len)
    return SafetensorsHeader(path=path, tensors=tensors, metadata=metadata, data_offset=8 + header_len)


def _parse_entry(path: Path, name: str, entry: Any, data_len: int) -> TensorInfo:
    try:
        dtype = str(entry["dtype"])
        shape = tuple(int(d) for d in entry["shape"])
        start, end = (int(o) for o in entry["data_offsets"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptCheckpointError(path, f"the header entry for {name!r} is malformed") from exc
    if dtype not in _DTYPE_SIZES:
        raise CorruptCheckpointError(path, f"tensor {name!r} has unknown dtype {dtype!r}")
    if any(d < 0 for d in shape) or not 0 <= start <= end:
        raise CorruptCheckpointError(path, f"tensor {name!r} has an impossible shape or byte range")
    expected = math.ceil(math.prod(shape) * _DTYPE_SIZES[dtype])
    if end - start != expected:
        raise CorruptCheckpointError(
            path, f"tensor {name!r} ({dtype}{list(shape)}) should take {expected} bytes, not {end - start}"
        )
    if end > data_len:
        raise CorruptCheckpointError(
            path,
            f"tensor {name!r} ends at byte {end} of the data but the file holds only {data_len} "
            "(the file is truncated)",
        )
    return TensorInfo(dtype=dtype, shape=shape, start=start, end=end)


def _check_coverage(path: Path, tensors: dict[str, TensorInfo], data_len: int) -> None:
    """The format requires byte ranges that tile the data exactly; overlaps or holes mean damage."""
    position = 0
    for info in sorted(tensors.values(), key=lambda t: (t.start, t.end)):
        if info.start != position:
            raise CorruptCheckpointError(path, f"the tensor data has a gap or overlap at byte {position}")
        position = info.end
    if position != data_len:
        raise CorruptCheckpointError(path, f"the file has {data_len - position} unexpected bytes after the last tensor")


class _Staging:
    """One read buffer reused for every tensor that is cast, grown to the largest one.

    A fresh buffer per tensor would be a fresh set of pages each time: the page faults of a 2.1 GB
    file read twice over (read, then cast) were a visible part of a load on a VM. The buffer lives
    as long as the state dict (the load), and its size is one tensor's.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._buffer: torch.Tensor | None = None

    def take(self, size: int) -> torch.Tensor:
        import torch

        if self._buffer is None or self._buffer.numel() < size:
            # torch.empty, not bytearray: a bytearray is zero-filled first, a second pass over every
            # byte of the file (≈1.4 s of a 12 s load of the 2.1 GB SD1.5 file, measured with cProfile).
            self._buffer = torch.empty(size, dtype=torch.uint8)
        return self._buffer[:size]


class LazyStateDict(Mapping[str, "torch.Tensor"]):
    """A read-only state dict whose tensors are memory-mapped on first access and cast on the way out.

    diffusers' key-conversion functions take a dict; handing them this mapping means only the keys
    they actually use are read, and each arrives already in the component's target dtype, so a
    bf16 load of an fp32 file never holds an fp32 copy of more than one tensor.
    """

    def __init__(
        self,
        handle: Any,
        keys: list[str],
        *,
        dtype: torch.dtype | None = None,
        source: Path | None = None,
        header: SafetensorsHeader | None = None,
    ) -> None:
        self._handle = handle
        self._keys = keys
        self._key_set = set(keys)
        self._dtype = dtype
        self._source = source
        self._header = header
        self._staging = _Staging()
        self._channels_last = False

    def with_dtype(self, dtype: torch.dtype | None, *, channels_last: bool = False) -> LazyStateDict:
        """The same tensors cast to ``dtype``; with ``channels_last``, 4-D tensors that are cast come out
        in that memory format, written once by the cast instead of copied again by a later ``.to()``."""
        view = LazyStateDict(self._handle, self._keys, dtype=dtype, source=self._source, header=self._header)
        view._staging = self._staging
        view._channels_last = channels_last
        return view

    def _read_for_cast(self, key: str) -> torch.Tensor | None:
        """A tensor that must change dtype, read with `pread` into the reused staging buffer and cast;
        None for the memory map's path (no cast needed, or not a floating tensor).

        Going through the memory map instead would leave every page of the file it touched counted
        in the process's memory until the map closes: loading an fp16 file as fp32 would then peak at
        file size + fp32 weights. This way the peak is the fp32 weights plus one tensor.
        """
        import torch

        header, source = self._header, self._source
        if header is None or source is None or self._dtype is None:
            return None
        info = header.tensors[key]
        stored_name = _TORCH_FLOATS.get(info.dtype)
        if stored_name is None:
            return None
        stored = getattr(torch, stored_name)
        if stored == self._dtype:  # no cast: the memory map's view, no copy (the module docstring)
            return None
        size = info.end - info.start
        if size == 0:
            return torch.empty(info.shape, dtype=self._dtype)
        with self._staging.lock:
            raw = self._pread(key, info, self._staging.take(size))
            source_tensor = raw.view(stored).reshape(info.shape)
            if self._channels_last and source_tensor.dim() == 4:
                return source_tensor.to(self._dtype, memory_format=torch.channels_last)
            return source_tensor.to(self._dtype)

    def _pread(self, key: str, info: TensorInfo, into: torch.Tensor) -> torch.Tensor:
        assert self._header is not None and self._source is not None
        with self._source.open("rb", buffering=0) as f:
            f.seek(self._header.data_offset + info.start)
            if f.readinto(memoryview(into.numpy())) != into.numel():
                raise CorruptCheckpointError(self._source, f"tensor {key!r} is cut off")
        return into

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._key_set:
            raise KeyError(key)
        try:
            cast = self._read_for_cast(key)
        except OSError as exc:
            raise CorruptCheckpointError(self._source or Path("?"), f"tensor {key!r} cannot be read ({exc})") from exc
        if cast is not None:
            return cast
        try:
            tensor: torch.Tensor = self._handle.get_tensor(key)
        except Exception as exc:  # safetensors raises its own SafetensorError subclasses
            source = self._source or Path("?")
            raise CorruptCheckpointError(source, f"tensor {key!r} cannot be read ({exc})") from exc
        if self._dtype is not None and tensor.is_floating_point() and tensor.dtype != self._dtype:
            tensor = tensor.to(self._dtype)
        return tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._key_set


class MappedStateDict(LazyStateDict):
    """A plain dict of tensors (from a pickle file) behind the same lazy, casting interface."""

    def __init__(self, tensors: dict[str, torch.Tensor], *, dtype: torch.dtype | None = None) -> None:
        super().__init__(_DictHandle(tensors), list(tensors), dtype=dtype)
        self._tensors = tensors

    def with_dtype(self, dtype: torch.dtype | None, *, channels_last: bool = False) -> LazyStateDict:
        return MappedStateDict(self._tensors, dtype=dtype)  # its tensors are not cast by `_read_for_cast`


class _DictHandle:
    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self._tensors = tensors

    def get_tensor(self, key: str) -> torch.Tensor:
        return self._tensors[key]


def open_state_dict(path: str | Path, *, allow_pickle: bool = False) -> LazyStateDict:
    """Open a checkpoint file for lazy reading, validating safetensors headers first."""
    path = Path(path)
    if is_pickle_file(path):
        return MappedStateDict(load_pickle_checkpoint(path, allow_pickle=allow_pickle))
    if path.suffix.lower() == ".gguf":  # quantized tensors stay quantized (nodes.diffusion.gguf)
        from nodes.diffusion.gguf import read_gguf

        return read_gguf(path)  # type: ignore[return-value]
    header = read_safetensors_header(path)
    from safetensors import safe_open

    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except Exception as exc:
        raise CorruptCheckpointError(path, f"safetensors could not open it ({exc})") from exc
    return LazyStateDict(handle, list(header.tensors), source=path, header=header)


def read_shapes(path: str | Path, *, allow_pickle: bool = False) -> dict[str, tuple[int, ...]]:
    """Names and shapes of every tensor; for safetensors this reads the header only."""
    path = Path(path)
    if is_pickle_file(path):
        tensors = load_pickle_checkpoint(path, allow_pickle=allow_pickle)
        return {k: tuple(v.shape) for k, v in tensors.items()}
    if path.suffix.lower() == ".gguf":
        from nodes.diffusion.gguf import read_gguf_shapes

        return read_gguf_shapes(path)
    return read_safetensors_header(path).shapes()


def load_weights_only(path: Path) -> Any:
    """``torch.load(weights_only=True)`` of ``path``, its failures as one message: objects besides weights
    are refused by the restricted unpickler, anything else is a damaged file. Tensors stay memory-mapped
    where the format allows (torch's zip format; the legacy one, still common among ESRGAN files from
    2018-19, cannot be mapped). Callers unwrap what they expect (``state_dict``, ``params_ema``)."""
    import zipfile

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        # Not damage: the file holds Python objects besides tensors (old training callbacks, or worse).
        raise ModelError(
            f"{path} contains Python objects other than weights, which the safe loader (weights only) "
            f"refuses: {str(exc).splitlines()[0]}. Convert it to .safetensors with a tool you trust."
        ) from exc
    except Exception as exc:
        raise CorruptCheckpointError(path, f"torch.load (weights only) failed: {exc}") from exc


def load_pickle_checkpoint(path: str | Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Load a ``.ckpt``/``.pt`` with the restricted unpickler, only when explicitly allowed.

    ``weights_only=True`` refuses arbitrary classes; ``mmap=True`` keeps the tensors on disk until
    touched. Lightning-style files nest the weights under ``state_dict``.
    """
    path = Path(path)
    if not allow_pickle:
        raise PickleRefusedError(path)
    import torch

    obj = load_weights_only(path)
    while isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CorruptCheckpointError(path, f"it holds a {type(obj).__name__}, not a dict of tensors")
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
