"""A guard against a PySide6 reference-count bug that crashes the interpreter ("deallocating None").

PySide6/shiboken 6.12 returns `None` from every void C++ method (`setPos`, `painter.setPen`,
`update`, ...) without taking a reference to it. On Python 3.12+ `None` is immortal, so that is harmless;
on Python 3.11 (which this project supports) every such call *removes* a reference from `None`, and once
its count reaches zero CPython aborts with "Fatal Python error: none_dealloc". A canvas makes thousands of
these calls per frame, so the app (and the test suite) dies within seconds to minutes.

`make_none_immortal()` detects the leak and, only if present, raises `None`'s reference count by 2**40,
which is what Python 3.12 does for immortal objects (PEP 683): `None` is a static object that is never
freed, so its count only matters for that fatal check. Importing `ui.canvas` applies it; app entry points
and test conftests may call it again explicitly (it is idempotent).
"""

from __future__ import annotations

import ctypes
import sys

_BOOST = 1 << 40
_applied = False


def void_calls_leak_none() -> bool:
    """True when calling a void PySide method drops a reference from `None` (the bug this module guards)."""
    if sys.version_info >= (3, 12):
        return False
    from PySide6.QtCore import QPointF

    p = QPointF()
    before = sys.getrefcount(None)
    for _ in range(64):
        p.setX(1.0)
    return sys.getrefcount(None) - before <= -32


def make_none_immortal() -> bool:
    """Apply the workaround if this interpreter/PySide pair needs it; returns whether it is in effect."""
    global _applied
    if _applied:
        return True
    if not void_calls_leak_none():
        return False
    ctypes.c_ssize_t.from_address(id(None)).value += _BOOST
    _applied = True
    return True
