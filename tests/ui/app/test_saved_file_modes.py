"""Ctrl+S in the window writes the workflow with the mode the umask asks for (issue 10, bug 6)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt

from ui.main_window import MainWindow

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664)])
def test_ctrl_s_saves_with_the_umasks_mode(
    toy_window: MainWindow,
    qtbot: Any,
    tmp_path: Path,
    mask: int,
    expected: int,
) -> None:
    window = toy_window
    old = os.umask(mask)
    try:
        target = tmp_path / "flow.json"
        assert window.save_as(target)
        assert stat.S_IMODE(target.stat().st_mode) == expected
        window.add_node("Const")
        window.view.setFocus()
        qtbot.keyClick(window.view, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
        assert not window.is_dirty()
        assert stat.S_IMODE(target.stat().st_mode) == expected
    finally:
        os.umask(old)
