"""Wires: cubic Béziers from an output to an input, coloured by the link's type.

The path and its stroked hit shape are rebuilt only when an end moves (`set_ends`), never in `paint()`:
the stroked shape is a wide, cheap target for clicks and hover (pyqtgraph's `ConnectionItem.shape`).
The same class draws the wire that follows the cursor while a connection is being dragged.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPainterPathStroker, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from ui import theme

WIRE_Z = -1.0
WIRE_WIDTH = 2.4
HIT_WIDTH = 10.0


def wire_path(a: QPointF, b: QPointF) -> QPainterPath:
    """A horizontal-tangent cubic; wires that run backwards bulge out so they stay readable."""
    dx = max(abs(b.x() - a.x()) * 0.5, 50.0)
    path = QPainterPath(a)
    path.cubicTo(QPointF(a.x() + dx, a.y()), QPointF(b.x() - dx, b.y()), b)
    return path


class WireItem(QGraphicsItem):
    def __init__(self, link_id: int | None, type_name: str, *, dragging: bool = False) -> None:
        super().__init__()
        self.link_id = link_id
        self.type_name = type_name
        self.dragging = dragging
        self.setZValue(WIRE_Z if not dragging else 10.0)
        self.setAcceptHoverEvents(False)
        color = QColor(theme.type_color(type_name))
        self._pen = QPen(color, WIRE_WIDTH)
        self._pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        if dragging:
            self._pen.setStyle(Qt.PenStyle.DashLine)
        self._dim_pen = QPen(self._pen)
        dim = QColor(color)
        dim.setAlpha(90)
        self._dim_pen.setColor(dim)
        self.dimmed = False
        self._path = QPainterPath()
        self._shape = QPainterPath()
        self._bounds = QRectF()

    def set_ends(self, a: QPointF, b: QPointF) -> None:
        self.prepareGeometryChange()
        self._path = wire_path(a, b)
        stroker = QPainterPathStroker()
        stroker.setWidth(HIT_WIDTH)
        self._shape = stroker.createStroke(self._path)
        self._bounds = self._path.boundingRect().adjusted(-HIT_WIDTH, -HIT_WIDTH, HIT_WIDTH, HIT_WIDTH)

    def set_dimmed(self, dimmed: bool) -> None:
        """Wires into muted nodes are drawn faint: they carry nothing while the node is muted."""
        if dimmed != self.dimmed:
            self.dimmed = dimmed
            self.update()

    def boundingRect(self) -> QRectF:
        return self._bounds

    def shape(self) -> QPainterPath:
        return self._shape

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(self._dim_pen if self.dimmed else self._pen)
        painter.drawPath(self._path)
