"""Files and images brought to the canvas: drops, pasted images and the Load Image file picker.

A mixin of `ui.canvas.view.GraphView`: it uses the view's graph, registry, undo stack and items."""

from __future__ import annotations

from PySide6.QtCore import QMimeData, QPoint, QPointF
from PySide6.QtGui import (
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
)

from ui import commands as cmds
from ui import input_images
from ui.canvas.node_item import NodeItem


class DropsMixin:
    def image_loader_type(self) -> str | None:
        """The node type pasted or dropped images become: Load Image, or any type with an image-file input."""
        spec = self.registry.get("LoadImage")
        if spec is not None and input_images.image_inputs(spec):
            return spec.type
        return next((s.type for s in self.registry if input_images.image_inputs(s)), None)

    def choose_image(self, node_id: int, input_id: str) -> str | None:
        """Ask for an image file anywhere (`ui.input_images.choose_image_file`), copy it into the input
        folder under a free name and select it in the node (one undo step); returns the name."""
        path = input_images.choose_image_file(self)
        if path is None or node_id not in self.graph.nodes:
            return None
        try:
            name = input_images.import_file(path)
        except (OSError, ValueError) as exc:
            self._show_refusal(f"could not add the image: {exc}", self._widget_vp(node_id, input_id), linger_ms=4000)
            return None
        if self.graph.nodes[node_id].values.get(input_id) != name:
            self.undo_stack.push(cmds.set_value_command(self.graph, node_id, input_id, name))
        else:
            self._nodes[node_id].refresh()  # the same name, maybe a new picture
        return name

    def _widget_vp(self, node_id: int, input_id: str) -> QPoint:
        item = self._nodes.get(node_id)
        if item is None or input_id not in item.layout.widgets:
            return self.viewport().rect().center()
        return self.mapFromScene(item.widget_scene_rect(input_id).bottomLeft())

    def image_input_at(self, vp: QPoint) -> tuple[int, str] | None:
        """The unwired image-file input of the node under a viewport point (a drop there sets it)."""
        item, _hit = self._hit(self.mapToScene(vp))
        if not isinstance(item, NodeItem):
            return None
        linked = set(self.graph.inputs_of(item.node_id))
        for inp in input_images.image_inputs(item.spec):
            if inp.id not in linked:
                return item.node_id, inp.id
        return None

    def _add_images_from(self, mime: QMimeData, at: QPointF, vp: QPoint, text: str) -> list[int]:
        """Store the images `mime` carries in the input folder; onto the Load Image node under `vp` (the
        first image), else as new Load Image nodes at `at`, cascading. One undo step; new node ids."""
        target = self.image_input_at(vp)
        node_type = self.image_loader_type()
        if target is None and node_type is None:
            self._show_refusal("no node type here loads images", vp, linger_ms=3000)
            return []
        try:
            names = input_images.store_from_mime(mime)
        except (OSError, ValueError) as exc:
            self._show_refusal(f"could not add the image: {exc}", vp, linger_ms=4000)
            return []
        if not names:
            return []
        if target is not None:
            nid, input_id = target
            if self.graph.nodes[nid].values.get(input_id) != names[0]:
                self.undo_stack.push(cmds.set_value_command(self.graph, nid, input_id, names[0]))
            return []
        assert node_type is not None
        spec = self.registry.get(node_type)
        input_id = input_images.image_inputs(spec)[0].id
        edits: list[cmds.Edit] = []
        new_ids: list[int] = []
        next_id = self.graph.next_node_id
        for i, name in enumerate(names):
            pos = (at.x() + 30 * i, at.y() + 30 * i)
            rec = cmds.new_node_record(
                self.graph, self.registry, node_type, pos, node_id=next_id + i, values={input_id: name}
            )
            edits.append(cmds.AddNode(rec))
            new_ids.append(rec["id"])
        self.undo_stack.push(cmds.GraphCommand(self.graph, text, edits))
        self.select_nodes(new_ids)
        return new_ids

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if input_images.mime_has_image(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if input_images.mime_has_image(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        """Image files (or image data) dropped here: onto a Load Image node, or new ones at the drop point."""
        mime = event.mimeData()
        if not input_images.mime_has_image(mime):
            super().dropEvent(event)
            return
        event.acceptProposedAction()
        vp = event.position().toPoint()
        self._add_images_from(mime, self.mapToScene(vp), vp, "Drop image")
        self.setFocus()
