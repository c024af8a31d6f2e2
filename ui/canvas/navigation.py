"""Zoom and pan: fitting the graph, centring a node, the wheel and the zoom steps.

A mixin of `ui.canvas.view.GraphView`: it uses the view's graph, registry, undo stack and items."""

from __future__ import annotations

import itertools
import math

from PySide6.QtCore import QPoint, QRectF, Qt
from PySide6.QtGui import QWheelEvent

from ui.canvas.drags import MAX_ZOOM, MIN_ZOOM, ZOOM_STEP
from ui.canvas.node_item import NodeItem


class NavigationMixin:
    def fit_all(self) -> None:
        """Zoom and pan so every node and group is visible (never zooming in past 100%)."""
        rect = QRectF()
        for item in itertools.chain(self._nodes.values(), self._groups.values()):
            rect = rect.united(item.sceneBoundingRect())
        if rect.isNull():
            self.resetTransform()
            self.centerOn(0, 0)
            return
        rect.adjust(-40, -40, 40, 40)
        self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        scale = self.zoom()
        if scale > 1.0 or scale < MIN_ZOOM:
            clamped = min(max(scale, MIN_ZOOM), 1.0)
            self.resetTransform()
            self.scale(clamped, clamped)
            self.centerOn(rect.center())

    def center_on_node(self, node_id: int) -> None:
        item = self._nodes.get(node_id)
        if item is None:
            return
        self.centerOn(item.mapRectToScene(item.layout.rect).center())
        self.select_nodes([node_id])

    def zoom(self) -> float:
        return self.transform().m11()

    def wheelEvent(self, event: QWheelEvent) -> None:
        vp = event.position().toPoint()
        sp = self.mapToScene(vp)
        notches = event.angleDelta().y() / 120.0
        if notches == 0:
            return
        item, hit = self._hit(sp)
        if isinstance(item, NodeItem) and hit is not None and hit.kind == "widget":
            inp = item.layout.widgets[hit.key].input
            if inp.type in ("INT", "FLOAT"):
                value = self.graph.nodes[item.node_id].values.get(inp.id, inp.default)
                steps = int(math.copysign(max(1, round(abs(notches))), notches))
                self._set_number(item.node_id, inp, value, steps, ("scroll", item.node_id, inp.id, self._gesture))
                event.accept()
                return
        self._zoom_by(ZOOM_STEP**notches, vp)
        event.accept()

    def _zoom_by(self, factor: float, anchor_vp: QPoint | None) -> None:
        """Zoom keeping the scene point under `anchor_vp` (default: the view centre) fixed on screen."""
        if anchor_vp is None:
            anchor_vp = self.viewport().rect().center()
        current = self.zoom()
        target = min(max(current * factor, MIN_ZOOM), MAX_ZOOM)
        if math.isclose(target, current):
            return
        before = self.mapToScene(anchor_vp)
        self.scale(target / current, target / current)
        # The view scrolls by its (hidden) scroll bars; shift them so `before` is back under the anchor.
        moved = before - self.mapToScene(anchor_vp)
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + round(moved.x() * target))
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + round(moved.y() * target))
