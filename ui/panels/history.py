"""The run history as a gallery: every finished run's images, filterable, reopening the graph that made one.

The data lives in `app.history.HistoryStore` (SQLite, no Qt); this panel only shows it. A listing is
cheap (small rows, no thumbnails), so every filter change simply lists again. Thumbnails are the
expensive part: the model reads one from the store only when the view asks to paint that item, and
keeps the pixmaps it has made, so a history of thousands of runs opens as fast as one screenful.

The panel edits nothing itself beyond the history: double-clicking (or Enter on) an image emits
`openRequested(run_id)` and the main window decides how to open that graph; Delete asks first, then
forgets the run (its image files stay on disk); "Open file" hands the image to the desktop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QBuffer,
    QByteArray,
    QEvent,
    QIODevice,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSize,
    Qt,
    QUrl,
    Signal,
)
from PySide6.QtGui import QAction, QDesktopServices, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.history import HistoryError, HistoryImage, HistoryRun, HistoryStore, RecordedImage, RunRecord
from ui.run_controller import CompletedRun

THUMB = 128
ITEM_SIZE = QSize(THUMB + 8, THUMB + 24)  # a thumbnail and one line of caption
ICON_CACHE = 400  # thumbnails kept as pixmaps (64 KB each): a few screenfuls; the rest are re-read
RUN_ID_ROLE = Qt.ItemDataRole.UserRole
IMAGE_ID_ROLE = Qt.ItemDataRole.UserRole + 1
PATH_ROLE = Qt.ItemDataRole.UserRole + 2
DAY = 86400.0
# Date filter choices: label, and how far back from now (None: all; 0: since today's midnight).
DATE_RANGES: tuple[tuple[str, float | None], ...] = (
    ("All time", None),
    ("Today", 0.0),
    ("Last 7 days", 7 * DAY),
    ("Last 30 days", 30 * DAY),
)
ALL_MODELS = "All models"

Index = QModelIndex | QPersistentModelIndex


def thumbnail_png(image: QImage, size: int = THUMB) -> bytes:
    """A small PNG of `image` (longest side `size`, aspect kept) for the history's gallery."""
    if image.isNull():
        return b""
    small = image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    small.save(buffer, "PNG")
    buffer.close()
    return bytes(data.data())


def record_run(store: HistoryStore, run: CompletedRun) -> int:
    """Record a finished run; its thumbnails are made here, on the Qt side, so the store needs no Qt."""
    recorded = [
        RecordedImage(str(path), image.width(), image.height(), node_id, thumbnail_png(image) or None)
        for node_id, path, image in run.images
    ]
    return store.record(RunRecord(run.workflow, recorded, started=run.started, finished=run.finished))


def _when(started: float) -> str:
    local = time.localtime(started)
    if time.strftime("%Y%m%d", local) == time.strftime("%Y%m%d"):
        return time.strftime("%H:%M:%S", local)
    return time.strftime("%d %b %H:%M", local)


