"""The window under faults (issue 14): Ctrl+S on a full disk, and a run into an unusable output folder.

Both are driven by real key presses; the full disk is ENOSPC raised by the write of the temp file in
`atomic_write`, the one path every workflow save takes.
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from typing import Any

import pytest
from gui_toy_nodes import RAN, toy_registry
from PySide6.QtCore import Qt
from test_main_window import build_chain

import graph_engine.serialization as serialization
from app.settings import Settings
from ui import main_window as main_window_module
from ui.autosave import AutosaveStore
from ui.main_window import MainWindow


def test_ctrl_s_on_a_full_disk_keeps_the_file_says_why_and_a_later_save_works(
    toy_window: MainWindow, qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = toy_window
    target = tmp_path / "flow.json"
    assert window.save_as(target)
    before = target.read_bytes()
    warnings: list[str] = []
    monkeypatch.setattr(main_window_module.QMessageBox, "warning", lambda _parent, _title, text: warnings.append(text))

    real_fdopen = os.fdopen
    full = {"on": True}

    class FullDisk:
        def __init__(self, f: Any) -> None:
            self._f = f

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self._f.close()

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        f = real_fdopen(fd, *args, **kwargs)
        return FullDisk(f) if full["on"] else f

    monkeypatch.setattr(serialization.os, "fdopen", fdopen)
    window.add_node("Const")
    window.view.setFocus()
    qtbot.keyClick(window.view, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)

    assert len(warnings) == 1 and str(target) in warnings[0] and "no space left" in warnings[0].lower(), warnings
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".flow.json")) == []  # no temp left
    assert window.is_dirty()  # the change is not lost: still unsaved, still in the graph
    assert any(n.type == "Const" for n in window.graph.nodes.values())

    full["on"] = False  # space was freed: the window is still working and saves
    qtbot.keyClick(window.view, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert not window.is_dirty() and target.read_bytes() != before
    assert any(n.type == "Const" for n in serialization.load(target).nodes.values())


def test_a_run_into_an_output_folder_that_is_a_file_does_not_start_and_says_why(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, tmp_path: Path, sdgraph_home: Path
) -> None:
    RAN.clear()
    blocker = tmp_path / "out"
    blocker.write_text("a file where the images should go")
    store = AutosaveStore(sdgraph_home / "autosave")
    store.start_session()
    window = MainWindow(
        toy_registry(), Settings(output_dir=str(blocker)), autosave=store, templates_dir=tmp_path / "templates"
    )
    qtbot.addWidget(window, before_close_func=lambda w: setattr(w, "prompt_on_close", False))
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=3000)
    build_chain(window, slow_steps=2, delay=0.01)

    window.view.setFocus()
    qtbot.keyClick(window.view, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    (task,) = window._tasks
    assert qloop.run_until_complete(task) is None  # the run never started
    assert RAN == []  # no node ran
    messages = [text for text, _node in window.log.entries()]
    assert any(str(blocker) in m and "is a file" in m for m in messages), messages
    assert window.log_dock.isVisible()
    assert blocker.read_text() == "a file where the images should go"

    blocker.unlink()  # the user fixes it: the next run makes the folder and writes there
    qtbot.keyClick(window.view, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    task = next(iter(window._tasks))
    result = qloop.run_until_complete(task)
    assert result is not None and result.status == "done"
    assert blocker.is_dir() and any(blocker.iterdir())
