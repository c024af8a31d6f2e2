"""The main window: one open workflow on the canvas, with file handling, runs and the docks around it.

A window holds one *document* at a time: the `Graph`, the file it came from, its `QUndoStack`, the
`GraphView` showing it and the `RunController` (with its Executor and result cache) that runs it.
Opening or creating a workflow builds a whole new document and drops the old one, so no state (undo
history, cached results, run markers) can leak from one workflow into another. A file that fails to
load never gets that far: the error is shown and the current document is left exactly as it was.

"Dirty" is the undo stack's clean state (`QUndoStack.cleanChanged`), plus one flag for changes made
outside it (a restored autosave). Seed controls moving a seed on after a run are neither: a run is not
an edit, so it never asks to be saved, but the moved seed is in the graph and goes into the next Save.

The window never edits the graph directly: panels emit requests (add a node of this type, show that
node) and the window turns them into `ui.commands` pushed on the undo stack, like the canvas does.
Runs are started as asyncio tasks on the qasync loop; the window only keeps a reference to them.
Every finished run that wrote images is kept in the run history (`app.history`, shown by the History
dock); reopening one from there opens its graph as a new untitled document, like a template.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QEvent,
    QObject,
    QPoint,
    QPointF,
    QRectF,
    QSettings,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QImage,
    QKeySequence,
    QPainter,
    QUndoGroup,
    QUndoStack,
)
from PySide6.QtWidgets import (
    QDockWidget,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.documents import (
    PNG_WORKFLOW_KEY,
    from_json_document,
    open_document,
    png_carries_workflow,
    save_format_of_file,
    write_workflow,
)
from app.history import HistoryError, HistoryStore
from app.settings import Settings, home_dir
from app.workflow_formats import SAVE_FORMATS, SDGRAPH
from graph_engine import Graph, NodeRegistry, RunResult
from graph_engine.serialization import WorkflowFormatError, dumps
from nodes.diffusion.model_paths import sdgraph_home
from nodes.model_matching import MissingModel, find_missing_models
from nodes.shipped import workflows_dir
from ui import file_dialogs, node_titles, run_bar
from ui.autosave import Autosaver, AutosaveStore, Recovery
from ui.commands import set_values_command
from ui.log_bridge import LogBridge
from ui.missing_models import MissingModelsBar
from ui.panels import NODE_TYPE_MIME, ImagePanel, LogPanel, NodeLibraryPanel
from ui.panels.history import HistoryPanel, record_run
from ui.panels.models import install_models
from ui.panels.queue import install_queue
from ui.panels.timeline import install_timeline
from ui.run_bar import RunBar
from ui.run_controller import CompletedRun, RunController, default_seed_control
from ui.shortcuts import BY_ID

APP_NAME = "sdgraph"
WORKFLOWS_DIR = workflows_dir()
DEFAULT_WORKFLOW = "txt2img.json"
OPENABLE = (".json", ".png")
FILE_FILTER = "Workflows (*.json *.png);;JSON workflows (*.json);;PNG with embedded workflow (*.png)"
# Save As / Export: one filter per workflow format (the format follows the filter chosen).
FORMAT_FILTERS = {fmt: f"{label} (*.json)" for fmt, label in SAVE_FORMATS.items()}
PNG_FILTER = "Canvas picture with workflow (*.png)"
# Window geometry and dock layout, kept between launches (QSettings, an ini file in the home folder).
WINDOW_STATE_FILE = "window.ini"
WINDOW_STATE_VERSION = 1


def default_window_size(widget: QWidget) -> QSize:
    """1400×900, or less on a smaller screen: a window larger than its screen gets clamped when its
    geometry is restored, and the docks would come back squeezed."""
    screen = widget.screen()
    wanted = QSize(1400, 900)
    if screen is None:
        return wanted
    room = screen.availableGeometry().size()
    return wanted.boundedTo(QSize(room.width() * 95 // 100, room.height() * 95 // 100))


def _keys(action_id: str, *extra: str) -> list[QKeySequence]:
    shortcut = BY_ID.get(action_id)
    keys = list(shortcut.keys) if shortcut else []
    return [QKeySequence(k) for k in (*keys, *extra)]


@dataclass
class OpenDocument:
    """Everything that belongs to one open workflow, replaced as a whole on New/Open."""

    graph: Graph
    path: Path | None
    undo: QUndoStack
    view: Any  # ui.canvas.GraphView
    controller: RunController
    modified_outside_undo: bool = False
    # The format Save writes `path` in: the one the file came in (a ComfyUI file stays a ComfyUI file).
    format: str = SDGRAPH

    @property
    def name(self) -> str:
        return self.path.name if self.path else "Untitled"


class MainWindow(QMainWindow):
    """The editor window. Public entry points return whether they did what was asked."""

    documentChanged = Signal()  # a different workflow is now open
    dirtyChanged = Signal()

    def __init__(
        self,
        registry: NodeRegistry,
        settings: Settings | None = None,
        *,
        autosave: AutosaveStore | None = None,
        templates_dir: Path | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.registry = registry
        self.settings = settings if settings is not None else Settings.load()
        node_titles.set_style(self.settings.node_titles)
        self.templates_dir = templates_dir if templates_dir is not None else WORKFLOWS_DIR
        self.undo_group = QUndoGroup(self)
        self.doc: OpenDocument | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._run_count = 3
        self.prompt_on_close = True  # False: closing drops unsaved changes (probes, tests)
        self.autosaver = Autosaver(autosave, parent=self) if autosave is not None else None
        if self.autosaver is not None:
            self.autosaver.failed.connect(lambda text: self.log.add("warning", text))

        self.resize(default_window_size(self))
        self.setAcceptDrops(True)
        self._build_docks()
        self._build_actions()
        self._build_menus()
        self.status = QLabel("")
        self.statusBar().addWidget(self.status, 1)
        # The canvas sits in a container that stays the central widget for the window's life. Replacing
        # the central widget itself (one view per document) made QMainWindow re-lay the docks from the
        # new view's size hint, squeezing the canvas to a sliver on every New/Open.
        central = QWidget(self)
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        self.missing_models = MissingModelsBar(central)
        self.missing_models.replaceRequested.connect(self.replace_model)
        self.canvas_host = QStackedWidget(central)
        self.run_bar = RunBar(central)
        self.run_bar.runRequested.connect(self.run_requested)
        self.run_bar.batchRequested.connect(self.batch_to_folder)
        self.documentChanged.connect(lambda: self.run_bar.attach(self.controller))
        column.addWidget(self.run_bar)
        column.addWidget(self.missing_models)
        column.addWidget(self.canvas_host, 1)
        self.setCentralWidget(central)
        self._missing_timer = QTimer(self, singleShot=True, interval=300)
        self._missing_timer.timeout.connect(self.refresh_missing_models)
        self.set_document(Graph(), None)
        self.timeline, self.timeline_dock = install_timeline(self)  # follows documentChanged from here on
        self.queue, self.queue_dock = install_queue(self)  # likewise
        self.models, self.models_dock = install_models(self)  # and drops of model files on the canvas
        self.restore_window_state()

    # ---- construction ---------------------------------------------------------------------------

    def _build_docks(self) -> None:
        self.library = NodeLibraryPanel(self.registry, self)
        self.images = ImagePanel(self)
        self.log = LogPanel(self)
        self.log_bridge = LogBridge(self)  # the model code's warnings (logged on the worker) into the Log
        self.log_bridge.record.connect(self.log.add)
        # The run history (<home>/history.sqlite3). A damaged or newer file leaves it off, never the window.
        self.history_store: HistoryStore | None = None
        unavailable = ""
        try:
            self.history_store = HistoryStore()
        except HistoryError as exc:
            unavailable = f"History is off: {exc}"
            self.log.add("warning", unavailable)
        self.history = HistoryPanel(self.history_store, self, unavailable=unavailable)
        self.history.openRequested.connect(self.open_history_run)
        self.history.message.connect(self.log.add)
        self.library.addNodeRequested.connect(lambda t: self.add_node(t))
        self.log.nodeActivated.connect(self.show_node)
        area = Qt.DockWidgetArea
        self.library_dock = self._dock("Nodes", self.library, area.LeftDockWidgetArea)
        self.images_dock = self._dock("Images", self.images, area.RightDockWidgetArea)
        self.history_dock = self._dock("History", self.history, area.RightDockWidgetArea)
        self.tabifyDockWidget(self.images_dock, self.history_dock)
        self.images_dock.raise_()
        self.log_dock = self._dock("Log", self.log, area.BottomDockWidgetArea)
        self.apply_default_dock_sizes()

    def apply_default_dock_sizes(self) -> None:
        """The first-start dock sizes for the window's current width: at most 45% of the window for both
        side docks, so the canvas stays the widest part on small screens."""
        width = self.width()
        side = [min(230, width * 18 // 100), min(320, width * 27 // 100)]
        self.resizeDocks([self.library_dock, self.images_dock], side, Qt.Orientation.Horizontal)
        self.resizeDocks([self.log_dock], [140], Qt.Orientation.Vertical)

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(
        self, text: str, slot: Callable[[], object], keys: list[QKeySequence] | None = None, name: str = ""
    ) -> QAction:
        action = QAction(text, self)
        if keys:
            action.setShortcuts(keys)
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setObjectName(name or text)
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)  # window-wide shortcuts work even with menus hidden (and offscreen)
        return action

    def _build_actions(self) -> None:
        self.act_new = self._action("&New", self.new_document, [QKeySequence.StandardKey.New], "file.new")
        self.act_open = self._action("&Open…", self.open_file, _keys("file.open"), "file.open")
        self.act_save = self._action("&Save", self.save, _keys("file.save"), "file.save")
        self.act_save_as = self._action("Save &As…", self.save_as, [QKeySequence("Ctrl+Shift+S")], "file.save_as")
        self.act_export = self._action("&Export…", self.export, [QKeySequence("Ctrl+E")], "file.export")
        self.act_quit = self._action("&Quit", self.close, [QKeySequence("Ctrl+Q")], "file.quit")
        self.act_undo = self.undo_group.createUndoAction(self, "&Undo")
        self.act_undo.setShortcuts(_keys("edit.undo"))
        self.act_redo = self.undo_group.createRedoAction(self, "&Redo")
        self.act_redo.setShortcuts(_keys("edit.redo"))
        for action in (self.act_undo, self.act_redo):
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            self.addAction(action)
        self.act_run = self._action("&Run", self.run, _keys("run.queue", "Ctrl+Enter"), "run.queue")
        self.act_run_many = self._action("Run ×&N…", self.ask_run_many, [QKeySequence("Ctrl+Shift+Return")], "run.many")
        self.act_batch = self._action(
            "&Batch to Folder…",
            lambda: self.batch_to_folder(self.run_bar.count.value()),
            _keys("run.batch"),
            "run.batch",
        )
        # Esc (the current run) and Shift+Esc (everything) also cancel, but from the canvas's key events
        # (see eventFilter), not as shortcuts: a window-wide Esc shortcut would take Esc away from the
        # node search and the inline editors.
        self.act_cancel = self._action("&Cancel Run  (Esc)", self.cancel_run, _keys("run.cancel"), "run.cancel")
        self.act_cancel.setEnabled(False)
        self.act_cancel_next = self._action("Cancel &Next Queued Run", self.cancel_queued, None, "run.cancel_next")
        self.act_cancel_next.setEnabled(False)
        self.act_cancel_all = self._action(
            "Cancel &All Runs  (Shift+Esc)", self.cancel_all_runs, None, "run.cancel_all"
        )
        self.act_cancel_all.setEnabled(False)
        self.act_fit = self._action("&Fit Graph", lambda: self.view.fit_all(), None, "view.fit")
        self.act_minimap = self._action("&Minimap", self._minimap_toggled, None, "view.minimap")
        self.act_minimap.setCheckable(True)
        self.act_minimap.setChecked(self.window_state_store().value("minimap", True, type=bool))
        self.act_preferences = self._action(
            "&Preferences…", self.show_preferences, _keys("app.preferences"), "app.preferences"
        )
        self.act_cheat_sheet = self._action(
            "&Keyboard Shortcuts", self.show_cheat_sheet, _keys("help.shortcuts"), "help.shortcuts"
        )

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self.act_new)
        file_menu.addAction(self.act_open)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self.templates_menu = file_menu.addMenu("&Templates")
        self.templates_menu.aboutToShow.connect(self._fill_templates_menu)
        file_menu.addSeparator()
        file_menu.addAction(self.act_save)
        file_menu.addAction(self.act_save_as)
        file_menu.addAction(self.act_export)
        file_menu.addSeparator()
        file_menu.addAction(self.act_preferences)
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)
        self.edit_menu = bar.addMenu("&Edit")
        self._canvas_menu_actions: list[QAction] = []
        self._fill_edit_menu()
        run_menu = bar.addMenu("&Run")
        run_menu.addAction(self.act_run)
        run_menu.addAction(self.act_run_many)
        run_menu.addAction(self.act_batch)
        run_menu.addAction(self.act_cancel)
        run_menu.addAction(self.act_cancel_next)
        self.queue_menu = run_menu.addMenu("Cancel &Queued Run")
        self.queue_menu.aboutToShow.connect(self._fill_queue_menu)
        run_menu.addAction(self.act_cancel_all)
        view_menu = bar.addMenu("&View")
        view_menu.addAction(self.act_fit)
        view_menu.addAction(self.act_minimap)
        view_menu.addSeparator()
        for dock in (self.library_dock, self.images_dock, self.history_dock, self.log_dock):
            view_menu.addAction(dock.toggleViewAction())
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.act_cheat_sheet)
        self._fill_recent_menu()
        self._fill_templates_menu()

    def _minimap_toggled(self) -> None:
        """View ▸ Minimap: show or hide the canvas overview, and remember the choice for the next start."""
        on = self.act_minimap.isChecked()
        if self.doc is not None:
            self.doc.view.minimap.set_wanted(on)
        store = self.window_state_store()
        store.setValue("minimap", on)
        store.sync()

    def show_cheat_sheet(self) -> None:
        from ui.cheat_sheet import CheatSheet

        CheatSheet(self).exec()

    def show_preferences(self) -> None:
        """Edit the settings; on OK save them and apply them to the open document's runs."""
        from ui.preferences import PreferencesDialog

        dialog = PreferencesDialog(self.settings, self)
        if dialog.exec() != PreferencesDialog.DialogCode.Accepted:
            return
        new = dialog.result_settings()
        for name in new.__dataclass_fields__:
            setattr(self.settings, name, getattr(new, name))  # the same object the run controllers hold
        self.settings.save()
        self.settings.apply_model_folders()
        self.apply_theme(self.settings.theme)
        if self.doc is not None:
            self.doc.controller.apply_settings(self.settings)
        self.statusBar().showMessage("Preferences saved", 4000)

    def apply_theme(self, name: str) -> None:
        """Switch the canvas and window colours now (node pictures are cached, so each is redrawn)."""
        from PySide6.QtWidgets import QApplication

        from ui import theme

        QApplication.setPalette(theme.window_palette(theme.apply(name)))
        if self.doc is not None:
            for item in self.doc.view.scene().items():
                item.update()
            self.doc.view.resetCachedContent()  # the grid background is cached too
            self.doc.view.viewport().update()

    def _fill_edit_menu(self) -> None:
        """Undo/redo, then the canvas's own actions (they change with each document's view).

        Actions are removed one by one, never with `QMenu.clear()`: in PySide6 adding an action to a
        menu hands it to the menu, and `clear()` would then delete the window's undo action too.
        """
        if not self.edit_menu.actions():
            self.edit_menu.addAction(self.act_undo)
            self.edit_menu.addAction(self.act_redo)
            self.edit_menu.addSeparator()
        for action in self._canvas_menu_actions:
            self.edit_menu.removeAction(action)
        view = self.doc.view if self.doc is not None else None
        self._canvas_menu_actions = [a for a in view.actions() if a.text()] if view is not None else []
        for action in self._canvas_menu_actions:
            self.edit_menu.addAction(action)

    def _fill_queue_menu(self) -> None:
        """One entry per waiting run, so any one of them can be dropped."""
        self.queue_menu.clear()
        labels = self.controller.queued_runs() if self.doc is not None else []
        for index, label in enumerate(labels):
            action = self.queue_menu.addAction(f"#{index + 1}: {label}")
            action.triggered.connect(lambda _c=False, i=index: self.cancel_queued(i))
        if not labels:
            self.queue_menu.addAction("(none queued)").setEnabled(False)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for entry in self.settings.recent_files:
            action = self.recent_menu.addAction(entry)
            action.triggered.connect(lambda _c=False, p=entry: self.open_file(p))
        if not self.settings.recent_files:
            self.recent_menu.addAction("(none)").setEnabled(False)

    def template_paths(self) -> list[Path]:
        return sorted(self.templates_dir.glob("*.json")) if self.templates_dir.is_dir() else []

    def _fill_templates_menu(self) -> None:
        self.templates_menu.clear()
        for path in self.template_paths():
            action = self.templates_menu.addAction(path.stem.replace("_", " "))
            action.triggered.connect(lambda _c=False, p=path: self.open_template(p))
        if not self.template_paths():
            self.templates_menu.addAction("(none)").setEnabled(False)

    # ---- the current document -------------------------------------------------------------------

    @property
    def graph(self) -> Graph:
        assert self.doc is not None
        return self.doc.graph

    @property
    def view(self) -> Any:
        assert self.doc is not None
        return self.doc.view

    @property
    def controller(self) -> RunController:
        assert self.doc is not None
        return self.doc.controller

    @property
    def undo_stack(self) -> QUndoStack:
        assert self.doc is not None
        return self.doc.undo

    @property
    def path(self) -> Path | None:
        return self.doc.path if self.doc is not None else None

    def is_dirty(self) -> bool:
        return self.doc is not None and (not self.doc.undo.isClean() or self.doc.modified_outside_undo)

    def set_document(self, graph: Graph, path: Path | None, *, dirty: bool = False, fmt: str = SDGRAPH) -> OpenDocument:
        """Show `graph` as the open document, replacing the previous one whole (no prompt here)."""
        from ui.canvas import GraphView  # the canvas is the heaviest UI import; keep it out of module import

        old = self.doc
        undo = QUndoStack(self)
        self.undo_group.addStack(undo)
        view = GraphView(graph, self.registry, undo, self)
        controller = RunController(
            graph,
            self.registry,
            view,
            settings=self.settings,
            seed_control=default_seed_control(),
            before_run=self._before_run,
            parent=self,
        )
        doc = OpenDocument(graph, path, undo, view, controller, modified_outside_undo=dirty, format=fmt)
        self.doc = doc
        self.undo_group.setActiveStack(undo)
        self.canvas_host.addWidget(view)
        self.canvas_host.setCurrentWidget(view)
        if old is not None:
            self.canvas_host.removeWidget(old.view)
            old.view.deleteLater()
        view.installEventFilter(self)
        view.viewport().installEventFilter(self)
        view.minimap.set_wanted(self.act_minimap.isChecked())
        view.setFocus()
        undo.cleanChanged.connect(self._dirty_changed)
        controller.runningChanged.connect(self._running_changed)
        controller.started.connect(self._run_started)
        controller.finished.connect(self._run_finished)
        controller.queueChanged.connect(lambda _n: self._queue_changed())
        controller.pausedChanged.connect(self._update_status)
        controller.runCompleted.connect(self._record_run)
        controller.previewChanged.connect(self.images.show_preview)
        controller.imagesReady.connect(self.images.add_images)
        controller.logMessage.connect(self.log.add)
        controller.seedsChanged.connect(self._seeds_changed)
        if hasattr(view, "nodeSelectionChanged"):
            view.nodeSelectionChanged.connect(lambda _ids: self._update_status())
        if hasattr(view, "sweepBatchRequested"):
            view.sweepBatchRequested.connect(self.batch_sweep_cells)

        if old is not None:
            # A run of the old document may still be winding down: its controller stays alive (owned
            # by that run's task, not the window) but says nothing more to this window's panels.
            old.controller.shutdown()
            old.controller.blockSignals(True)
            old.controller.setParent(None)
            self.undo_group.removeStack(old.undo)
            old.undo.deleteLater()
        if self.autosaver is not None:
            self.autosaver.track(graph, path, self.is_dirty)
        graph.changed.connect(self._graph_changed)
        self.refresh_missing_models()
        self.images.clear_images()
        self.images.clear_preview()
        self._fill_edit_menu()
        self._running_changed()
        self._update_title()
        QTimer.singleShot(0, view.fit_all)  # once the view has its real size
        self.documentChanged.emit()
        return doc

    # ---- model files the workflow names but the user does not have -------------------------------

    def _graph_changed(self, event: Any) -> None:
        if event.kind in ("node_added", "node_removed", "reset"):
            self._update_status()  # the node count
        if event.kind in ("value_changed", "node_added", "node_removed", "reset", "link_added", "link_removed"):
            self._missing_timer.start()

    def refresh_missing_models(self) -> list[MissingModel]:
        """Offer installed stand-ins for the model files the open graph names but the user lacks."""
        if self.doc is None:
            return []
        missing = find_missing_models(self.graph, self.registry)
        labels = {nid: f"{self.graph.nodes[nid].label} (#{nid})" for m in missing for nid, _ in m.uses}
        self.missing_models.show_missing(missing, labels, str(sdgraph_home() / "models"))
        return missing

    def replace_model(self, uses: list[tuple[int, str]], name: str) -> None:
        """Use the installed file `name` in these (node, input) places, as one undo step."""
        uses = [(nid, key) for nid, key in uses if nid in self.graph.nodes]
        if not uses:
            return
        where = "1 node" if len(uses) == 1 else f"{len(uses)} nodes"
        self.undo_stack.push(set_values_command(self.graph, uses, name, f"Use {name} in {where}"))
        self.log.add("info", f"using {name} in {where}")
        self.refresh_missing_models()

    def pick_sole_installed_models(self) -> list[str]:
        """For shipped workflows: where exactly one installed file of the right family exists, use it.

        Not an undo step and not an unsaved change: the template simply opens ready to run.
        """
        picked = []
        for missing in find_missing_models(self.graph, self.registry):
            choice = missing.sole_match
            if choice is None:
                continue
            for nid, key in missing.uses:
                self.graph.set_value(nid, key, choice)
            picked.append(f"{missing.name} → {choice}")
        if picked:
            self.log.add("info", "using the installed model: " + "; ".join(picked))
            self.refresh_missing_models()
        return picked

    def _dirty_changed(self, *_args: object) -> None:
        self._update_title()
        self.dirtyChanged.emit()

    def _seeds_changed(self) -> None:
        """A run stepped a randomize/increment seed: the graph holds the new value (a later Save writes
        it), but running is not editing, so the document stays as saved (no asterisk, no prompt)."""
        self._update_status()

    def _update_title(self) -> None:
        name = self.doc.name if self.doc is not None else "Untitled"
        kind = ""
        if self.doc is not None and self.doc.path is not None and self.doc.format != SDGRAPH:
            kind = f" [{SAVE_FORMATS[self.doc.format]}]"  # Save keeps the file in that format
        self.setWindowTitle(f"{name}{'*' if self.is_dirty() else ''}{kind} — {APP_NAME}")

    # ---- messages (one place, so tests and the window agree on what the user is told) ---------------

    def show_error(self, title: str, text: str) -> None:
        self.log.add("error", text)
        QMessageBox.warning(self, title, text)

    def ask_unsaved(self) -> QMessageBox.StandardButton:
        buttons = (
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel
        )
        return QMessageBox.question(
            self,
            "Unsaved changes",
            f"{self.doc.name if self.doc else 'The workflow'} has unsaved changes. Save them first?",
            buttons,
            QMessageBox.StandardButton.Save,
        )

    def maybe_save(self) -> bool:
        """True when it is fine to replace or close the document (saved, discarded, or clean)."""
        if not self.is_dirty():
            return True
        answer = self.ask_unsaved()
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    # ---- file operations ------------------------------------------------------------------------

    def load_default(self) -> bool:
        """The start-up graph: `workflows/txt2img.json` when it exists and loads, else an empty graph."""
        default = self.templates_dir / DEFAULT_WORKFLOW
        if default.is_file():
            try:
                document = open_document(default)
            except WorkflowFormatError as exc:
                self.log.add("warning", f"the default workflow did not load: {exc}")
            else:
                self.set_document(document.graph, None)
                self.pick_sole_installed_models()
                return True
        self.set_document(Graph(), None)
        return False

    def new_document(self) -> bool:
        if not self.maybe_save():
            return False
        self.set_document(Graph(), None)
        return True

    def open_file(self, path: str | Path | None = None) -> bool:
        """Open… (asks for a file when `path` is None), after offering to save unsaved changes."""
        if path is None:
            chosen = file_dialogs.ask_open_file(self, "Open workflow", FILE_FILTER)
            if chosen is None:
                return False
            path = chosen
        if not self.maybe_save():
            return False
        return self.load_document(Path(path))

    def load_document(self, path: Path) -> bool:
        """Read `path` and show it; on any failure say why and leave the current document alone."""
        try:
            document = open_document(path)
        except WorkflowFormatError as exc:
            self.show_error("Cannot open workflow", f"{path.name} could not be opened.\n\n{exc}")
            return False
        # A PNG is a picture, not the workflow's file: Save must not write JSON over it. A JSON file is
        # saved back in the format it came in, so a ComfyUI workflow stays loadable by ComfyUI. A shipped
        # template (`sdgraph gui sdxl`, or a file opened from their folder) opens untitled, as from
        # File > Templates: Save must not write over it.
        is_template = path.resolve().parent == self.templates_dir.resolve()
        target = path if path.suffix.lower() == ".json" and not is_template else None
        self.set_document(document.graph, target, fmt=document.save_format)
        for notice in document.notices:
            self.log.add("warning", notice)
        self.log.add("info", f"opened {path}")
        if is_template:  # ready to run with the installed models, as from the menu
            self.pick_sole_installed_models()
        else:  # a template's folder is not where Save As should start
            self._remember(path)
        return True

    def open_template(self, path: Path) -> bool:
        """A template opens as a new, untitled document, so Save never writes over the template."""
        if not self.maybe_save():
            return False
        try:
            document = open_document(path)
        except WorkflowFormatError as exc:
            self.show_error("Cannot open template", str(exc))
            return False
        self.set_document(document.graph, None, fmt=document.save_format)
        self.pick_sole_installed_models()
        return True

    def dialog_folder(self) -> Path:
        """Where Save/Export dialogs start: the open file's folder, else the last one used, else Documents."""
        return file_dialogs.start_folder(self.path.parent if self.path is not None else None)

    def save(self) -> bool:
        """Save to the open file, in the format it came in; Save As when it has none."""
        if self.doc is None or self.doc.path is None:
            return self.save_as()
        return self._write(self.doc.path, self.doc.format)

    def save_as(self, path: str | Path | None = None, fmt: str | None = None) -> bool:
        """Save under a new name, in `fmt` (by default the document's format; the dialog's filter picks it)."""
        assert self.doc is not None
        fmt = fmt or self.doc.format
        if path is None:
            name = self.path.name if self.path else "untitled.json"
            filters = list(FORMAT_FILTERS.values())
            answer = file_dialogs.ask_save_file(
                self, "Save workflow", self.dialog_folder() / name, ";;".join(filters), FORMAT_FILTERS[fmt]
            )
            if answer is None:
                return False
            path, chosen_filter = answer
            fmt = next((f for f, flt in FORMAT_FILTERS.items() if flt == chosen_filter), fmt)
        path = Path(path)
        if path.suffix.lower() != ".json":
            path = path.with_suffix(".json")
        if not self._write(path, fmt, offer_save_as=False):
            return False
        self.doc.path = path
        self.doc.format = fmt
        if self.autosaver is not None:
            self.autosaver.rename(path)
        self._update_title()
        return True

    def _write(self, path: Path, fmt: str, *, offer_save_as: bool = True) -> bool:
        """Write the document; on failure the file on disk is untouched and the user is told why."""
        try:
            write_workflow(self.graph, path, fmt)
        except OSError as exc:
            self.show_error("Cannot save", f"{path} could not be written: {exc.strerror or exc}")
            return False
        except ValueError as exc:  # the graph holds something this format cannot express
            text = f"{path.name} was not saved: it is a {SAVE_FORMATS[fmt]}, and {exc}."
            if not offer_save_as:
                self.show_error("Cannot save in this format", text)
                return False
            if not self.ask_save_as_instead(text):
                return False
            return self.save_as()
        assert self.doc is not None
        self.doc.modified_outside_undo = False
        self.doc.undo.setClean()
        if self.autosaver is not None:
            self.autosaver.document_saved()
        self._remember(path)
        self._dirty_changed()
        self.statusBar().showMessage(f"saved {path} ({SAVE_FORMATS[fmt]})", 4000)
        return True

    def ask_save_as_instead(self, text: str) -> bool:
        answer = QMessageBox.question(
            self,
            "Cannot save in this format",
            f"{text}\n\nThe file was left as it was. Save under another name or in another format?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Save,
        )
        return answer == QMessageBox.StandardButton.Save

    def export(self, path: str | Path | None = None, fmt: str | None = None) -> bool:
        """Export a copy; the open file and its format stay as they are.

        A .png is the canvas with the workflow embedded (dropping it back opens the graph); a .json is
        the workflow in `fmt` (sdgraph, ComfyUI workflow or ComfyUI API prompt; the dialog's filter).
        """
        if path is None:
            start = self.dialog_folder() / (self.path.with_suffix(".png").name if self.path else "workflow.png")
            filters = [PNG_FILTER, *FORMAT_FILTERS.values()]
            answer = file_dialogs.ask_save_file(self, "Export", start, ";;".join(filters))
            if answer is None:
                return False
            path, chosen_filter = answer
            fmt = next((f for f, flt in FORMAT_FILTERS.items() if flt == chosen_filter), fmt)
        path = Path(path)
        try:
            if path.suffix.lower() == ".png":
                image = self.render_canvas()
                image.setText(PNG_WORKFLOW_KEY, dumps(self.graph))
                if not image.save(str(path), "PNG"):
                    raise OSError(f"Qt could not write {path}")
            else:
                write_workflow(self.graph, path, fmt or SDGRAPH)
        except (OSError, ValueError) as exc:
            self.show_error("Cannot export", f"{path} could not be written: {exc}")
            return False
        self.statusBar().showMessage(f"exported {path}", 4000)
        return True

    def render_canvas(self, margin: float = 40.0) -> QImage:
        """The whole graph drawn into an image at 1:1 (capped at 4096 px on the long side)."""
        scene = self.view.scene()
        rect = scene.itemsBoundingRect().adjusted(-margin, -margin, margin, margin)
        if rect.isEmpty():
            rect = QRectF(0, 0, 640, 480)
        scale = min(1.0, 4096.0 / max(rect.width(), rect.height()))
        image = QImage(int(rect.width() * scale), int(rect.height() * scale), QImage.Format.Format_RGB32)
        image.fill(self.view.backgroundBrush().color() if self.view.backgroundBrush().style() else Qt.GlobalColor.black)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        scene.render(painter, QRectF(image.rect()), rect)
        painter.end()
        return image

    def _remember(self, path: Path) -> None:
        self.settings.add_recent(path)
        file_dialogs.remember_folder(path)  # a drop or a recent file counts as the last folder used
        try:
            self.settings.save()
        except OSError as exc:
            self.log.add("warning", f"settings could not be saved: {exc}")

    # ---- crash recovery -------------------------------------------------------------------------

    def offer_recovery(self) -> Recovery | None:
        """After a crash: offer the newest autosave that holds more than its file. Returns what was restored."""
        if self.autosaver is None:
            return None
        store = self.autosaver.store
        found = store.recoverable()
        restored: Recovery | None = None
        if found:
            newest = found[0]
            if self.ask_restore(newest):
                restored = newest if self.restore(newest) else None
        store.forget_crashed_sessions()
        return restored

    def ask_restore(self, recovery: Recovery) -> bool:
        import time

        when = time.strftime("%H:%M on %d %b", time.localtime(recovery.saved_at))
        answer = QMessageBox.question(
            self,
            "Restore unsaved work?",
            f"{APP_NAME} did not exit cleanly last time. An autosave of {recovery.display_name} "
            f"from {when} has changes that were never saved.\n\nRestore it?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.Yes,
        )
        return answer == QMessageBox.StandardButton.Yes

    def restore(self, recovery: Recovery) -> bool:
        try:
            graph = recovery.load()
        except WorkflowFormatError as exc:
            self.show_error("Cannot restore", f"the autosave could not be read: {exc}")
            return False
        # Restored work is unsaved work: dirty, and saved back to the original file, in its format, on Save.
        fmt = save_format_of_file(recovery.original)
        self.set_document(graph, recovery.original, dirty=True, fmt=fmt)
        self.log.add("info", f"restored unsaved changes to {recovery.display_name}")
        return True

    # ---- editing requests from panels ----------------------------------------------------------

    def view_center(self) -> QPointF:
        return self.view.mapToScene(self.view.viewport().rect().center())

    def add_node(self, node_type: str, pos: QPointF | None = None) -> int | None:
        """Add a node of `node_type` (at the view's centre by default) as one undo step."""
        if node_type not in self.registry:
            return None
        return int(self.view.add_node_at(node_type, pos if pos is not None else self.view_center()))

    def show_node(self, node_id: int) -> None:
        """Select one node and bring it into view (from a log entry)."""
        if node_id not in self.graph.nodes:
            self.statusBar().showMessage(f"node {node_id} no longer exists", 4000)
            return
        self.view.center_on_node(node_id)
        self.view.setFocus()

    def selected_node_ids(self) -> list[int]:
        return list(self.view.selected_node_ids())

    # ---- runs -----------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.add("error", f"run failed: {task.exception()}")

    def run(self) -> asyncio.Future[RunResult | None]:
        """Run (Ctrl+Enter). While a run is going, this queues another one behind it."""
        return self._spawn(self.controller.run())

    def run_many(self, count: int) -> asyncio.Future[list[RunResult]]:
        return self._spawn(self.controller.run_many(count))

    def run_requested(self, count: int) -> asyncio.Future[Any] | None:
        """The Run bar's button: one run, or Run ×N with the bar's count."""
        return self.run() if count <= 1 else self.queue_runs(count)

    def queue_runs(self, count: int) -> asyncio.Future[list[RunResult]] | None:
        """Run ×N as the user asked for it: with every seed fixed, first ask whether to vary it."""
        from ui.canvas.seed import all_seeds_fixed

        vary = False
        if count > 1 and all_seeds_fixed(self.graph, self.registry):
            answer = run_bar.ask_fixed_seed(self, count)
            if answer == run_bar.CANCEL:
                return None
            vary = answer == run_bar.VARY_SEED
        return self._spawn(self.controller.run_many(count, vary_seeds=vary))

    def ask_run_many(self) -> asyncio.Future[list[RunResult]] | None:
        count, ok = QInputDialog.getInt(self, "Run ×N", "Number of runs:", self._run_count, 1, 1000)
        if not ok:
            return None
        self._run_count = count
        return self.queue_runs(count)

    def batch_to_folder(self, count: int) -> asyncio.Future[Any] | None:
        """Run ▸ Batch to Folder… (`ui.batch_run`): ask where and how many, then run them as batch jobs."""
        from ui.batch_run import ask_batch, run_batch_to_folder

        asked = ask_batch(self, count, self.graph, self.registry)
        if asked is None:
            return None
        request, vary = asked
        self._run_count = request.count
        return self._spawn(run_batch_to_folder(self.controller, request, vary, self.log.add))

    def batch_sweep_cells(self, node_id: int) -> asyncio.Future[Any] | None:
        """An XY Sweep node's Run Cells as Batch…: its cells as batch jobs into a folder, one file each."""
        from ui.batch_run import ask_batch, run_batch_to_folder

        asked = ask_batch(self, None, self.graph, self.registry, title="Run Cells as Batch")
        if asked is None:
            return None
        coro = run_batch_to_folder(self.controller, asked[0], False, self.log.add, sweep_node=node_id)
        return self._spawn(coro)

    def cancel_run(self) -> str:
        """Esc: stop the current run only; queued runs go on. Returns (and shows) what happened."""
        return self._report(self.doc.controller.cancel_current() if self.doc is not None else "")

    def cancel_queued(self, index: int = 0) -> str:
        """Drop one waiting run (the next one by default); the current run goes on."""
        return self._report(self.doc.controller.cancel_queued(index) if self.doc is not None else "")

    def cancel_all_runs(self) -> str:
        """Shift+Esc: stop the current run and drop every queued one."""
        return self._report(self.doc.controller.cancel_all() if self.doc is not None else "")

    def _report(self, text: str) -> str:
        if text:
            self.statusBar().showMessage(text, 8000)
        return text

    def _before_run(self) -> None:
        if self.autosaver is not None:
            self.autosaver.save_if_dirty()

    def _running_changed(self) -> None:
        running = self.doc is not None and self.doc.controller.running
        self.act_cancel.setEnabled(running)
        self._queue_changed()

    def _queue_changed(self) -> None:
        queued = self.doc.controller.queued if self.doc is not None else 0
        self.act_cancel_next.setEnabled(queued > 0)
        self.act_cancel_all.setEnabled(queued > 0 or self.act_cancel.isEnabled())
        self._update_status()

    def _run_started(self) -> None:
        self.images.clear_images()
        self.images.clear_preview()
        self.statusBar().clearMessage()

    def _run_finished(self, result: RunResult | None) -> None:
        if result is not None and result.status == "cancelled":
            self.images.clear_preview()  # the half-denoised preview is not a result
        if result is None:
            self.statusBar().showMessage("the graph has problems; see the log", 6000)
            self.log_dock.show()
        elif result.status == "failed":
            self.log_dock.show()
        self._update_status()

    def _record_run(self, run: CompletedRun) -> None:
        """Keep a finished run, its images and its graph in the history; a failure is only logged."""
        if self.history_store is None or not run.images:
            return  # a run that wrote no new image (all cached, or no output node) adds nothing to see
        try:
            record_run(self.history_store, run)
        except HistoryError as exc:
            self.log.add("warning", str(exc))
            return
        self.history.refresh()

    def open_history_run(self, run_id: int) -> bool:
        """Open the graph a recorded run ran, as a new untitled document (after offering to save)."""
        try:
            workflow = self.history_store.workflow(run_id) if self.history_store is not None else None
        except HistoryError as exc:
            self.show_error("Cannot open the run's graph", str(exc))
            return False
        if workflow is None:
            self.statusBar().showMessage("that run is no longer in the history", 4000)
            return False
        if not self.maybe_save():
            return False
        try:
            document = from_json_document(workflow)
        except WorkflowFormatError as exc:
            self.show_error("Cannot open the run's graph", str(exc))
            return False
        self.set_document(document.graph, None, fmt=document.save_format)
        for notice in document.notices:
            self.log.add("warning", notice)
        self.log.add("info", f"opened the graph of history run {run_id}")
        return True

    def _update_status(self) -> None:
        if self.doc is None:
            return
        controller = self.doc.controller
        parts = []
        if controller.running:
            parts.append("running")
            if controller.queued:
                parts.append(f"{controller.queued} queued")
        elif controller.last_result is not None:
            r = controller.last_result
            parts.append(f"last run: {r.status} in {r.seconds:.1f} s")
        if controller.paused:
            waiting = controller.queued and not controller.running  # while running, "N queued" says it
            parts.append(f"queue paused, {controller.queued} waiting" if waiting else "queue paused")
        parts.append(f"{len(self.graph.nodes)} nodes")
        self.status.setText(" · ".join(parts))

    # ---- drops: workflow files onto the window, node types from the library onto the canvas ------

    @staticmethod
    def _dropped_file(event: QDragEnterEvent | QDropEvent) -> Path | None:
        """A dropped workflow: a .json, or a .png that carries one. A plain image is not one: the
        canvas turns it into a Load Image node (`GraphView.dropEvent`)."""
        mime = event.mimeData()
        if not mime.hasUrls():
            return None
        for url in mime.urls():
            if not url.isLocalFile():
                continue
            path = Path(url.toLocalFile())
            suffix = path.suffix.lower()
            if suffix in OPENABLE and (suffix != ".png" or png_carries_workflow(path)):
                return path
        return None

    def _dropped_workflow_on_canvas(self, event: Any) -> Path | None:
        """A workflow dropped on the canvas, unless it lands on a Load Image node: that takes it as its
        image (as in ComfyUI), so a generated PNG can feed img2img without opening its graph."""
        path = self._dropped_file(event)
        if path is None or self.view.image_input_at(event.position().toPoint()) is not None:
            return None
        return path

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._dropped_file(event) is not None:
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event: Any) -> None:
        if self._dropped_file(event) is not None:
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        path = self._dropped_file(event)
        if path is None:
            super().dropEvent(event)
            return
        event.acceptProposedAction()
        # Open after the drop returns: a modal prompt inside a drop handler blocks the drag source.
        QTimer.singleShot(0, lambda: self.open_file(path))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """The canvas's Esc cancels a run; its viewport's drags open files or add library nodes there."""
        if self.doc is None:
            return super().eventFilter(watched, event)
        kind = event.type()
        if watched is self.doc.view and kind == QEvent.Type.KeyPress:
            self._escape_cancels(event)  # and let the canvas have it too (it drops a half-drawn wire)
            return False
        if watched is not self.doc.view.viewport():
            return super().eventFilter(watched, event)
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            if self._dropped_workflow_on_canvas(event) is not None or event.mimeData().hasFormat(NODE_TYPE_MIME):  # type: ignore[attr-defined]
                event.acceptProposedAction()  # type: ignore[attr-defined]
                return True
        elif kind == QEvent.Type.Drop:
            if event.mimeData().hasFormat(NODE_TYPE_MIME):  # type: ignore[attr-defined]
                node_type = bytes(event.mimeData().data(NODE_TYPE_MIME).data()).decode()  # type: ignore[attr-defined]
                pos: QPoint = event.position().toPoint()  # type: ignore[attr-defined]
                self.add_node(node_type, self.view.mapToScene(pos))
                event.acceptProposedAction()  # type: ignore[attr-defined]
                return True
            if self._dropped_workflow_on_canvas(event) is not None:
                self.dropEvent(event)  # type: ignore[arg-type]
                return True
        return super().eventFilter(watched, event)

    # ---- closing --------------------------------------------------------------------------------

    def _escape_cancels(self, event: Any) -> bool:
        """Esc cancels the current run (the queue goes on); Shift+Esc cancels it and the whole queue."""
        if event.key() != Qt.Key.Key_Escape or self.doc is None:
            return False
        controller = self.doc.controller
        if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            if not (controller.running or controller.queued):
                return False
            self.cancel_all_runs()
            return True
        if not controller.running:
            return False
        self.cancel_run()
        return True

    def keyPressEvent(self, event: Any) -> None:
        if self._escape_cancels(event):  # Esc from a panel (the canvas has its own filter)
            event.accept()
            return
        super().keyPressEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.prompt_on_close and not self.maybe_save():
            event.ignore()
            return
        self.shutdown()
        event.accept()

    def close_without_prompt(self) -> None:
        """Close, dropping unsaved changes (start-up probe, tests); still a clean exit."""
        self.prompt_on_close = False
        self.close()

    # ---- window geometry, kept between launches ------------------------------------------------

    @staticmethod
    def window_state_store() -> QSettings:
        return QSettings(str(home_dir() / WINDOW_STATE_FILE), QSettings.Format.IniFormat)

    def save_window_state(self) -> None:
        store = self.window_state_store()
        store.setValue("geometry", self.saveGeometry())
        store.setValue("state", self.saveState(WINDOW_STATE_VERSION))
        store.sync()

    def restore_window_state(self) -> bool:
        """Put the window and its docks where the user left them; False on a first start (defaults)."""
        store = self.window_state_store()
        geometry, state = store.value("geometry"), store.value("state")
        if geometry is None or state is None:
            return False
        return bool(self.restoreGeometry(geometry)) and bool(self.restoreState(state, WINDOW_STATE_VERSION))

    def shutdown(self) -> None:
        """The clean-exit path: stop runs, and tell the autosave store this session ended normally."""
        self.save_window_state()
        self.log_bridge.detach()
        if self.doc is not None:
            self.doc.controller.shutdown()
        if self.autosaver is not None:
            self.autosaver.stop()
            with contextlib.suppress(OSError):
                self.autosaver.store.end_session()
        if self.history_store is not None:
            self.history.detach()
            self.history_store.close()
            self.history_store = None
