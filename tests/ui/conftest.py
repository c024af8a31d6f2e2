"""Fixtures every Qt test shares: a private SDGRAPH_HOME, a qasync loop on pytest-qt's QApplication,
and the tiny checkpoints for tests that run real diffusion graphs from the window."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.gui import pin_bool_refcounts
from tests.support.model_root import tiny_model_root, tiny_models  # noqa: F401

# PySide6 6.12.0 on Python 3.11 drops a reference to True on every Python-side emit() (pyproject excludes
# that version; this guard covers an environment that has it anyway). See app.gui.pin_bool_refcounts.
pin_bool_refcounts()


@pytest.fixture(autouse=True)
def sdgraph_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SDGRAPH_HOME", str(home))
    return home


@pytest.fixture
def qloop(qapp: object) -> Iterator[asyncio.AbstractEventLoop]:
    """A qasync loop like the window's, set as the current loop; errors inside it fail the test."""
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
