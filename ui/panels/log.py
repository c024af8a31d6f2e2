"""The log: validation problems, run errors and run summaries, newest last.

Entries that concern a node remember its id; clicking one asks the window to select and show that
node, which is how a person gets from "node 7 (KSampler), input 'model': not connected" to the node.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

_NODE_ROLE = Qt.ItemDataRole.UserRole
_LEVEL_COLORS = {"error": "#ef5350", "warning": "#ffb74d", "info": "#cfd8dc"}
MAX_ENTRIES = 2000


class LogPanel(QWidget):
    nodeActivated = Signal(int)  # node id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget(self)
        self.list.setWordWrap(True)
        self.list.setAlternatingRowColors(False)
        clear = QPushButton("Clear", self)
        clear.clicked.connect(self.clear)
        bar = QHBoxLayout()
        bar.addStretch(1)
        bar.addWidget(clear)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list)
        layout.addLayout(bar)
        self.list.itemClicked.connect(self._clicked)
        self.list.itemActivated.connect(self._clicked)

    def add(self, level: str, text: str, node_id: int | None = None) -> QListWidgetItem:
        stamp = time.strftime("%H:%M:%S")
        item = QListWidgetItem(f"{stamp}  {text}")
        item.setForeground(QBrush(QColor(_LEVEL_COLORS.get(level, _LEVEL_COLORS["info"]))))
        item.setData(_NODE_ROLE, node_id)
        if node_id is not None:
            item.setToolTip("Click to show the node")
        self.list.addItem(item)
        while self.list.count() > MAX_ENTRIES:
            self.list.takeItem(0)
        self.list.scrollToBottom()
        return item

    def clear(self) -> None:
        self.list.clear()

    def entries(self) -> list[tuple[str, int | None]]:
        """(text without the time stamp, node id) for every entry: what tests and status bars read."""
        out = []
        for i in range(self.list.count()):
            item = self.list.item(i)
            out.append((item.text().split("  ", 1)[-1], item.data(_NODE_ROLE)))
        return out

    def _clicked(self, item: QListWidgetItem) -> None:
        node_id = item.data(_NODE_ROLE)
        if node_id is not None:
            self.nodeActivated.emit(int(node_id))
