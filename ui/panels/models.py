"""The Models dock: the installed model files by kind, each with its family and size, ready to drag.

A tree of kinds (checkpoints, diffusion models, text encoders, VAE, LoRA) and their files, named as
workflows name them. What each file is ("FLUX.1", "CLIP-L", "16-channel VAE") comes from its header
through `nodes.model_catalog`, which reads no tensor and imports no torch. Listing the folders is a
directory walk and happens at once; probing the headers happens on a worker thread, one file after
another, and each row fills in as its answer arrives, so opening the panel never waits on a disk.
Answers are cached by (path, mtime, size), so Refresh (F5) re-reads only new or replaced files.

Dragging a file onto the canvas carries `MODEL_FILE_MIME` (its kind and name); dropped there, it
becomes the loader of its kind with the file chosen (`nodes.model_catalog.LOADERS`): Load Checkpoint,
Load Diffusion Model, Load CLIP (with the type the encoder needs), Load VAE or Load LoRA.
Double-clicking (or Enter) adds the same loader at the centre of the view. The panel never edits a
graph; `install_models` turns its requests into one undoable command on the open document.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QEvent, QMimeData, QObject, QPointF, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from nodes.folders import model_folders
from nodes.model_catalog import KIND_ORDER, KIND_TITLES, ModelFile, Probe, ProbeCache, list_files, loader_for

MODEL_FILE_MIME = "application/x-sdgraph-model-file"
FILE_ROLE = Qt.ItemDataRole.UserRole  # on a file row: (kind, name)
KIND_ROLE = Qt.ItemDataRole.UserRole + 1  # on a kind's row: the kind
PROBING = "…"


def format_size(size: int) -> str:
    """Decimal units, as download pages and file managers state model sizes ("23.8 GB")."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover - the loop returns at GB


def model_mime(kind: str, name: str) -> QMimeData:
    mime = QMimeData()
    mime.setData(MODEL_FILE_MIME, json.dumps({"kind": kind, "name": name}).encode())
    mime.setText(name)
    return mime


def dropped_model(mime: QMimeData) -> tuple[str, str] | None:
    """(kind, name) from a model-file drag, or None when it carries none (or garbage)."""
    if not mime.hasFormat(MODEL_FILE_MIME):
        return None
    try:
        data = json.loads(bytes(mime.data(MODEL_FILE_MIME).data()).decode())
        kind, name = str(data["kind"]), str(data["name"])
    except (ValueError, KeyError, TypeError):
        return None
    return (kind, name) if kind in KIND_ORDER and name else None


class _Tree(QTreeWidget):
    def mimeData(self, items: Sequence[QTreeWidgetItem]) -> QMimeData:
        files = [f for item in items if (f := item.data(0, FILE_ROLE))]
        return model_mime(*files[0]) if files else QMimeData()

    def mimeTypes(self) -> list[str]:
        return [MODEL_FILE_MIME]


class _Relay(QObject):
    """Carries a probe from the worker thread to the panel (a queued signal: the slot runs on the UI thread)."""

    probed = Signal(object, object)  # ModelFile.key, Probe


