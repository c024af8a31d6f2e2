"""Keyboard shortcuts as data: one table, from which the canvas and the window build their QActions.

Keeping the keymap as data (like ComfyUI's `defaults.ts` or NodeGraphQt's `hotkeys.json`) means the
help dialog, a future settings page and the actions themselves can never disagree.

Each shortcut has a `scope`:

- ``"canvas"`` actions are built by `GraphView` itself, with `WidgetWithChildrenShortcut` context, so
  they fire only while the canvas has focus (Delete must not delete nodes while typing in a panel);
- ``"window"`` actions (undo, redo, run, save...) belong to the main window, which usually makes them
  from `QUndoStack.createUndoAction` and friends. The canvas never binds them, because two actions on
  one key sequence in the same window make Qt treat the key as ambiguous and fire neither.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence


@dataclass(frozen=True)
class Shortcut:
    action_id: str
    keys: tuple[str, ...]
    description: str
    scope: str = "canvas"

    def sequences(self) -> list[QKeySequence]:
        return [QKeySequence(k) for k in self.keys]


SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("canvas.search", ("Tab",), "Add a node: open the search at the cursor"),
    Shortcut("canvas.fit", ("F", "Home"), "Fit the view to the whole graph"),
    Shortcut("canvas.zoom_in", ("Ctrl+=", "Ctrl++"), "Zoom in"),
    Shortcut("canvas.zoom_out", ("Ctrl+-",), "Zoom out"),
    Shortcut("edit.select_all", ("Ctrl+A",), "Select every node"),
    Shortcut("edit.delete", ("Delete", "Backspace"), "Delete the selected nodes (and their links)"),
    Shortcut("edit.copy", ("Ctrl+C",), "Copy the selected nodes and the links between them"),
    Shortcut("edit.cut", ("Ctrl+X",), "Cut the selected nodes"),
    Shortcut("edit.paste", ("Ctrl+V",), "Paste nodes at the cursor"),
    Shortcut("edit.duplicate", ("Ctrl+D",), "Duplicate the selected nodes"),
    Shortcut("edit.bypass", ("Ctrl+B",), "Bypass the selected nodes (inputs pass through)"),
    Shortcut("edit.mute", ("Ctrl+M",), "Mute the selected nodes (they and what needs them do not run)"),
    Shortcut("edit.group", ("Ctrl+G",), "Put a group around the selected nodes"),
    Shortcut("edit.undo", ("Ctrl+Z",), "Undo", scope="window"),
    Shortcut("edit.redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Redo", scope="window"),
    Shortcut("run.queue", ("Ctrl+Return",), "Run the graph", scope="window"),
    Shortcut("run.cancel", ("Ctrl+Alt+Return",), "Cancel the run", scope="window"),
    Shortcut(
        "run.batch", ("Ctrl+Shift+B",), "Batch to Folder: Run ×N into a folder, skip what is done", scope="window"
    ),
    Shortcut("file.open", ("Ctrl+O",), "Open a workflow", scope="window"),
    Shortcut("file.save", ("Ctrl+S",), "Save the workflow", scope="window"),
    Shortcut("app.preferences", ("Ctrl+,",), "Preferences: device, precision, memory, model folders", scope="window"),
    Shortcut("help.shortcuts", ("F1",), "Show this list of shortcuts and mouse gestures", scope="window"),
)

# Keys the canvas reads from its key events (so that they stay free for the search popup and the inline
# editors) and mouse gestures: not actions, but listed with the shortcuts in the cheat sheet.
GESTURES: tuple[tuple[str, str], ...] = (
    ("Esc", "Cancel the running run (queued runs still run)"),
    ("Shift+Esc", "Cancel the run and drop every queued run"),
    ("Wheel", "Zoom at the cursor"),
    ("Middle drag, Space+drag or Alt+drag", "Pan the canvas"),
    ("Drag from a socket", "Draw a wire; drop it on empty canvas to search nodes that fit"),
    ("Double-click empty canvas", "Add a node: open the search"),
    ("Drag on empty canvas", "Select the nodes in a rectangle (Ctrl/Shift add to the selection)"),
    ("Double-click a node title", "Rename the node"),
    ("Right-click a node or group ▸ Colour", "Colour it (every selected node) with ComfyUI's palette"),
    ("Click or drag in the minimap", "Move the canvas there (View ▸ Minimap shows or hides it)"),
)

BY_ID: dict[str, Shortcut] = {s.action_id: s for s in SHORTCUTS}


def build_actions(
    parent: QObject,
    handlers: Mapping[str, Callable[[], object]],
    *,
    scope: str = "canvas",
    context: Qt.ShortcutContext = Qt.ShortcutContext.WidgetWithChildrenShortcut,
) -> dict[str, QAction]:
    """One QAction per shortcut of `scope` that has a handler; the caller adds them to a widget."""
    actions: dict[str, QAction] = {}
    for sc in SHORTCUTS:
        if sc.scope != scope or sc.action_id not in handlers:
            continue
        action = QAction(sc.description, parent)
        action.setObjectName(sc.action_id)
        action.setShortcuts(sc.sequences())
        action.setShortcutContext(context)
        action.triggered.connect(lambda _checked=False, fn=handlers[sc.action_id]: fn())
        actions[sc.action_id] = action
    return actions
