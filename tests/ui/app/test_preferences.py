"""Preferences and the shortcut cheat sheet, opened from the real window by their keys.

Modal dialogs are driven by a timer that finds the open dialog and types into it with real key and
mouse events, so the code under test runs exactly as it does for a person.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QDialog, QDialogButtonBox, QPlainTextEdit, QPushButton
from pytestqt.qtbot import QtBot

from app.settings import Settings
from ui.cheat_sheet import CheatSheet, rows
from ui.main_window import MainWindow
from ui.preferences import PreferencesDialog
from ui.shortcuts import GESTURES, SHORTCUTS


def _when_dialog(kind: type[QDialog], act: Callable[[Any], None], seen: list[Any]) -> None:
    """Run `act` on the first visible dialog of `kind` once it is open (polled, as a person would wait)."""

    def poll() -> None:
        for w in QApplication.topLevelWidgets():
            if isinstance(w, kind) and w.isVisible():
                seen.append(w)
                act(w)
                return
        QTimer.singleShot(20, poll)

    QTimer.singleShot(20, poll)


def _button(dialog: QDialog, which: QDialogButtonBox.StandardButton) -> Any:
    box = dialog.findChild(QDialogButtonBox)
    assert box is not None
    return box.button(which)


def test_f1_shows_every_shortcut_and_gesture(toy_window: MainWindow, qtbot: QtBot) -> None:
    seen: list[Any] = []

    def check_and_close(sheet: CheatSheet) -> None:
        texts = [sheet.table.item(r, 2).text() for r in range(sheet.table.rowCount())]
        seen.append(texts)
        qtbot.keyClick(sheet, Qt.Key.Key_Escape)

    _when_dialog(CheatSheet, check_and_close, seen)
    toy_window.view.setFocus()
    qtbot.keyClick(toy_window.view, Qt.Key.Key_F1)
    assert seen, "F1 opened no cheat sheet"
    texts = seen[1]
    assert len(texts) == len(SHORTCUTS) + len(GESTURES) == len(rows())
    assert {s.description for s in SHORTCUTS} | {g[1] for g in GESTURES} == set(texts)
    assert not seen[0].isVisible()


def test_preferences_ok_saves_and_applies_cancel_changes_nothing(
    toy_window: MainWindow, qtbot: QtBot, tmp_path: Path, sdgraph_home: Path
) -> None:
    extra_root = tmp_path / "more_models"
    (extra_root / "checkpoints").mkdir(parents=True)

    def edit_and_ok(dialog: PreferencesDialog) -> None:
        qtbot.mouseClick(dialog.precision, Qt.MouseButton.LeftButton)
        dialog.precision.setCurrentIndex(dialog.precision.findData("fast"))  # the popup list is Qt's own
        dialog.model_budget.setFocus()
        dialog.model_budget.selectAll()
        qtbot.keyClicks(dialog.model_budget, "4096")
        roots = dialog.findChild(QPlainTextEdit)
        assert roots is not None
        roots.setFocus()
        qtbot.keyClicks(roots, str(extra_root))
        qtbot.mouseClick(_button(dialog, QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)

    seen: list[Any] = []
    _when_dialog(PreferencesDialog, edit_and_ok, seen)
    qtbot.keyClick(toy_window.view, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)
    assert seen, "Ctrl+, opened no preferences"
    saved = json.loads((sdgraph_home / "settings.json").read_text())
    assert saved["precision"] == "fast" and saved["model_budget_mb"] == 4096
    assert saved["extra_model_roots"] == [str(extra_root)]
    assert toy_window.settings.precision == "fast"
    assert toy_window.doc is not None and toy_window.doc.controller.executor.settings["precision"] == "fast"

    def edit_and_cancel(dialog: PreferencesDialog) -> None:
        dialog.precision.setCurrentIndex(dialog.precision.findData("exact"))
        qtbot.mouseClick(_button(dialog, QDialogButtonBox.StandardButton.Cancel), Qt.MouseButton.LeftButton)

    _when_dialog(PreferencesDialog, edit_and_cancel, seen)
    toy_window.act_preferences.trigger()
    assert Settings.load().precision == "fast" and toy_window.settings.precision == "fast"


def test_browse_fills_the_folder(qtbot: QtBot, tmp_path: Path, monkeypatch) -> None:
    import ui.preferences as prefs

    monkeypatch.setattr(prefs, "browse_folder", lambda parent, caption, start: str(tmp_path))
    dialog = PreferencesDialog(Settings())
    qtbot.addWidget(dialog)
    row = dialog.output
    browse = row.findChild(QPushButton)
    assert browse is not None and browse.text() == "Browse…"
    qtbot.mouseClick(browse, Qt.MouseButton.LeftButton)
    assert dialog.result_settings().output_dir == str(tmp_path)


def test_light_theme_from_preferences_repaints_the_canvas(toy_window: MainWindow, qtbot: QtBot, sdgraph_home) -> None:
    """Theme "light" in Preferences: saved, and the canvas and window turn light at once; dark restores."""
    from ui import theme

    def grab_corner() -> tuple[int, int, int]:
        image = toy_window.view.viewport().grab().toImage()
        c = image.pixelColor(3, image.height() - 4)  # empty canvas, away from the minimap
        return c.red(), c.green(), c.blue()

    try:
        assert sum(grab_corner()) < 3 * 80  # dark to start with

        def choose_light(dialog: PreferencesDialog) -> None:
            dialog.theme.setCurrentText("light")
            qtbot.mouseClick(_button(dialog, QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)

        seen: list[Any] = []
        _when_dialog(PreferencesDialog, choose_light, seen)
        toy_window.act_preferences.trigger()
        assert json.loads((sdgraph_home / "settings.json").read_text())["theme"] == "light"
        qtbot.waitUntil(lambda: sum(grab_corner()) > 3 * 200)
        assert QApplication.palette().window().color().lightness() > 200
    finally:
        toy_window.apply_theme("dark")
    assert sum(grab_corner()) < 3 * 80
    assert theme.current == "dark"
