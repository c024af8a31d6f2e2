"""Selection and what acts on it: select all, delete, copy/cut/paste/duplicate, bypass/mute, and grouping the
selected nodes.

A mixin of `ui.canvas.view.GraphView`: it uses the view's graph, registry, undo stack and items."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QRectF
from PySide6.QtGui import QGuiApplication

from graph_engine.model import NodeMode
from ui import commands as cmds
from ui import input_images, theme
from ui.canvas.group_item import GroupItem
from ui.canvas.node_item import NodeItem
from ui.clipboard import read_system_clipboard, selection_to_payload, write_system_clipboard


class SelectionMixin:
    def selected_node_ids(self) -> list[int]:
        return sorted(i.node_id for i in self._scene.selectedItems() if isinstance(i, NodeItem))

    def select_nodes(self, node_ids: list[int]) -> None:
        self._scene.clearSelection()
        for nid in node_ids:
            if nid in self._nodes:
                self._nodes[nid].setSelected(True)

    def _emit_selection(self) -> None:
        self.nodeSelectionChanged.emit(self.selected_node_ids())

    def select_all(self) -> None:
        for item in self._nodes.values():
            item.setSelected(True)

    def delete_selected(self) -> None:
        node_ids = self.selected_node_ids()
        group_ids = sorted(i.group_id for i in self._scene.selectedItems() if isinstance(i, GroupItem))
        if not node_ids and not group_ids:
            return
        edits = cmds.remove_nodes_command(self.graph, node_ids).edits if node_ids else []
        if group_ids:
            edits += cmds.remove_groups_command(self.graph, group_ids).edits
        n = len(node_ids)
        text = f"Delete {n} node{'s' if n != 1 else ''}" if node_ids else "Delete group"
        self.undo_stack.push(cmds.GraphCommand(self.graph, text, edits))

    def copy_selected(self) -> None:
        ids = self.selected_node_ids()
        if ids:
            write_system_clipboard(selection_to_payload(self.graph, ids))

    def cut_selected(self) -> None:
        ids = self.selected_node_ids()
        if ids:
            self.copy_selected()
            command = cmds.remove_nodes_command(self.graph, ids)
            command.setText(command.text().replace("Delete", "Cut"))
            self.undo_stack.push(command)

    def paste(self) -> None:
        """Paste the clipboard's nodes with their top-left at the cursor (or the view centre); with no
        nodes there but an image (data or image files), a Load Image node with that image instead."""
        payload = read_system_clipboard()
        vp = self._last_mouse_vp or self.viewport().rect().center()
        at = self.mapToScene(vp)
        if payload and payload.get("nodes"):
            self._push_paste(payload, (at.x(), at.y()), "Paste")
            return
        mime = QGuiApplication.clipboard().mimeData()
        if input_images.mime_has_image(mime):
            self._add_images_from(mime, at, vp, "Paste image")

    def duplicate_selected(self) -> None:
        ids = self.selected_node_ids()
        if not ids:
            return
        payload = selection_to_payload(self.graph, ids)
        x0 = min(self.graph.nodes[i].pos[0] for i in ids)
        y0 = min(self.graph.nodes[i].pos[1] for i in ids)
        self._push_paste(payload, (x0 + 30, y0 + 30), "Duplicate")

    def _push_paste(self, payload: dict[str, Any], at: tuple[float, float], text: str) -> None:
        command = cmds.paste_command(self.graph, payload, at, text=text)
        self.undo_stack.push(command)
        new_ids = [e.record["id"] for e in command.edits if isinstance(e, cmds.AddNode)]
        self.select_nodes(new_ids)

    def toggle_mode(self, mode: NodeMode) -> None:
        ids = self.selected_node_ids()
        if ids:
            self.undo_stack.push(cmds.toggle_mode_command(self.graph, ids, mode))

    def group_selected(self) -> None:
        ids = self.selected_node_ids()
        if not ids:
            return
        rect = QRectF()
        for nid in ids:
            item = self._nodes[nid]
            rect = rect.united(item.mapRectToScene(item.layout.rect))
        rect.adjust(-20, -20 - theme.GROUP_TITLE_HEIGHT, 20, 20)
        self.undo_stack.push(
            cmds.add_group_command(self.graph, "Group", (rect.x(), rect.y(), rect.width(), rect.height()))
        )
