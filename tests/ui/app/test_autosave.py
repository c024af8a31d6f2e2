"""Autosave and crash recovery, with real files: a "crash" is a session whose process is gone and
whose lock file was never removed, which is exactly what a killed or crashed window leaves behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from graph_engine import Graph
from graph_engine.serialization import graph_to_dict, save
from ui.autosave import Autosaver, AutosaveStore


def dead_pid() -> int:
    """The id of a process that has certainly exited."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def sample_graph(value: int = 1) -> Graph:
    g = Graph()
    g.add_node("Const", {"value": value}, pos=(10, 20))
    return g


def test_crashed_session_is_offered_and_a_clean_exit_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "autosave"
    original = tmp_path / "work.json"
    save(sample_graph(1), original)
    os.utime(original, (time.time() - 60, time.time() - 60))

    crashed = AutosaveStore(root, pid=dead_pid())
    crashed.start_session()
    edited = sample_graph(2)
    crashed.write(edited, crashed.name_for(original), original)
    # ...and the process dies here: end_session() is never called.

    me = AutosaveStore(root)
    me.start_session()
    (found,) = me.recoverable()
    assert found.original == original.resolve()
    assert graph_to_dict(found.load()) == graph_to_dict(edited)

    me.forget_crashed_sessions()  # asked once: not offered again
    assert me.recoverable() == []
    assert not crashed.lock_path.exists()

    me.write(sample_graph(3), me.name_for(None), None)
    me.end_session()
    assert sorted(p.name for p in root.iterdir()) == []


def test_not_offered_when_file_is_newer_or_session_is_alive(tmp_path: Path) -> None:
    root = tmp_path / "autosave"
    original = tmp_path / "work.json"
    crashed = AutosaveStore(root, pid=dead_pid())
    crashed.start_session()
    crashed.write(sample_graph(2), crashed.name_for(original), original)
    save(sample_graph(5), original)  # saved after the autosave: the file has everything
    os.utime(original, (time.time() + 5, time.time() + 5))

    alive = AutosaveStore(root, pid=os.getpid(), session="other-window")  # another open window
    alive.start_session()
    alive_file = alive.write(sample_graph(7), alive.name_for(None), None)

    me = AutosaveStore(root)
    assert me.recoverable() == []
    me.forget_crashed_sessions()
    assert alive.lock_path.exists()  # a running window's autosave is never touched
    assert alive_file.exists()


def test_autosaver_writes_only_when_dirty_and_changed(qapp: object, tmp_path: Path) -> None:
    store = AutosaveStore(tmp_path / "autosave")
    store.start_session()
    saver = Autosaver(store, interval_ms=60_000)
    graph = sample_graph()
    dirty = [False]
    saver.track(graph, None, lambda: dirty[0])

    assert saver.save_if_dirty() is None  # clean: nothing to protect
    dirty[0] = True
    first = saver.save_if_dirty()
    assert first is not None and first.is_file()
    mtime = first.stat().st_mtime_ns
    assert saver.save_if_dirty() is None  # unchanged since the last write
    graph.set_value(1, "value", 42)
    assert saver.save_if_dirty() == first
    assert first.stat().st_mtime_ns >= mtime
    assert '"value": 42' in first.read_text()

    saver.document_saved()
    assert not first.exists()
    saver.stop()
