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


def demo_graph(graph, registry) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """A small but representative graph: every widget kind, typed wires, a group, a note, modes."""
    ids: dict[str, int] = {}

    def add(name: str, type_: str, pos: tuple[float, float], **kw: object) -> None:
        values = registry.get(type_).default_values() | dict(kw.pop("values", {}))  # type: ignore[call-overload]
        ids[name] = graph.add_node(type_, values, pos=pos, **kw).id

    add("latent", "Latent", (0, 0))
    add("sampler", "Sampler", (230, 0))
    add("decode", "Decode", (520, 0))
    add("image", "Image", (760, 0))
    add("number", "Number", (0, 190), values={"value": 7})
    add("add", "Add", (0, 310), values={"b": 5})
    add("note", "Note", (520, 150), values={"text": "Sampler settings from the paper.\nSeed is randomized."})
    add("bypassed", "Number", (760, 250), values={"value": 3}, mode="bypass")
    add("muted", "Number", (760, 360), values={"value": 4}, mode="mute")
    graph.add_link(ids["latent"], "LATENT", ids["sampler"], "latent", "LATENT")
    graph.add_link(ids["sampler"], "LATENT", ids["decode"], "samples", "LATENT")
    graph.add_link(ids["decode"], "IMAGE", ids["image"], "image", "IMAGE")
    graph.add_link(ids["number"], "INT", ids["add"], "a", "INT")
    graph.add_link(ids["number"], "INT", ids["sampler"], "steps", "INT")
    graph.add_group("Inputs", (-20, 150, 260, 290))
    return ids
