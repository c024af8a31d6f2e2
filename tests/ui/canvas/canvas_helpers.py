"""Real input events on a `GraphView`'s viewport, with positions mapped from scene coordinates.

Qt 6's QTest keeps a pressed button held across `mouseMove`, so drags are press, moves, release
(notes §3.5); a move between press and release is required for Qt to see a drag at all.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from ui.canvas import GraphView


def vp(view: GraphView, p: QPointF | tuple[float, float]) -> QPoint:
    pt = p if isinstance(p, QPointF) else QPointF(*p)
    return view.mapFromScene(pt)


def drag(
    view: GraphView,
    a: QPointF | tuple[float, float],
    b: QPointF | tuple[float, float],
    *,
    button: Qt.MouseButton = Qt.MouseButton.LeftButton,
    modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier,
    steps: int = 6,
) -> None:
    """Press at `a`, move in steps (with the button held), release at `b`: all on the viewport."""
    w = view.viewport()
    pa, pb = vp(view, a), vp(view, b)
    QTest.mousePress(w, button, modifiers, pa)
    for i in range(1, steps + 1):
        p = pa + (pb - pa) * (i / steps)
        QTest.mouseMove(w, p)
    QTest.mouseRelease(w, button, modifiers, pb)


def click(
    view: GraphView,
    p: QPointF | tuple[float, float],
    *,
    button: Qt.MouseButton = Qt.MouseButton.LeftButton,
    modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier,
) -> None:
    w = view.viewport()
    QTest.mouseMove(w, vp(view, p))
    QTest.mouseClick(w, button, modifiers, vp(view, p))
