"""What the canvas remembers during a gesture (the drag modes), and its size constants."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QPoint, QPointF

from graph_engine.model import Link
from graph_engine.node_spec import Input
from ui.canvas.wire_item import WireItem

SCENE_HALF = 200_000.0
MIN_ZOOM, MAX_ZOOM = 0.08, 3.0
ZOOM_STEP = 1.15
DRAG_THRESHOLD = 3  # viewport pixels before a press becomes a drag
PX_PER_STEP = 6.0  # horizontal viewport pixels per step when scrubbing a number


@dataclass
class WireDrag:
    from_output: bool
    node_id: int  # the fixed end
    socket: str
    type: str
    item: WireItem
    detached: Link | None = None  # the link picked up from an input, if any
    target: tuple[int, str] | None = None  # (node, socket) under the cursor and accepted


@dataclass
class NodeDrag:
    press: QPointF
    press_vp: QPoint
    start: dict[int, tuple[float, float]]
    serial: int
    clicked: int
    moved: bool = False


@dataclass
class GroupDrag:
    group_id: int
    press: QPointF
    bounding: tuple[float, float, float, float]
    start: dict[int, tuple[float, float]]
    serial: int


@dataclass
class NumberDrag:
    node_id: int
    input: Input
    part: str
    start_value: Any
    press_vp: QPoint
    serial: int
    moved: bool = False


@dataclass
class Pan:
    last: QPoint
    extra: dict[str, Any] = field(default_factory=dict)
