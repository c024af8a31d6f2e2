"""The minimap: a small overview of the whole graph in the canvas's bottom-right corner.

It shows every group and node as a rectangle in its colour (the node's title colour, so a coloured
node is found at a glance) and the part of the graph the canvas shows as a frame. A click or a drag in
it centres the canvas on that point. It is shown only while it is useful: when the user has it on
(View ▸ Minimap) and the graph does not already fit in the canvas.

Cheap by construction, so it never costs the canvas its frame budget:

* the nodes are drawn once into a pixmap, rebuilt only after the graph changed (coalesced by a short
  timer, so a drag or a 500-node load rebuilds it once, not per event);
* a repaint blits that pixmap and draws one frame rectangle;
* it learns that the view moved (pan, zoom, resize) from the viewport's paint events, through an
  event filter, comparing the visible scene rectangle with the one it last drew; `GraphView` needs no
  hook in each of its many ways of moving (`centerOn`, `scale`, `fitInView`, scroll bars).

It is a child of the viewport (so it is painted with it, above the scene, and below the search popup
and the inline editors, which are created earlier and raised above it) and keeps itself in the corner:
`QGraphicsView` scrolls the viewport's children along with the scene, so a move it did not ask for is
undone at once.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, QRectF, QSize, QSizeF, Qt, QTimer
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QMouseEvent,
    QMoveEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
    QWheelEvent,
)
from PySide6.QtWidgets import QWidget

from graph_engine.model import EVENT_VALUE_CHANGED, GraphEvent
from ui.canvas.group_item import GroupItem
from ui.canvas.node_item import NodeItem

if TYPE_CHECKING:
    from ui.canvas.view import GraphView

SIZE = QSize(200, 140)  # on a canvas large enough; a small canvas gets a smaller map (`MAX_SHARE`)
MAX_SHARE = 0.35  # the most of the canvas's width or height the minimap may cover
MIN_SCALE = 0.5  # ... but never less than half its full size
MARGIN = 12  # pixels between the minimap and the viewport's corner
INSET = 5.0  # pixels inside the minimap's border that the graph may use
SCENE_PAD = 40.0  # scene units around the graph's bounds
# A graph change is drawn this long after it happened, so a burst of events costs one rebuild.
REBUILD_DELAY_MS = 30

BACKGROUND = QColor(18, 19, 22, 200)
BORDER = QColor(90, 95, 105, 220)
FRAME = QColor(235, 235, 235, 230)
FRAME_FILL = QColor(255, 255, 255, 28)
NODE_ALPHA = 235
GROUP_ALPHA = 70


class Minimap(QWidget):
    """See the module docstring. `GraphView` makes one and keeps it as `view.minimap`."""

    def __init__(self, view: GraphView) -> None:
        super().__init__(view.viewport())
        self.setObjectName("minimap")
        self._view = view
        self.setFixedSize(self._size_for(view.viewport().size()))
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Click or drag to move the canvas there")
        self._wanted = True  # the user's choice (View ▸ Minimap)
        self._graph_rect = QRectF()  # the scene rect every node and group occupies
        self._bounds = QRectF()  # the scene rect the minimap shows (the graph, padded)
        self._scale = 1.0  # minimap pixels per scene unit
        self._origin = QPointF()  # where `_bounds.topLeft()` lands in the widget
        self._pixmap: QPixmap | None = None
        self._dirty = True
        self._synced_rect = QRectF()  # the visible scene rect when `sync` last ran
        self._painted_rect = QRectF()  # the visible scene rect the last whole-widget paint framed
        self._dragging = False
        self.rebuilds = 0  # how many times the node pixmap was drawn (for tests and benchmarks)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.sync)
        graph = view.graph
        graph.changed.connect(self._on_graph_event)
        slot = self._on_graph_event
        self.destroyed.connect(lambda *_: _safe_disconnect(graph, slot))
        view.viewport().installEventFilter(self)
        self.lower()  # under the search popup, the inline editors and the refusal label
        self._place()
        self.hide()
        self._schedule(0)

    # ---- public -----------------------------------------------------------------------------------

    @property
    def wanted(self) -> bool:
        """The user's choice; the minimap is visible only when also needed (see `needed`)."""
        return self._wanted

    def set_wanted(self, on: bool) -> None:
        self._wanted = bool(on)
        self.sync()

    def needed(self) -> bool:
        """Whether part of the graph lies outside the canvas (a fully visible graph needs no map)."""
        return not self._graph_rect.isNull() and not self.visible_scene_rect().contains(self._graph_rect)

    def visible_scene_rect(self) -> QRectF:
        view = self._view
        return view.mapToScene(view.viewport().rect()).boundingRect()

    def scene_to_map(self, p: QPointF) -> QPointF:
        """A scene point's place in the minimap (widget pixels)."""
        return QPointF(
            self._origin.x() + (p.x() - self._bounds.left()) * self._scale,
            self._origin.y() + (p.y() - self._bounds.top()) * self._scale,
        )

    def map_to_scene(self, p: QPointF) -> QPointF:
        """The scene point under a minimap pixel (the inverse of `scene_to_map`)."""
        return QPointF(
            self._bounds.left() + (p.x() - self._origin.x()) / self._scale,
            self._bounds.top() + (p.y() - self._origin.y()) / self._scale,
        )

    def frame_rect(self) -> QRectF:
        """Where the frame showing the canvas's visible area goes (widget pixels, unclipped)."""
        return self._map_rect(self.visible_scene_rect())

    @property
    def painted_rect(self) -> QRectF:
        """The visible scene rect the minimap last painted its frame for (what is on screen now)."""
        return QRectF(self._painted_rect)

    def sync(self) -> None:
        """Catch up with the graph (rebuild the pixmap if it changed) and the view; show or hide."""
        self._timer.stop()
        if not self._wanted:
            self.hide()  # switched off: nothing to draw, and the graph is redrawn when switched on
            return
        rebuilt = self._dirty
        if rebuilt:
            self._rebuild()
        self._synced_rect = self.visible_scene_rect()
        self.setVisible(self._wanted and self.needed())
        self._place()
        # The canvas's own repaint usually repainted the map with the new frame already (it lies on the
        # viewport); paint again only when that did not happen, or when the nodes were redrawn.
        if rebuilt or self._synced_rect != self._painted_rect:
            self.update()

    # ---- keeping up -------------------------------------------------------------------------------

    def _schedule(self, delay_ms: int) -> None:
        if not self._timer.isActive():
            self._timer.start(delay_ms)

    def _on_graph_event(self, ev: GraphEvent) -> None:
        if ev.kind == EVENT_VALUE_CHANGED:
            return  # a value never moves or recolours a node
        self._dirty = True
        self._schedule(REBUILD_DELAY_MS)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.Paint:
            # The canvas repainted: if it moved or zoomed, the frame (and maybe the visibility) must follow.
            if self.visible_scene_rect() != self._synced_rect:
                self._schedule(0)
        elif kind == QEvent.Type.Resize:
            self._place()
            self._schedule(0)
        return False

    def _place(self) -> None:
        vp = self._view.viewport().rect()
        size = self._size_for(vp.size())
        if size != self.size():
            self.setFixedSize(size)
            self._dirty = True
            self._schedule(0)
        target = QPoint(vp.right() - size.width() - MARGIN + 1, vp.bottom() - size.height() - MARGIN + 1)
        if self.pos() != target:
            self.move(target)

    @staticmethod
    def _size_for(canvas: QSize) -> QSize:
        """The minimap's size on a canvas of size `canvas`: `SIZE`, shrunk on a small canvas."""
        f = min(1.0, canvas.width() * MAX_SHARE / SIZE.width(), canvas.height() * MAX_SHARE / SIZE.height())
        f = max(f, MIN_SCALE)
        return QSize(round(SIZE.width() * f), round(SIZE.height() * f))

    def moveEvent(self, event: QMoveEvent) -> None:
        """The view scrolled its viewport's children along with the scene: go back to the corner."""
        super().moveEvent(event)
        self._place()

    def _rebuild(self) -> None:
        """Fit the graph into the widget and draw its groups and nodes into the pixmap."""
        self._dirty = False
        self.rebuilds += 1
        items = self._view.scene().items()
        nodes = [i for i in items if isinstance(i, NodeItem)]
        groups = [i for i in items if isinstance(i, GroupItem)]
        rect = QRectF()
        for item in itertools.chain(nodes, groups):
            rect = rect.united(item.sceneBoundingRect())
        self._graph_rect = rect
        if rect.isNull():
            self._pixmap = None
            return
        self._bounds = rect.adjusted(-SCENE_PAD, -SCENE_PAD, SCENE_PAD, SCENE_PAD)
        room_w, room_h = self.width() - 2 * INSET, self.height() - 2 * INSET
        self._scale = min(room_w / self._bounds.width(), room_h / self._bounds.height())
        self._origin = QPointF(
            INSET + (room_w - self._bounds.width() * self._scale) / 2,
            INSET + (room_h - self._bounds.height() * self._scale) / 2,
        )
        dpr = self.devicePixelRatioF()
        pix = QPixmap(self.size() * dpr)
        pix.setDevicePixelRatio(dpr)
        pix.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pix)
        painter.setPen(Qt.PenStyle.NoPen)
        for group in groups:
            color = QColor(group.color)
            color.setAlpha(GROUP_ALPHA)
            painter.setBrush(color)
            painter.drawRect(self._map_rect(group.sceneBoundingRect()))
        for node in nodes:
            color = QColor(node.header_color())
            color.setAlpha(NODE_ALPHA)
            painter.setBrush(color)
            r = self._map_rect(node.mapRectToScene(node.layout.rect))
            # at least a pixel and a half, so a small node in a large graph is still a dot
            painter.drawRect(QRectF(r.topLeft(), r.size().expandedTo(QSizeF(1.5, 1.5))))
        painter.end()
        self._pixmap = pix

    def _map_rect(self, r: QRectF) -> QRectF:
        return QRectF(self.scene_to_map(r.topLeft()), self.scene_to_map(r.bottomRight()))

    # ---- painting and input -------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        box = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        painter.setPen(QPen(BORDER, 1.0))
        painter.setBrush(BACKGROUND)
        painter.drawRoundedRect(box, 5, 5)
        if self._pixmap is not None:
            painter.drawPixmap(0, 0, self._pixmap)
        shown = self.visible_scene_rect()
        if not self._bounds.isNull():
            painter.setClipRect(box.adjusted(1, 1, -1, -1))
            painter.setPen(QPen(FRAME, 1.5))
            painter.setBrush(FRAME_FILL)
            painter.drawRect(self._map_rect(shown))
        painter.end()
        if event.rect().contains(self.rect()):  # a partial paint leaves part of an older frame on screen
            self._painted_rect = shown

    def _move_view_to(self, pos: QPointF) -> None:
        if not self._bounds.isNull():
            self._view.centerOn(self.map_to_scene(pos))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._dragging = True
            self._move_view_to(event.position())
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._dragging and event.buttons() & Qt.MouseButton.LeftButton:
            self._move_view_to(event.position())
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._dragging = False
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        event.accept()  # not the canvas's "double-click adds a node"

    def wheelEvent(self, event: QWheelEvent) -> None:
        event.accept()  # the canvas under the map does not zoom through it

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        event.accept()


def _safe_disconnect(graph: Any, slot: Any) -> None:
    with contextlib.suppress(ValueError, RuntimeError):
        graph.changed.disconnect(slot)
