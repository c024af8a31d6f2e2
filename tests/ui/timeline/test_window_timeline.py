"""The main window carries the timeline dock, records sampler runs into it and keeps it on new documents."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings
from nodes import builtin_registry
from tests.ui.timeline.test_timeline_panel import STEPS, sampler_graph
from ui.main_window import MainWindow


def test_window_shows_the_run_timeline(qtbot, qloop, tiny_models, tmp_path: Path):
    win = MainWindow(builtin_registry(), Settings(output_dir=str(tmp_path / "out")), templates_dir=tmp_path)
    win.prompt_on_close = False
    qtbot.addWidget(win)
    assert win.timeline_dock.widget() is win.timeline
    view_menu = next(a.menu() for a in win.menuBar().actions() if a.text().replace("&", "") == "View")
    assert win.timeline_dock.toggleViewAction() in view_menu.actions()
    graph, _ = sampler_graph(64)
    win.set_document(graph, None)  # a new document: the panel follows the new controller
    assert win.controller.live and win.controller.executor.settings["record_timeline"]
    result = qloop.run_until_complete(win.run())
    assert result is not None and result.status == "done", result and result.error
    assert len(win.timeline.frames) == STEPS + 1
    assert win.timeline.decode_button.isEnabled()
