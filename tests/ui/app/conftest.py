"""Fixtures for the window tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gui_toy_nodes import RAN, toy_registry

from app.settings import Settings
from ui.autosave import AutosaveStore
from ui.main_window import MainWindow


@pytest.fixture
def toy_window(qtbot: Any, tmp_path: Path, sdgraph_home: Path) -> MainWindow:
    """The main window on the toy nodes (no torch), shown, with a private autosave store and no templates."""
    RAN.clear()
    store = AutosaveStore(sdgraph_home / "autosave")
    store.start_session()
    settings = Settings(output_dir=str(tmp_path / "out"))
    win = MainWindow(toy_registry(), settings, autosave=store, templates_dir=tmp_path / "templates")
    # pytest-qt closes the window before this fixture's teardown runs; no unsaved-changes prompt then.
    qtbot.addWidget(win, before_close_func=lambda w: setattr(w, "prompt_on_close", False))
    win.show()
    qtbot.waitExposed(win)
    return win
