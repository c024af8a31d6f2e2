"""The shortcut cheat sheet: the shortcut table (`ui.shortcuts`) and the canvas gestures, as one list.

Built from the same data the actions are built from, so a key shown here is the key that works.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from ui.shortcuts import GESTURES, SHORTCUTS

SECTIONS = {"window": "Window", "canvas": "Canvas"}


def rows() -> list[tuple[str, str, str]]:
    """(section, keys as shown on this platform, what it does), in table order."""
    out: list[tuple[str, str, str]] = []
    for scope in ("window", "canvas"):
        for sc in SHORTCUTS:
            if sc.scope == scope:
                keys = ", ".join(QKeySequence(k).toString(QKeySequence.SequenceFormat.NativeText) for k in sc.keys)
                out.append((SECTIONS[scope], keys, sc.description))
    out.extend(("Mouse and keys on the canvas", keys, text) for keys, text in GESTURES)
    return out


class CheatSheet(QDialog):
    """A read-only table; Esc or Close dismisses it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.setObjectName("cheat-sheet")
        data = rows()
        self.table = QTableWidget(len(data), 3, self)
        self.table.setHorizontalHeaderLabels(["Where", "Keys", "Does"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        for r, row in enumerate(data):
            for c, text in enumerate(row):
                item = QTableWidgetItem(text)
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(720, 520)
