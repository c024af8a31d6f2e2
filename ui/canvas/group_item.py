"""Groups: titled rectangles drawn behind nodes.

Only the title bar is the group's `shape()`, so clicks and rubber bands over the group's body reach the
canvas and the nodes inside it; dragging the title bar moves the group and the nodes it contains.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from graph_engine.model import Group
from ui import theme

GROUP_Z = -2.0


class GroupItem(QGraphicsItem):
    def __init__(self, group: Group) -> None:
        super().__init__()
        self.group_id = group.id
        self.setZValue(GROUP_Z)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self.title = ""
        self.color: QColor = theme.GROUP_FILL
        self._rect = QRectF()
        self._title_path = QPainterPath()
        self.refresh(group)

    def refresh(self, group: Group) -> None:
        x, y, w, h = group.bounding
        self.prepareGeometryChange()
        self.setPos(x, y)
        self._rect = QRectF(0, 0, max(w, 40.0), max(h, theme.GROUP_TITLE_HEIGHT))
        self.title = group.title
        if group.color:
            c = QColor(group.color)
            c.setAlpha(60)
            self.color = c
        else:
            self.color = theme.GROUP_FILL
        path = QPainterPath()
        path.addRect(self.title_rect())
        self._title_path = path
        self.update()

    def title_rect(self) -> QRectF:
        return QRectF(0, 0, self._rect.width(), theme.GROUP_TITLE_HEIGHT)

    def boundingRect(self) -> QRectF:
        return self._rect.adjusted(-2, -2, 2, 2)

    def shape(self) -> QPainterPath:
        return self._title_path

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        painter.setPen(theme.pen(theme.NODE_SELECTED.name() if self.isSelected() else theme.GROUP_BORDER.name(), 1.5))
        painter.setBrush(self.color)
        painter.drawRoundedRect(self._rect, 6, 6)
        head = QColor(self.color)
        head.setAlpha(min(255, head.alpha() * 2))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(head)
        painter.drawRect(self.title_rect().adjusted(1, 1, -1, 0))
        if option.levelOfDetailFromTransform(painter.worldTransform()) >= theme.LOD_THRESHOLD / 2:  # type: ignore[attr-defined]
            painter.setFont(theme.group_font())
            painter.setPen(theme.GROUP_TITLE)
            painter.drawText(
                self.title_rect().adjusted(10, 0, -10, 0),
                int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft),
                self.title,
            )
