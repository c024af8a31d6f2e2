"""Node results kept between runs, keyed by input signature, bounded by a memory budget.

A signature is a digest of (node type, type version, constant inputs, fingerprint, the signatures of
upstream results): two nodes with the same signature would compute the same thing, whatever their ids.
Changing one value changes that node's signature and, through it, every descendant's, which is exactly
the set that must re-run.

The budget counts the bytes of arrays and tensors held in results (anything with `nbytes`, or
`element_size()` and `nelement()`). Models are not counted here: the model manager owns their memory
and the cache only holds a reference.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, fields, is_dataclass
from typing import Any


def signature(parts: tuple[object, ...]) -> bytes:
    """A 128-bit digest of the parts' repr: constants are JSON-like values, upstream parts are digests."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()


def estimate_nbytes(value: Any, _depth: int = 0) -> int:
    """Bytes of array data reachable from a result (tuples, lists, dicts, dataclasses), 0 for the rest."""
    if _depth > 6 or value is None or isinstance(value, str | bytes | int | float | bool):
        return 0
    explicit = getattr(value, "cache_nbytes", None)
    if isinstance(explicit, int):
        return explicit
    if hasattr(value, "element_size") and hasattr(value, "nelement"):
        try:
            return int(value.element_size() * value.nelement())
        except TypeError:
            return 0
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(value, dict):
        return sum(estimate_nbytes(v, _depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(estimate_nbytes(v, _depth + 1) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return sum(estimate_nbytes(getattr(value, f.name), _depth + 1) for f in fields(value))
    return 0


@dataclass
class CacheEntry:
    outputs: tuple[Any, ...]
    ui: dict[str, Any]
    nbytes: int


class ResultCache:
    """Least-recently-used results under `budget_bytes`. A budget of 0 keeps nothing between runs."""

    def __init__(self, budget_bytes: int = 2 * 1024**3) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[bytes, CacheEntry] = OrderedDict()
        self.total_bytes = 0

    @property
    def enabled(self) -> bool:
        return self.budget_bytes > 0

    def get(self, key: bytes) -> CacheEntry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: bytes, outputs: tuple[Any, ...], ui: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if key in self._entries:
            self.total_bytes -= self._entries.pop(key).nbytes
        entry = CacheEntry(outputs, ui, estimate_nbytes(outputs))
        self._entries[key] = entry
        self.total_bytes += entry.nbytes
        self._evict()

    def _evict(self) -> None:
        # The newest entry stays even when it alone is over budget: the run that made it still needs it.
        while self.total_bytes > self.budget_bytes and len(self._entries) > 1:
            _, old = self._entries.popitem(last=False)
            self.total_bytes -= old.nbytes

    def discard(self, key: bytes) -> None:
        """Forget one result, so its node runs again (a batch job re-writes its images on a retry)."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.total_bytes -= entry.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self.total_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries
