"""When glibc gives freed memory back to the OS: at once while weights are rewritten, never between steps.

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

The opposite holds while a sampler steps: every step allocates and frees the same blocks, and a
freed block glibc gives back is page-faulted in again by the next step. In exact mode (fp32) oneDNN
reorders each convolution weight into a new buffer on every call, up to 59 MB each, which glibc
always maps and unmaps (above its largest mmap threshold): SD1.5 at 256² took ~0.46 M page faults
and 0.6–0.85 s of system time per 2.2 s step. Inside `reusing_freed_memory()` glibc maps nothing
and trims nothing, so those blocks come back from the heap: no faults, results bit-identical, exact
mode's 10 steps 21.1–21.8 → 18.2–18.7 s in `sdgraph run`; `trim()` after the loop gives the memory
back. A rewrite scope opened inside it (a model loaded mid-run) wins while it lasts. The price is
fragmentation: blocks that vary in size leave holes, so the steps' peak grows a little (fp32 UNet at
768²: 4.75–4.87 → 4.92–4.94 GB; the job's peak, set by the decode, 7.15 → 7.24 GB). For one large VAE
decode it was too much (1024² fp32: peak 6.7 → 8.0–8.4 GB for 7 % less time), so only samplers use it.

Both depend on the thread's arena: glibc gives each new thread an arena of its own, whose heaps are
64 MB at most, and maps larger blocks whatever the policy. The window samples on a worker thread, so
`use_one_arena()` (called by `sdgraph` before any thread starts) keeps every thread in the main arena:
the exact step on a worker thread, in one process, interleaved, went 2.41–2.52 s (465 k faults) →
2.21–2.32 s with the scope alone (166 k faults) → 1.92–2.10 s with both (< 1 k faults).

Other C libraries (macOS, Windows, musl) keep their own policies: all of this does nothing there.
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
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
REWRITE_MMAP_THRESHOLD = 1 << 20  # inside the scope: weights (≥ 1 MB) get their own mappings
STEADY_MMAP_THRESHOLD = 32 << 20  # outside: glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
STEADY_TRIM_THRESHOLD = 2 * STEADY_MMAP_THRESHOLD  # what glibc's dynamic scheme pairs with it
GLIBC_MMAP_MAX = 65536  # glibc's DEFAULT_MMAP_MAX: how many blocks it may map at once
NEVER_TRIM = (1 << 31) - 1  # mallopt takes a C int

_lock = threading.Lock()
_rewriting = 0  # open `returning_freed_memory` scopes, all threads
_reusing = 0  # open `reusing_freed_memory` scopes
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


def use_one_arena() -> None:
    """Every thread started from now on allocates from glibc's main arena (see the module docstring).

    For a process whose threads do large, few allocations (a worker that samples, a preview thread):
    one arena's lock costs them nothing measurable, and the policies above then hold on every thread.
    """
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, 1)


def mmap_threshold() -> int | None:
    """The threshold this module last set (None: untouched, or not glibc); for tests and reports."""
    return _last_set


def mapping_large_blocks() -> bool:
    """Whether glibc may currently map blocks of its own (False inside `reusing_freed_memory` alone)."""
    return not (available() and _reusing and not _rewriting)


def _apply() -> None:
    """Set glibc's policy for the scopes now open (called with ``_lock`` held)."""
    global _last_set
    libc = _libc()
    if libc is None:
        return
    if _rewriting:
        libc.mallopt(_M_MMAP_MAX, GLIBC_MMAP_MAX)
        libc.mallopt(_M_MMAP_THRESHOLD, REWRITE_MMAP_THRESHOLD)
        _last_set = REWRITE_MMAP_THRESHOLD
    elif _reusing:
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, NEVER_TRIM)
    else:
        libc.mallopt(_M_MMAP_MAX, GLIBC_MMAP_MAX)
        libc.mallopt(_M_MMAP_THRESHOLD, STEADY_MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, STEADY_TRIM_THRESHOLD)
        _last_set = STEADY_MMAP_THRESHOLD


@contextmanager
def returning_freed_memory() -> Iterator[None]:
    """Blocks of 1 MB or more allocated inside are returned to the OS when freed (glibc; nested and
    concurrent scopes share one setting, restored when the last one ends)."""
    global _rewriting
    with _lock:
        _rewriting += 1
        if _rewriting == 1:
            _apply()
    try:
        yield
    finally:
        with _lock:
            _rewriting -= 1
            if _rewriting == 0:
                _apply()


@contextmanager
def reusing_freed_memory() -> Iterator[None]:
    """Freed blocks stay in glibc's heap for the next allocation instead of going back to the OS (for a
    loop that allocates the same blocks on every pass: a sampler's steps). Call `trim()` after it."""
    global _reusing
    with _lock:
        _reusing += 1
        if _reusing == 1:
            _apply()
    try:
        yield
    finally:
        with _lock:
            _reusing -= 1
            if _reusing == 0:
                _apply()
