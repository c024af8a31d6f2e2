"""The run queue: the run going now and every run waiting behind it, with what each one changes.

A queued run keeps the document as it was when it was queued (`RunController`), so three presses of
Run with a different seed or prompt between them are three different runs. Each waiting row says what
it does differently from the run before it in the queue (the first from the running run, or from the
last run when nothing is going): "KSampler.seed 42 → 43, CLIPTextEncode.text changed". The phrases come
from `graph_engine.workflow_diff` on the workflows' JSON, so nothing here touches a model or torch.

The panel only asks; the controller does: Del or "Cancel" drops the selected run (`cancel_queued`),
drag and drop, Ctrl+Up/Down or the arrow buttons move it (`move_queued`), and "Pause" holds the queue
(`set_paused`): the running run finishes, the others wait until "Resume". The panel redraws from the
controller's `queueChanged`, `runningChanged` and `pausedChanged`, never from its own guesses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from graph_engine.serialization import WorkflowFormatError, graph_from_dict
from graph_engine.workflow_diff import workflow_changes
from ui.run_controller import RunController

NO_CHANGES = "same as the run before"
FIRST_RUN = "first run"
STEPPED = {"increment": "+1", "decrement": "−1", "randomize": "random"}  # how a seed control reads in a row


def describe_changes(
    before: dict[str, Any] | None, after: dict[str, Any], stepped: Sequence[tuple[int, str, str]] = ()
) -> str:
    """One line: what `after` changes relative to `before` (None: there is nothing to compare with).

    `stepped` seeds take their value when the run starts (the runs ahead move them on), so the value
    in `after` is not what will run: they are named with their control instead of compared.
    """
    if before is None:
        return FIRST_RUN
    try:
        old, new = graph_from_dict(before), graph_from_dict(after)
    except WorkflowFormatError:
        return "?"
    phrases = []
    for node_id, input_id, mode in stepped:
        for graph in (old, new):
            if node_id in graph.nodes:
                graph.nodes[node_id].values.pop(input_id, None)
        if node_id in new.nodes:
            phrases.append(f"{new.nodes[node_id].label}.{input_id} {STEPPED.get(mode, mode)}")
    changes = workflow_changes(old, new) + phrases
    return ", ".join(changes) if changes else NO_CHANGES


class _QueueList(QListWidget):
    """The waiting runs, one row each in queue order; Del drops, Ctrl+Up/Down move, drags reorder."""

    dropRequested = Signal(int)  # row
    moveRequested = Signal(int, int)  # row, new row

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setWordWrap(True)
        self.setAlternatingRowColors(True)
        # Qt moves the row itself; the panel turns that into a request and redraws from the controller.
        self.model().rowsMoved.connect(self._rows_moved)

    def _rows_moved(self, _parent: QModelIndex, start: int, _end: int, _dest: QModelIndex, row: int) -> None:
        """A row dragged to another place (Qt has moved it already): ask for the same move in the queue,
        once the drop is over (the panel then redraws the list, which it must not do inside the drop)."""
        new_row = row if row < start else row - 1
        QTimer.singleShot(0, lambda: self.moveRequested.emit(start, new_row))

    def keyPressEvent(self, event: QKeyEvent) -> None:
        row = self.currentRow()
        key, ctrl = event.key(), event.modifiers() & Qt.KeyboardModifier.ControlModifier
        if row >= 0 and key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.dropRequested.emit(row)
        elif row >= 0 and ctrl and key == Qt.Key.Key_Up:
            self.moveRequested.emit(row, row - 1)
        elif row >= 0 and ctrl and key == Qt.Key.Key_Down:
            self.moveRequested.emit(row, row + 1)
        else:
            super().keyPressEvent(event)
            return
        event.accept()


class QueuePanel(QWidget):
    """Shows one controller's queue and sends the user's requests to it (`attach` to follow a document)."""

    message = Signal(str, str)  # level, text: what a request did, for the log and status bar

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller: RunController | None = None
        self.state = QLabel(self)
        self.state.setObjectName("queue-state")
        self.current = QLabel(self)
        self.current.setObjectName("queue-current")
        for label in (self.state, self.current):  # the dock may be narrow: a long label is cut, not widened
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.list = _QueueList(self)
        self.up_button = QToolButton(self)
        self.up_button.setText("▲")
        self.down_button = QToolButton(self)
        self.down_button.setText("▼")
        self.cancel_button = QToolButton(self)
        self.cancel_button.setText("Cancel")
        self.pause_button = QToolButton(self)
        self.pause_button.setText("Pause")
        self.pause_button.setCheckable(True)
        for button, tip in (
            (self.up_button, "Run the selected run earlier (Ctrl+Up)"),
            (self.down_button, "Run the selected run later (Ctrl+Down)"),
            (self.cancel_button, "Drop the selected run from the queue (Del)"),
            (self.pause_button, "Hold the queue: the running run finishes, the others wait"),
        ):
            button.setToolTip(tip)
        self.list.setMinimumHeight(40)  # the bottom dock is short; the queue must not make it taller
        top = QHBoxLayout()  # one row above the list: what runs, how many wait, and the actions
        top.addWidget(self.current, 1)
        top.addWidget(self.state, 2)
        for button in (self.up_button, self.down_button, self.cancel_button, self.pause_button):
            top.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.list, 1)
        self.list.dropRequested.connect(self.cancel_row)
        self.list.moveRequested.connect(self.move_row)
        self.list.currentRowChanged.connect(lambda _row: self._update_buttons())
        self.up_button.clicked.connect(lambda: self.move_row(self.list.currentRow(), self.list.currentRow() - 1))
        self.down_button.clicked.connect(lambda: self.move_row(self.list.currentRow(), self.list.currentRow() + 1))
        self.cancel_button.clicked.connect(lambda: self.cancel_row(self.list.currentRow()))
        self.pause_button.clicked.connect(self._pause_clicked)
        self.refresh()

    # ---- following a controller -------------------------------------------------------------------

    def attach(self, controller: RunController | None) -> None:
        """Show this controller's queue (the window's open document changed)."""
        if self.controller is not None:
            for signal in (self.controller.queueChanged, self.controller.runningChanged, self.controller.pausedChanged):
                with contextlib.suppress(RuntimeError, TypeError):  # already gone with its document
                    signal.disconnect(self._changed)
        self.controller = controller
        if controller is not None:
            controller.queueChanged.connect(self._changed)
            controller.runningChanged.connect(self._changed)
            controller.pausedChanged.connect(self._changed)
        self.refresh()

    def _changed(self, *_args: object) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Redraw from the controller, keeping the selected row where it is."""
        controller = self.controller
        row = self.list.currentRow()
        self.list.blockSignals(True)
        self.list.clear()
        if controller is None:
            self.state.setText("No document")
            self.current.setText("")
        else:
            current = controller.current
            entries = controller.queued_entries()
            paused = controller.paused
            waiting = f"{len(entries)} waiting" if entries else "nothing waiting"
            going = "running" if current is not None else "idle"
            self.state.setText(f"{going} · {waiting}" + (" · queue paused" if paused else ""))
            self.current.setText(f"▶ {current.label}" if current is not None else "")
            before = current.workflow if current is not None else controller.last_workflow
            for index, entry in enumerate(entries):
                changes = describe_changes(before, entry.workflow, entry.stepped)
                item = QListWidgetItem(f"#{index + 1}  {entry.label}\n    {changes}")
                item.setToolTip(changes.replace(", ", "\n"))
                item.setData(Qt.ItemDataRole.UserRole, changes)
                self.list.addItem(item)
                before = entry.workflow
            self.pause_button.setChecked(paused)
            self.pause_button.setText("Resume" if paused else "Pause")
        self.list.blockSignals(False)
        if self.list.count():
            self.list.setCurrentRow(min(max(row, 0), self.list.count() - 1))
        self._update_buttons()

    def _update_buttons(self) -> None:
        row, count = self.list.currentRow(), self.list.count()
        self.up_button.setEnabled(row > 0)
        self.down_button.setEnabled(0 <= row < count - 1)
        self.cancel_button.setEnabled(row >= 0)
        self.pause_button.setEnabled(self.controller is not None)

    # ---- requests ---------------------------------------------------------------------------------

    def changes(self) -> list[str]:
        """Each waiting row's change line, in queue order (what the rows show under the label)."""
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def cancel_row(self, row: int) -> None:
        if self.controller is not None and row >= 0:
            self.message.emit("info", self.controller.cancel_queued(row))

    def move_row(self, row: int, new_row: int) -> None:
        if self.controller is None or row < 0 or not 0 <= new_row < self.list.count():
            self.refresh()  # a drag Qt already applied to the rows is undone by redrawing
            return
        self.message.emit("info", self.controller.move_queued(row, new_row))
        self.refresh()
        self.list.setCurrentRow(new_row)

    def _pause_clicked(self) -> None:
        if self.controller is None:
            return
        self.message.emit("info", self.controller.set_paused(not self.controller.paused))


def install_queue(window: Any) -> tuple[QueuePanel, QDockWidget]:
    """Dock a queue panel in `ui.main_window.MainWindow`, tabbed with the Log, with a View menu toggle,
    following the open document. Uses the window's `controller`, `documentChanged`, `menuBar()`,
    `log_dock`, `log` and `statusBar()`. Call it after the window has its first document."""
    panel = QueuePanel(window)
    dock = QDockWidget("Queue", window)
    dock.setObjectName("dock-queue")
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    log_dock = getattr(window, "log_dock", None)
    if log_dock is not None:
        window.tabifyDockWidget(log_dock, dock)
        log_dock.raise_()
    view_menu = next((a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == "View"), None)
    if view_menu is not None:
        view_menu.addAction(dock.toggleViewAction())

    def said(_level: str, text: str) -> None:
        window.statusBar().showMessage(text, 8000)

    panel.message.connect(said)

    def follow() -> None:
        panel.attach(window.controller)

    window.documentChanged.connect(follow)
    follow()
    return panel, dock


__all__ = ["FIRST_RUN", "NO_CHANGES", "QueuePanel", "describe_changes", "install_queue"]
