"""Running a transformer larger than the model budget by streaming its blocks from the file.

A released FLUX.1-dev is 23.8 GB in bf16; on a 24 GB machine (or with a 12 GB model budget) it
cannot be held in memory next to anything else. Its weights are already memory-mapped from the
safetensors file (``assembly.build_model`` assigns the mapped tensors as parameters), so nothing
forces them all into memory at once — except that every page a forward pass touches stays counted
in the process until the map closes, and that the usual compute-dtype hooks replace the mapped
weights by copies. Streaming therefore works per *block* (each element of the network's top-level
``ModuleList``s: FLUX's double and single blocks, SD3's joint blocks, Z-Image's layers):

* before a block runs, each of its tensors is made ready for the call: moved to the device and cast
  to the compute dtype. On the CPU with a file stored in the compute dtype (bf16 file, bf16
  compute) that is the mapped tensor itself, zero-copy, read straight from the page cache;
* after it ran, the copies are dropped, the mapped originals put back, and the block's pages of the
  file mapping are released (``madvise(MADV_DONTNEED)``: clean file pages, re-read from the page
  cache or the disk on the next step), so the process's memory stays bounded by the parts outside
  the blocks plus about one block, whatever the model's size;
* while a block runs, the kernel is asked to read the next one ahead (``MADV_WILLNEED``).

Everything outside the blocks (embedders, the final norm and projection: ~1 % of FLUX) is cast and
placed on the device once. On CUDA the same hooks move each block to the GPU just in time and drop it
after (sequential offload); that path is the same code with another device but has not been run on a
GPU here. Layers that keep their own dtypes (scaled fp8) are only moved, never cast.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import mmap
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

_MADV_WILLNEED = 3
_MADV_DONTNEED = 4
_PAGE = mmap.PAGESIZE


def blocks_of(network: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks of a transformer: every element of its top-level ``ModuleList``s."""
    found: list[torch.nn.Module] = []
    for child in network.children():
        if isinstance(child, torch.nn.ModuleList):
            found.extend(child)
    return found


def _tensors(module: torch.nn.Module) -> Iterator[tuple[torch.nn.Module, str, bool, Tensor]]:
    """(owner, name, is_parameter, tensor) for every parameter and buffer under ``module``."""
    for owner in module.modules():
        for name, p in owner._parameters.items():
            if p is not None:
                yield owner, name, True, p
        for name, b in owner._buffers.items():
            if b is not None:
                yield owner, name, False, b


def _set(owner: torch.nn.Module, name: str, is_param: bool, value: Tensor) -> None:
    if is_param:
        param = owner._parameters[name]
        assert param is not None
        param.data = value
    else:
        owner._buffers[name] = value


def _target(owner: torch.nn.Module, tensor: Tensor, device: torch.device, compute: torch.dtype) -> Tensor:
    """The tensor as a call needs it: on ``device``, floating ones in ``compute`` unless the layer keeps
    its own dtypes. No copy when nothing changes (a bf16 mapped weight computing in bf16 on the CPU)."""
    own = getattr(owner, "own_dtypes", False)
    if tensor.is_floating_point() and not own:
        return tensor.to(device=device, dtype=compute)
    return tensor.to(device=device)


class _Mapping:
    """The address ranges of the model file(s) mapped into this process, for releasing their pages."""

    def __init__(self, files: Iterable[Path]) -> None:
        self.ranges: list[tuple[int, int]] = []
        self._libc: Any = None
        if not sys.platform.startswith("linux"):
            return  # elsewhere the OS reclaims clean mapped pages under pressure by itself
        names = {str(Path(f).resolve()) for f in files}
        try:
            with open("/proc/self/maps") as maps:
                for line in maps:
                    parts = line.split(maxsplit=5)
                    if len(parts) == 6 and parts[5].strip() in names:
                        lo, hi = (int(x, 16) for x in parts[0].split("-"))
                        self.ranges.append((lo, hi))
            self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        except OSError:
            self.ranges = []

    def advise(self, tensors: Iterable[Tensor], advice: int) -> int:
        """``madvise`` the whole pages of ``tensors`` that lie inside the file mapping; bytes advised.
        Only file-backed pages are ever advised: ``MADV_DONTNEED`` on them drops nothing but a cached
        copy of the file (on a private anonymous page it would zero the data)."""
        if not self.ranges or self._libc is None:
            return 0
        done = 0
        for t in tensors:
            if t.device.type != "cpu" or t.numel() == 0:
                continue
            start = t.data_ptr()
            end = start + t.numel() * t.element_size()
            for lo, hi in self.ranges:
                a, b = max(start, lo), min(end, hi)
                a = (a + _PAGE - 1) // _PAGE * _PAGE
                b = b // _PAGE * _PAGE
                if b > a:
                    self._libc.madvise(ctypes.c_void_p(a), ctypes.c_size_t(b - a), advice)
                    done += b - a
        return done


