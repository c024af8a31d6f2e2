"""Fixtures for the window, run-controller and autosave tests (Qt offscreen comes from tests/conftest.py).

Every test gets its own SDGRAPH_HOME (so settings, recent files and autosaves never touch a real
user's folder) and, where it awaits runs, its own qasync event loop, modelled on qasync's own test
fixture: created on pytest-qt's QApplication, set as the current loop, closed afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.gui import pin_bool_refcounts

# PySide6 6.12.0 on Python 3.11 drops a reference to True on every Python-side emit(); without this a
# test session aborts at exit with "Fatal Python error: bool_dealloc" (see app.gui.pin_bool_refcounts).
pin_bool_refcounts()


@pytest.fixture(autouse=True)
def sdgraph_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SDGRAPH_HOME", str(home))
    return home


@pytest.fixture
def qloop(qapp: object) -> Iterator[asyncio.AbstractEventLoop]:
    import qasync

    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield loop
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    if errors:
        raise AssertionError(f"errors in the event loop: {errors}")


# Tiny checkpoints in a model root, for the tests that run real diffusion graphs from the window.
from tests.support.model_root import tiny_model_root, tiny_models  # noqa: E402, F401
