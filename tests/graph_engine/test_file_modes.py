"""Atomic saves give files the mode a plain write would: 0o666 less the umask, or the mode of the file
they replace. `tempfile.mkstemp` alone makes every saved workflow and image 0o600 (issue 10, bug 6)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph_engine import Graph
from graph_engine.serialization import atomic_write, current_umask, save

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.fixture
def umask() -> Iterator[object]:
    """Set the process umask for one test and put the old one back."""
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sample_graph() -> Graph:
    g = Graph()
    g.add_node("Number", {"value": 3})
    return g


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_saved_workflow_follows_the_umask(tmp_path: Path, umask, mask: int, expected: int) -> None:
    umask(mask)
    assert current_umask() == mask
    target = tmp_path / "flow.json"
    save(sample_graph(), target)
    assert mode_of(target) == expected
    assert [p.name for p in tmp_path.iterdir()] == ["flow.json"]  # no temp file left behind


def test_overwriting_keeps_the_existing_files_mode(tmp_path: Path, umask) -> None:
    umask(0o022)
    target = tmp_path / "flow.json"
    target.write_text("{}")
    target.chmod(0o640)
    save(sample_graph(), target)
    assert mode_of(target) == 0o640
    atomic_write(target, b"x", fsync=False)
    assert mode_of(target) == 0o640 and target.read_bytes() == b"x"