class HistoryModel(QAbstractListModel):
    """One item per recorded image (a run without images shows as one item without a picture)."""

    def __init__(self, store: HistoryStore | None, parent: Any = None) -> None:
        super().__init__(parent)
        self.store = store
        self._rows: list[tuple[HistoryRun, HistoryImage | None]] = []
        self._icons: dict[int, QIcon] = {}
        self.thumbnails_loaded = 0  # how many thumbnails were read from the store (laziness is tested)
        self._blank = QPixmap(THUMB, THUMB)
        self._blank.fill(Qt.GlobalColor.transparent)

    def set_runs(self, runs: list[HistoryRun]) -> None:
        self.beginResetModel()
        self._rows = [(run, image) for run in runs for image in (run.images or (None,))]
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self._rows)

    def row(self, index: Index) -> tuple[HistoryRun, HistoryImage | None]:
        return self._rows[index.row()]

    def rows(self) -> list[tuple[HistoryRun, HistoryImage | None]]:
        return list(self._rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        run, image = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return _when(run.started)
        if role == Qt.ItemDataRole.DecorationRole:
            return self._icon(image)
        if role == Qt.ItemDataRole.SizeHintRole:
            return ITEM_SIZE  # fixed: laying out the gallery never needs a thumbnail
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started))]
            if run.prompt:
                lines.append(run.prompt if len(run.prompt) < 300 else run.prompt[:297] + "…")
            if run.models:
                lines.append("model: " + ", ".join(run.models))
            if image is not None:
                lines.append(f"{image.width}×{image.height} · {image.path}")
            return "\n".join(lines)
        if role == RUN_ID_ROLE:
            return run.id
        if role == IMAGE_ID_ROLE:
            return image.id if image is not None else None
        if role == PATH_ROLE:
            return image.path if image is not None else None
        return None

    def _icon(self, image: HistoryImage | None) -> QIcon:
        if image is None or self.store is None:
            return QIcon(self._blank)
        icon = self._icons.pop(image.id, None)
        if icon is not None:
            self._icons[image.id] = icon  # most recently used last; the oldest go first when over the cap
        else:
            pixmap = QPixmap()
            try:
                data = self.store.thumbnail(image.id)
            except HistoryError:
                data = None  # painted blank; the listing that failed says why
            self.thumbnails_loaded += 1
            if not data or not pixmap.loadFromData(data, "PNG"):
                pixmap = self._blank
            elif pixmap.width() != THUMB or pixmap.height() != THUMB:
                # Centred on a square: every item has the same shape, so the grid and labels line up.
                square = QPixmap(self._blank)
                painter = QPainter(square)
                painter.drawPixmap((THUMB - pixmap.width()) // 2, (THUMB - pixmap.height()) // 2, pixmap)
                painter.end()
                pixmap = square
            icon = self._icons[image.id] = QIcon(pixmap)
            while len(self._icons) > ICON_CACHE:
                del self._icons[next(iter(self._icons))]
        return icon

    def forget(self, run_ids: set[int]) -> None:
        for run, image in self._rows:
            if run.id in run_ids and image is not None:
                self._icons.pop(image.id, None)


class HistoryPanel(QWidget):
    """The History dock: filters on top, the gallery, and Open graph / Open file / Delete below."""

    openRequested = Signal(int)  # run id: open the graph that made it
    message = Signal(str, str)  # level, text: for the window's log

    def __init__(self, store: HistoryStore | None, parent: QWidget | None = None, *, unavailable: str = "") -> None:
        super().__init__(parent)
        self.store = store
        # The desktop's "open this file"; replaceable so tests need not launch an image viewer.
        self.open_url: Callable[[QUrl], bool] = QDesktopServices.openUrl
        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("Filter by prompt")
        self.filter_edit.setClearButtonEnabled(True)
        self.model_combo = QComboBox(self)
        self.model_combo.addItem(ALL_MODELS)
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(4)
        self.date_combo = QComboBox(self)
        self.date_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.date_combo.setMinimumContentsLength(4)
        for label, _span in DATE_RANGES:
            self.date_combo.addItem(label)
        self.model = HistoryModel(store, self)
        self.gallery = QListView(self)
        self.gallery.setObjectName("history-gallery")
        self.gallery.setModel(self.model)
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(THUMB, THUMB))
        self.gallery.setGridSize(ITEM_SIZE + QSize(8, 8))
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setUniformItemSizes(True)  # no per-item size pass: thumbnails load only when painted
        self.gallery.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.gallery.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.gallery.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.open_graph_button = QPushButton("Open graph", self)
        self.open_file_button = QPushButton("Open file", self)
        self.delete_button = QPushButton("Delete", self)
        for button in (self.open_graph_button, self.open_file_button, self.delete_button):
            # The dock may be dragged narrow (it shares its space with Images and Timeline): the
            # buttons share what width there is instead of holding the whole dock at their text's width.
            button.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
            button.setMinimumWidth(48)
        self.status = QLabel(unavailable, self)
        self.status.setWordWrap(True)

        self.act_open_graph = QAction("Open graph", self.gallery)
        self.act_open_file = QAction("Open file", self.gallery)
        self.act_delete = QAction("Delete from history  (Del)", self.gallery)
        for action in (self.act_open_graph, self.act_open_file, self.act_delete):
            self.gallery.addAction(action)
        # Delete/Backspace are read from the gallery's own key presses (see eventFilter), so they act
        # only there: not while typing a filter, and never on the canvas's nodes.
        self.gallery.installEventFilter(self)

        filters = QHBoxLayout()
        filters.addWidget(self.model_combo, 3)
        filters.addWidget(self.date_combo, 2)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_graph_button)
        buttons.addWidget(self.open_file_button)
        buttons.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.filter_edit)
        layout.addLayout(filters)
        layout.addWidget(self.gallery, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.status)

        self.filter_edit.textChanged.connect(lambda _t: self.refresh())
        self.model_combo.currentIndexChanged.connect(lambda _i: self.refresh())
        self.date_combo.currentIndexChanged.connect(lambda _i: self.refresh())
        self.gallery.activated.connect(self._activated)
        self.gallery.selectionModel().selectionChanged.connect(lambda *_a: self._update_buttons())
        self.open_graph_button.clicked.connect(self.open_selected_graph)
        self.open_file_button.clicked.connect(self.open_selected_file)
        self.delete_button.clicked.connect(self.delete_selected)
        self.act_open_graph.triggered.connect(self.open_selected_graph)
        self.act_open_file.triggered.connect(self.open_selected_file)
        self.act_delete.triggered.connect(self.delete_selected)
        for widget in (self.filter_edit, self.model_combo, self.date_combo, self.gallery):
            widget.setEnabled(store is not None)
        self.refresh()

    def detach(self) -> None:
        """The store is closing (the window is): show nothing more from it."""
        self.store = self.model.store = None
        self.model.set_runs([])
        self._update_buttons()

    # ---- listing ------------------------------------------------------------------------------------

    def since(self) -> float | None:
        """The start of the chosen date range, in unix seconds (None: all time)."""
        span = DATE_RANGES[max(0, self.date_combo.currentIndex())][1]
        if span is None:
            return None
        if span == 0.0:
            now = time.localtime()
            return time.mktime((now.tm_year, now.tm_mon, now.tm_mday, 0, 0, 0, 0, 0, -1))
        return time.time() - span

    def selected_model(self) -> str:
        return "" if self.model_combo.currentIndex() <= 0 else self.model_combo.currentText()

    def refresh(self) -> None:
        """List again with the current filters (after a run was recorded, or a filter changed)."""
        if self.store is None:
            self.model.set_runs([])
            self._update_buttons()
            return
        try:
            self._refresh_models()
            runs = self.store.list(query=self.filter_edit.text(), model=self.selected_model(), since=self.since())
            total = self.store.count()
        except HistoryError as exc:
            self.status.setText(str(exc))
            self.message.emit("warning", str(exc))
            return
        # A new run arriving must not lose what the user has selected or where they have scrolled to.
        selection = self.gallery.selectionModel()
        keep = {(i.data(RUN_ID_ROLE), i.data(IMAGE_ID_ROLE)) for i in selection.selectedIndexes()}
        current = self.gallery.currentIndex()
        current_key = (current.data(RUN_ID_ROLE), current.data(IMAGE_ID_ROLE)) if current.isValid() else None
        scroll = self.gallery.verticalScrollBar().value()
        self.model.set_runs(runs)
        if keep or current_key:
            for row in range(self.model.rowCount()):
                index = self.model.index(row, 0)
                key = (index.data(RUN_ID_ROLE), index.data(IMAGE_ID_ROLE))
                if key == current_key:
                    selection.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.NoUpdate)
                if key in keep:
                    selection.select(index, QItemSelectionModel.SelectionFlag.Select)
        if scroll:
            self.gallery.doItemsLayout()  # the scroll range is only known once the items are laid out
            self.gallery.verticalScrollBar().setValue(scroll)
        shown = f"{len(runs)} of {total} runs" if len(runs) != total else f"{total} runs"
        self.status.setText(shown if total != 1 else "1 run")
        self._update_buttons()

    def _refresh_models(self) -> None:
        assert self.store is not None
        names = self.store.models()
        current = self.model_combo.currentText()
        present = [self.model_combo.itemText(i) for i in range(1, self.model_combo.count())]
        if names == present:
            return
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItem(ALL_MODELS)
        self.model_combo.addItems(names)
        self.model_combo.setCurrentIndex(max(0, self.model_combo.findText(current)))
        self.model_combo.blockSignals(False)

    def item_count(self) -> int:
        return self.model.rowCount()

    def image_paths(self) -> list[str | None]:
        return [self.model.index(i, 0).data(PATH_ROLE) for i in range(self.model.rowCount())]

    # ---- actions ------------------------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.gallery and event.type() == QEvent.Type.KeyPress:
            key = event.key()  # type: ignore[attr-defined]
            if key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
                self.delete_selected()
                return True
        return super().eventFilter(watched, event)

    def selected_run_ids(self) -> list[int]:
        rows = sorted(i.row() for i in self.gallery.selectionModel().selectedIndexes())
        return list(dict.fromkeys(self.model.row(self.model.index(r, 0))[0].id for r in rows))

    def _current(self) -> QModelIndex | None:
        index = self.gallery.currentIndex()
        if not index.isValid() or not self.gallery.selectionModel().isSelected(index):
            selected = self.gallery.selectionModel().selectedIndexes()
            return selected[0] if selected else None
        return index

    def _update_buttons(self) -> None:
        has = bool(self.gallery.selectionModel().selectedIndexes())
        for widget in (self.open_graph_button, self.open_file_button, self.delete_button):
            widget.setEnabled(has)
        for action in (self.act_open_graph, self.act_open_file, self.act_delete):
            action.setEnabled(has)

    def _activated(self, index: QModelIndex) -> None:
        """Double-click or Enter (the platform's "activate"): open the graph that made the image."""
        run_id = index.data(RUN_ID_ROLE)
        if run_id is not None:
            self.openRequested.emit(int(run_id))

    def open_selected_graph(self) -> None:
        index = self._current()
        if index is not None:
            self.openRequested.emit(int(index.data(RUN_ID_ROLE)))

    def open_selected_file(self) -> bool:
        """Hand the selected image to the desktop's viewer; says so when the file has gone since."""
        index = self._current()
        path = index.data(PATH_ROLE) if index is not None else None
        if not path:
            return False
        if not Path(path).is_file():
            self.status.setText(f"{Path(path).name} no longer exists (moved or deleted since the run)")
            self.message.emit("warning", f"{path} no longer exists")
            return False
        return bool(self.open_url(QUrl.fromLocalFile(path)))

    def ask_delete(self, runs: int, images: int) -> bool:
        what = "this run" if runs == 1 else f"these {runs} runs"
        pictures = "its image" if images == 1 else f"their {images} images" if runs > 1 else f"its {images} images"
        answer = QMessageBox.question(
            self,
            "Delete from history",
            f"Remove {what} from the history?\n\nThe graph recorded with {pictures} is forgotten; "
            "the image files stay where they are.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def delete_selected(self) -> list[int]:
        """Forget the selected images' runs (after asking); returns the run ids removed."""
        run_ids = self.selected_run_ids()
        if self.store is None or not run_ids:
            return []
        images = sum(1 for run, image in self.model.rows() if run.id in run_ids and image is not None)
        row = min(i.row() for i in self.gallery.selectionModel().selectedIndexes())
        if not self.ask_delete(len(run_ids), images):  # (a run may finish and refresh the list meanwhile)
            return []
        deleted: list[int] = []
        try:
            for run_id in run_ids:
                self.store.delete(run_id)
                deleted.append(run_id)
        except HistoryError as exc:
            self.message.emit("warning", str(exc))
        self.model.forget(set(deleted))
        self.refresh()
        if self.model.rowCount():  # keep the keyboard where it was: the next image is selected
            self.gallery.setCurrentIndex(self.model.index(min(row, self.model.rowCount() - 1), 0))
        return deleted


__all__ = ["HistoryModel", "HistoryPanel", "record_run", "thumbnail_png"]