class LayerStreamer:
    """Per-block hooks that make a network's weights ready just in time and release them after."""

    def __init__(
        self, network: torch.nn.Module, *, device: torch.device, compute: torch.dtype, files: Iterable[Path]
    ) -> None:
        self.network = network
        self.device = torch.device(device)
        self.compute = compute
        self.blocks = blocks_of(network)
        if not self.blocks:
            raise ValueError(f"{type(network).__name__} has no repeated blocks to stream")
        self.mapping = _Mapping(files)
        in_blocks = {id(t) for b in self.blocks for *_, t in _tensors(b)}
        self._outside = [(o, n, p, t) for o, n, p, t in _tensors(network) if id(t) not in in_blocks]
        for owner in network.modules():
            if getattr(owner, "own_dtypes", False):  # a scaled fp8 linear: told the working dtype only
                compute_in: Any = getattr(owner, "compute_in")  # noqa: B009 (not a Module attribute mypy knows)
                compute_in(compute)
        self._place_outside(self.device)
        # The stored tensors of each block, as the file holds them (mapped), restored after every call.
        self._stored = [[(o, n, p, t.data if p else t) for o, n, p, t in _tensors(b)] for b in self.blocks]
        self._handles = []
        for i, block in enumerate(self.blocks):
            self._handles.append(block.register_forward_pre_hook(self._make_ready(i)))
            self._handles.append(block.register_forward_hook(self._make_release(i)))
        self.released_bytes = 0  # pages handed back to the OS, for tests and the bench

    def _place_outside(self, device: torch.device) -> None:
        for owner, name, is_param, tensor in self._outside:
            _set(owner, name, is_param, _target(owner, tensor.data if is_param else tensor, device, self.compute))
        self._outside = [(o, n, p, o._parameters[n] if p else o._buffers[n]) for o, n, p, _ in self._outside]  # type: ignore[misc]

    def _make_ready(self, i: int) -> Any:
        def hook(module: torch.nn.Module, args: Any) -> None:
            for owner, name, is_param, stored in self._stored[i]:
                _set(owner, name, is_param, _target(owner, stored, self.device, self.compute))
            if i + 1 < len(self._stored):  # ask the kernel to read the next block while this one computes
                self.mapping.advise((s for *_, s in self._stored[i + 1]), _MADV_WILLNEED)

        return hook

    def _make_release(self, i: int) -> Any:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            for owner, name, is_param, stored in self._stored[i]:
                _set(owner, name, is_param, stored)
            self.released_bytes += self.mapping.advise((s for *_, s in self._stored[i]), _MADV_DONTNEED)

        return hook

    def move(self, device: str | torch.device) -> None:
        """Move what stays resident (everything outside the blocks); the blocks follow on their next call."""
        self.device = torch.device(device)
        self._place_outside(self.device)

    def resident_bytes(self) -> int:
        """What the model holds in memory while it runs: the parts outside the blocks plus the largest block
        in the compute dtype (what the model manager budgets for a streamed model)."""
        outside = sum(t.numel() * t.element_size() for *_, t in self._outside)
        size = self.compute.itemsize
        block = max(sum(s.numel() * (size if s.is_floating_point() else 1) for *_, s in b) for b in self._stored)
        return outside + block

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def model_files(path: Path) -> list[Path]:
    """The weight files a model path maps (a single file, or every safetensors file of a folder)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".safetensors", ".gguf"))
    return [path]


def stream_network(network: torch.nn.Module, path: Path, device: torch.device, compute: torch.dtype) -> LayerStreamer:
    """Stream ``network`` (built from ``path``'s mapped tensors) block by block; see the module docstring."""
    streamer = LayerStreamer(network, device=device, compute=compute, files=model_files(path))
    with contextlib.suppress(AttributeError):
        network._sdgraph_streamer = streamer  # type: ignore[assignment]  # keeps the hooks' owner alive with the net
    return streamer


def over_budget_message(name: str, size: int, budget: int) -> str:
    """What the user is told once when a model is streamed."""
    gb = 1e9
    return (
        f"{name} ({size / gb:.1f} GB) is larger than the model budget ({budget / gb:.1f} GB): "
        "streaming its layers from disk; expect slower steps"
    )