class ModelsPanel(QWidget):
    """The model folders as a tree; `loaderRequested(kind, name)` on double-click or Enter."""

    loaderRequested = Signal(str, str)
    probesFinished = Signal()

    def __init__(self, parent: QWidget | None = None, *, cache: ProbeCache | None = None) -> None:
        super().__init__(parent)
        self.cache = cache or ProbeCache()
        self.files: dict[str, list[ModelFile]] = {}
        self._rows: dict[tuple[str, int, int], QTreeWidgetItem] = {}
        self._pending: set[tuple[str, int, int]] = set()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdgraph-probe")
        self._relay = _Relay(self)
        # Always queued, also when a probe is done before its callback is attached (the callback then runs
        # here, inside refresh): rows fill in from the event loop, never halfway through a refresh.
        self._relay.probed.connect(self._probed, Qt.ConnectionType.QueuedConnection)
        self.summary = QLabel(self)
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # never widens the dock
        self.refresh_button = QPushButton("Refresh", self)
        self.refresh_button.setToolTip("Look for new, removed or replaced model files (F5)")
        self.tree = _Tree(self)
        self.tree.setColumnCount(3)
        self.tree.setHeaderLabels(["Name", "Family", "Size"])
        self.tree.setDragEnabled(True)
        self.tree.setDragDropMode(QTreeWidget.DragDropMode.DragOnly)
        self.tree.setRootIsDecorated(True)
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(False)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.refresh_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.tree, 1)
        self.refresh_button.clicked.connect(self.refresh)
        QShortcut(
            QKeySequence(Qt.Key.Key_F5), self, self.refresh, context=Qt.ShortcutContext.WidgetWithChildrenShortcut
        )
        self.tree.itemActivated.connect(self._activated)
        self.destroyed.connect(lambda *_: self._pool.shutdown(wait=False, cancel_futures=True))
        self.refresh()

    # ---- listing ----------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Files whose header is still being read."""
        return len(self._pending)

    def refresh(self) -> None:
        """Re-list the model folders; files already probed (same path, mtime and size) show at once."""
        try:
            self.files = list_files(model_folders())
        except Exception as exc:  # an unreadable extra root must not take the panel down
            self.files = {}
            self.summary.setText(f"cannot list the model folders: {exc}")
            return
        groups = [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())]
        collapsed = {
            g.data(0, KIND_ROLE) for g in groups if g is not None and not g.isExpanded()
        }  # kept across a refresh
        self.tree.clear()
        self._rows.clear()
        for kind in KIND_ORDER:
            files = self.files.get(kind, [])
            group = QTreeWidgetItem([f"{KIND_TITLES[kind]} ({len(files)})", "", ""])
            group.setData(0, KIND_ROLE, kind)
            group.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.tree.addTopLevelItem(group)
            for file in files:
                row = QTreeWidgetItem([file.name, PROBING, format_size(file.size)])
                row.setData(0, FILE_ROLE, (file.kind, file.name))
                row.setToolTip(0, str(file.path))
                row.setTextAlignment(2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                row.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled)
                group.addChild(row)
                self._rows[file.key] = row
                cached = self.cache.get(file)
                if cached is not None:
                    self._show(row, cached)
                elif file.key not in self._pending:
                    self._pending.add(file.key)
                    job: Future[Probe] = self._pool.submit(self.cache.probe, file)
                    job.add_done_callback(functools.partial(self._done, file.key))
            group.setExpanded(kind not in collapsed)
        self._update_summary()

    def _done(self, key: tuple[str, int, int], future: Future[Probe]) -> None:
        """On the worker thread: hand the answer to the UI thread."""
        if future.cancelled():
            return
        error = future.exception()
        found = future.result() if error is None else Probe("unreadable", str(error))
        with contextlib.suppress(RuntimeError):  # the panel went away while the file was read
            self._relay.probed.emit(key, found)

    def _probed(self, key: tuple[str, int, int], found: Probe) -> None:
        self._pending.discard(key)
        row = self._rows.get(key)
        if row is not None:
            self._show(row, found)
        self._update_summary()
        if not self._pending:
            self.probesFinished.emit()

    @staticmethod
    def _show(row: QTreeWidgetItem, found: Probe) -> None:
        row.setText(1, found.family)
        row.setToolTip(1, found.detail or found.family)

    def _update_summary(self) -> None:
        count = sum(len(files) for files in self.files.values())
        text = f"{count} model file" + ("" if count == 1 else "s")
        if self._pending:
            text += f" · reading {len(self._pending)}…"
        self.summary.setText(text)

    # ---- what the tree shows, for callers and tests ------------------------------------------------

    def kind_item(self, kind: str) -> QTreeWidgetItem:
        item = self.tree.topLevelItem(KIND_ORDER.index(kind))
        assert item is not None, "refresh() adds one row per kind"
        return item

    def file_items(self, kind: str) -> list[QTreeWidgetItem]:
        group = self.kind_item(kind)
        return [child for i in range(group.childCount()) if (child := group.child(i)) is not None]

    def rows(self, kind: str) -> list[tuple[str, str, str]]:
        """(name, family, size) of each file of `kind`, as shown."""
        return [(item.text(0), item.text(1), item.text(2)) for item in self.file_items(kind)]

    def item_for(self, kind: str, name: str) -> QTreeWidgetItem | None:
        return next((item for item in self.file_items(kind) if item.text(0) == name), None)

    def file(self, kind: str, name: str) -> ModelFile | None:
        return next((f for f in self.files.get(kind, []) if f.name == name), None)

    def _activated(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        found = item.data(0, FILE_ROLE)
        if found:
            self.loaderRequested.emit(*found)


class _CanvasDrops(QObject):
    """Takes model-file drags on the canvas viewport (installed after the window's own filter, so it sees
    them first) and leaves every other event to the window and the canvas."""

    def __init__(self, window: Any, panel: ModelsPanel) -> None:
        super().__init__(window)
        self.window, self.panel = window, panel

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind not in (QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop):
            return False
        found = dropped_model(event.mimeData())  # type: ignore[attr-defined]
        if found is None:
            return False
        if kind == QEvent.Type.Drop:
            pos = self.window.view.mapToScene(event.position().toPoint())  # type: ignore[attr-defined]
            add_loader(self.window, self.panel, *found, pos)
        event.acceptProposedAction()  # type: ignore[attr-defined]
        return True


def add_loader(window: Any, panel: ModelsPanel, kind: str, name: str, pos: QPointF | None = None) -> int | None:
    """Add the loader for a model file to the window's graph at `pos` (the view's centre by default),
    the file chosen, as one undo step; returns the new node's id (None when the type is not registered)."""
    from ui.commands import add_node_command

    file = panel.file(kind, name)
    if file is None:
        return None
    node_type, values = loader_for(file, panel.cache.get(file))
    if node_type not in window.registry:
        window.statusBar().showMessage(f"no {node_type} node in this session", 4000)
        return None
    where = pos if pos is not None else window.view_center()
    command = add_node_command(window.graph, window.registry, node_type, (where.x(), where.y()), values)
    window.undo_stack.push(command)
    node_id = int(command.edits[0].record["id"])  # type: ignore[attr-defined]
    window.view.select_nodes([node_id])
    window.view.setFocus()
    return node_id


def install_models(window: Any) -> tuple[ModelsPanel, QDockWidget]:
    """Dock a models panel in `ui.main_window.MainWindow`, tabbed with the node library, with a View menu
    toggle; model files dropped on the open document's canvas become loaders there. Uses the window's
    `graph`, `registry`, `undo_stack`, `view`, `view_center()`, `documentChanged`, `menuBar()` and
    `library_dock`. Call it after the window has its first document."""
    panel = ModelsPanel(window)
    dock = QDockWidget("Models", window)
    dock.setObjectName("dock-models")
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
    library_dock = getattr(window, "library_dock", None)
    if library_dock is not None:
        window.tabifyDockWidget(library_dock, dock)
        library_dock.raise_()
    view_menu = next((a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == "View"), None)
    if view_menu is not None:
        view_menu.addAction(dock.toggleViewAction())
    drops = _CanvasDrops(window, panel)
    panel.loaderRequested.connect(lambda kind, name: add_loader(window, panel, kind, name))

    def follow() -> None:
        window.view.viewport().installEventFilter(drops)

    window.documentChanged.connect(follow)
    follow()
    return panel, dock


__all__ = [
    "MODEL_FILE_MIME",
    "ModelsPanel",
    "add_loader",
    "dropped_model",
    "format_size",
    "install_models",
    "model_mime",
]
