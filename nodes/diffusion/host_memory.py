"""Giving the memory of replaced weights back to the OS while a model's weights are rewritten (glibc).

Why: fast mode rewrites weights after loading them: into channels_last (`runtime.prepare_unet`,
`prepare_vae`; for a single-file UNet the load's cast already writes that layout) and into oneDNN's
packed layout (`nodes.diffusion.prepack`), each allocating a new copy and freeing the old one.
glibc serves blocks below its mmap threshold from its heap and keeps freed heap memory for reuse,
and that threshold rises to 32 MB as large blocks are freed, so nearly every weight lands in the heap
and the freed copies stay counted in the process: SD1.5 in bf16 peaked at 3.3–3.5 GB for 2.7 GB of
live data (issue 15 asks ≤ 3 GB). Inside `returning_freed_memory()` every block of 1 MB or more is
its own mapping, returned to the OS when freed (loaded and rewritten, the weights then left 2.7 GB;
the whole job peaks at 2.9 GB). Outside it the
threshold stays at 32 MB, glibc's largest dynamic value, so a sampling step's activations are reused
from the heap: a 1 MB threshold for the whole process also gave the low peak, but every step then
paid page faults (KSampler 5.3–5.6 → 6.9–7.1 s for 10 steps, measured). docs/benchmarks.md has the
figures.

Other C libraries (macOS, Windows, musl) keep their own policies: the scope does nothing there.
"""

from __future__ import annotations

import ctypes
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
REWRITE_MMAP_THRESHOLD = 1 << 20  # inside the scope: weights (≥ 1 MB) get their own mappings
STEADY_MMAP_THRESHOLD = 32 << 20  # outside: glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
STEADY_TRIM_THRESHOLD = 2 * STEADY_MMAP_THRESHOLD  # what glibc's dynamic scheme pairs with it

_lock = threading.Lock()
_depth = 0
_last_set: int | None = None


@cache
def _libc() -> Any:
    """glibc, or None where the C library is another."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt, libc.malloc_trim  # noqa: B018  (both must exist)
    except (OSError, AttributeError):
        return None
    return libc


def available() -> bool:
    return _libc() is not None


def trim() -> None:
    """Hand the free pages inside glibc's heap back to the OS (``malloc_trim``).

    For the end of a node whose temporaries were many and large, such as a sampler's activations,
    before the next node makes its own: without it they stay counted in the process while, say, the
    VAE decode allocates (SD1.5, 256²: peak 2.97 GB in the decode, measured).
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def mmap_threshold() -> int | None:
    """The threshold this module last set (None: untouched, or not glibc); for tests and reports."""
    return _last_set


def _set(threshold: int, trim_threshold: int | None = None) -> None:
    global _last_set
    libc = _libc()
    if libc is None:
        return
    libc.mallopt(_M_MMAP_THRESHOLD, threshold)
    if trim_threshold is not None:
        libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    _last_set = threshold


@contextmanager
def returning_freed_memory() -> Iterator[None]:
    """Blocks of 1 MB or more allocated inside are returned to the OS when freed (glibc; nested and
    concurrent scopes share one setting, restored when the last one ends)."""
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1:
            _set(REWRITE_MMAP_THRESHOLD)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _set(STEADY_MMAP_THRESHOLD, STEADY_TRIM_THRESHOLD)
