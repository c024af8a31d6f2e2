"""Fixtures for the timeline and live-slider tests: a private SDGRAPH_HOME, a qasync loop, tiny models."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

from tests.support.model_root import tiny_model_root, tiny_models  # noqa: F401


@pytest.fixture(autouse=True)
def sdgraph_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SDGRAPH_HOME", str(home))
    return home


@pytest.fixture
def qloop(qapp: object) -> Iterator[asyncio.AbstractEventLoop]:
    """A qasync loop on pytest-qt's QApplication, like the window's (errors in it fail the test)."""
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
