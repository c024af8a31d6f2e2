"""The canvas: a QGraphicsView that mirrors a `Graph` and turns gestures into undo commands.

Data flows one way. The view subscribes to `Graph.changed` and creates, updates or removes its items
for each `GraphEvent`; a gesture (dragging a wire, scrubbing a number, pressing Delete) builds a command
from `ui.commands` and pushes it on the undo stack, whose `redo()` edits the graph, whose notification
updates the items. Nothing in the scene keeps its own copy of a value, so the canvas cannot drift from
the model, and undo/redo, panels and file loading all redraw the canvas the same way.

Interaction is handled here rather than in the items: `mousePressEvent` asks the node under the cursor
what was hit (`NodeItem.hit`) and starts one of a few drag modes (pan, move nodes, move group, wire,
number scrub); empty canvas falls through to Qt's rubber-band selection.

What the view adds on top of the model is run state only: per-node state/progress/elapsed/error,
result thumbnails and pre-run problem outlines, set by the run controller through the public methods
below and cleared by `clear_run_state()`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QEvent, QMimeData, QPoint, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QContextMenuEvent,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QUndoStack,
    QWheelEvent,
)
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView, QLabel, QMenu, QWidget

from graph_engine.model import (
    EVENT_GROUP_ADDED,
    EVENT_GROUP_CHANGED,
    EVENT_GROUP_REMOVED,
    EVENT_LINK_ADDED,
    EVENT_LINK_REMOVED,
    EVENT_NODE_ADDED,
    EVENT_NODE_CHANGED,
    EVENT_NODE_MOVED,
    EVENT_NODE_REMOVED,
    EVENT_RESET,
    EVENT_VALUE_CHANGED,
    Graph,
    GraphEvent,
    Link,
    NodeMode,
)
from graph_engine.node_spec import Input, NodeRegistry
from graph_engine.reroute import output_type, reroute_origin
from graph_engine.types import ANY
from graph_engine.validation import Problem, can_connect
from ui import commands as cmds
from ui import input_images, mask_editor, node_titles, theme
from ui.canvas.colours import group_colour_menu, node_colour_menu
from ui.canvas.editors import InlineEditor
from ui.canvas.group_item import GroupItem
from ui.canvas.minimap import Minimap
from ui.canvas.node_item import CHOOSE_FILE_TEXT, NODE_Z, Hit, NodeItem, format_value
from ui.canvas.reroute import adopt_widget_value_edits, insert_reroute_command, reroute_consumers
from ui.canvas.search import Candidate, NodeSearchPopup, all_candidates, compatible_specs
from ui.canvas.seed import EXTRA_KEY, SEED_MODES, seed_mode
from ui.canvas.wire_item import WireItem
from ui.clipboard import link_record, read_system_clipboard, selection_to_payload, write_system_clipboard
from ui.input_images import is_image_input
from ui.shortcuts import build_actions

SCENE_HALF = 200_000.0
MIN_ZOOM, MAX_ZOOM = 0.08, 3.0
ZOOM_STEP = 1.15
DRAG_THRESHOLD = 3  # viewport pixels before a press becomes a drag
PX_PER_STEP = 6.0  # horizontal viewport pixels per step when scrubbing a number


@dataclass
class _WireDrag:
    from_output: bool
    node_id: int  # the fixed end
    socket: str
    type: str
    item: WireItem
    detached: Link | None = None  # the link picked up from an input, if any
    target: tuple[int, str] | None = None  # (node, socket) under the cursor and accepted


@dataclass
class _NodeDrag:
    press: QPointF
    press_vp: QPoint
    start: dict[int, tuple[float, float]]
    serial: int
    clicked: int
    moved: bool = False


@dataclass
class _GroupDrag:
    group_id: int
    press: QPointF
    bounding: tuple[float, float, float, float]
    start: dict[int, tuple[float, float]]
    serial: int


@dataclass
class _NumberDrag:
    node_id: int
    input: Input
    part: str
    start_value: Any
    press_vp: QPoint
    serial: int
    moved: bool = False


@dataclass
class _Pan:
    last: QPoint
    extra: dict[str, Any] = field(default_factory=dict)


class GraphView(QGraphicsView):
    """The node canvas for one graph. See the module docstring for how it stays in sync."""

    nodeSelectionChanged = Signal(list)

    def __init__(
        self, graph: Graph, registry: NodeRegistry, undo_stack: QUndoStack, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.graph = graph
        self.registry = registry
        self.undo_stack = undo_stack
        # The scene is parented to the view: in Qt for Python a view does not own its scene (notes §3.5).
        self._scene = QGraphicsScene(self)
        self._scene.setSceneRect(-SCENE_HALF, -SCENE_HALF, 2 * SCENE_HALF, 2 * SCENE_HALF)
        self.setScene(self._scene)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.BoundingRectViewportUpdate)
        self.setCacheMode(QGraphicsView.CacheModeFlag.CacheBackground)
        self.setRenderHints(
            QPainter.RenderHint.Antialiasing
            | QPainter.RenderHint.TextAntialiasing
            | QPainter.RenderHint.SmoothPixmapTransform
        )
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.RubberBandDrag)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setFrameShape(QGraphicsView.Shape.NoFrame)
        self.setBackgroundBrush(theme.BACKGROUND)

        self._nodes: dict[int, NodeItem] = {}
        self._wires: dict[int, WireItem] = {}
        self._groups: dict[int, GroupItem] = {}
        self._node_links: dict[int, set[int]] = {}
        self._problem_nodes: set[int] = set()
        self._serials = itertools.count(1)
        self._gesture = 0  # bumps on every press/key, so scroll steps merge only within one gesture
        self._top_z = NODE_Z
        self._mode: object = None
        self._space_down = False
        self._last_mouse_vp: QPoint | None = None
        self._editor: InlineEditor | None = None
        self._pending_wire: _WireDrag | None = None  # a wire dropped on empty canvas, waiting for a pick
        self._search_scene_pos = QPointF()

        # Exposed for tests and the status bar: why the last hovered/dropped connection was refused.
        self.last_refusal_reason: str | None = None
        self.active_menu: QMenu | None = None

        self.search_popup = NodeSearchPopup(self.viewport())
        self.search_popup.chosen.connect(self._on_search_chosen)
        self.search_popup.closed.connect(self._on_search_closed)
        self._refusal_label = QLabel(self.viewport())
        self._refusal_label.setStyleSheet(
            f"background: {theme.REFUSAL_BG.name(theme.REFUSAL_BG.NameFormat.HexArgb)};"
            f" color: {theme.REFUSAL_TEXT.name()}; padding: 3px 6px; border-radius: 4px;"
        )
        self._refusal_label.hide()
        self._refusal_timer = QTimer(self)
        self._refusal_timer.setSingleShot(True)
        self._refusal_timer.timeout.connect(self._refusal_label.hide)

        self.canvas_actions: dict[str, QAction] = build_actions(
            self,
            {
                "canvas.search": self.open_search,
                "canvas.fit": self.fit_all,
                "canvas.zoom_in": lambda: self._zoom_by(1.25, None),
                "canvas.zoom_out": lambda: self._zoom_by(1 / 1.25, None),
                "edit.select_all": self.select_all,
                "edit.delete": self.delete_selected,
                "edit.copy": self.copy_selected,
                "edit.cut": self.cut_selected,
                "edit.paste": self.paste,
                "edit.duplicate": self.duplicate_selected,
                "edit.bypass": lambda: self.toggle_mode(NodeMode.BYPASS),
                "edit.mute": lambda: self.toggle_mode(NodeMode.MUTE),
                "edit.group": self.group_selected,
            },
            context=Qt.ShortcutContext.WidgetShortcut,
        )
        self.addActions(list(self.canvas_actions.values()))
        self.addAction(mask_editor.mask_editor_action(self))  # listed in the window's Edit menu

        self._scene.selectionChanged.connect(self._emit_selection)
        self._link_dst: dict[int, int] = {}  # link id -> the node it feeds, still known once the link is gone
        graph.changed.connect(self._on_graph_event)
        # The graph outlives the view; stop listening when the C++ side goes away.
        slot = self._on_graph_event
        self.destroyed.connect(lambda *_: _safe_disconnect(graph, slot))
        self._rebuild()
        self.minimap = Minimap(self)  # the overview in the corner (ui.canvas.minimap)

    # ==== public API ==============================================================================

    def node_item(self, node_id: int) -> NodeItem:
        return self._nodes[node_id]

    def group_item(self, group_id: int) -> GroupItem:
        return self._groups[group_id]

    def wire_item(self, link_id: int) -> WireItem:
        return self._wires[link_id]

    def selected_node_ids(self) -> list[int]:
        return sorted(i.node_id for i in self._scene.selectedItems() if isinstance(i, NodeItem))

    def select_nodes(self, node_ids: list[int]) -> None:
        self._scene.clearSelection()
        for nid in node_ids:
            if nid in self._nodes:
                self._nodes[nid].setSelected(True)

    def add_node_at(self, type: str, scene_pos: QPointF | tuple[float, float]) -> int:
        """Add a node of `type` with its default values, top-left at `scene_pos` (one undo step)."""
        p = scene_pos if isinstance(scene_pos, QPointF) else QPointF(*scene_pos)
        command = cmds.add_node_command(self.graph, self.registry, type, (p.x(), p.y()))
        self.undo_stack.push(command)
        node_id = command.edits[0].record["id"]  # type: ignore[attr-defined]
        self.select_nodes([node_id])
        return int(node_id)

    def insert_reroute(self, link_id: int, scene_pos: QPointF) -> int:
        """Put a Reroute on a wire, centred at `scene_pos` (double-click on the wire); one undo step."""
        command = insert_reroute_command(self.graph, self.registry, link_id, (scene_pos.x(), scene_pos.y()))
        self.undo_stack.push(command)
        node_id = int(command.edits[0].record["id"])  # type: ignore[attr-defined]
        self.select_nodes([node_id])
        return node_id

    def set_node_state(
        self,
        node_id: int,
        state: str,
        *,
        progress: tuple[int, int] | None = None,
        elapsed: float | None = None,
        message: str | None = None,
    ) -> None:
        """Show a node's run state: "queued", "running", "cached", "done", "error" or "" (none)."""
        item = self._nodes.get(node_id)
        if item is None:
            return  # the node was deleted while the run went on
        item.set_run_state(state, progress, elapsed, message)
        self._update_wires_of(node_id)

    def set_node_images(self, node_id: int, images: list[QImage]) -> None:
        """Show result images inside a node (Save/Preview); the node grows to fit the first one."""
        item = self._nodes.get(node_id)
        if item is None:
            return
        item.set_images(images)
        self._update_wires_of(node_id)

    def set_problems(self, problems: list[Problem]) -> None:
        """Outline nodes that have problems (cosmetic pen, visible at any zoom); tooltips list them."""
        by_node: dict[int, list[str]] = {}
        for p in problems:
            if p.node_id is not None:
                text = f"{p.input}: {p.message}" if p.input else p.message
                by_node.setdefault(p.node_id, []).append(text)
        for nid in self._problem_nodes - set(by_node):
            if nid in self._nodes:
                self._nodes[nid].set_problems([])
        for nid, messages in by_node.items():
            if nid in self._nodes:
                self._nodes[nid].set_problems(messages)
        self._problem_nodes = {nid for nid in by_node if nid in self._nodes}
        self.viewport().update()

    def problem_node_ids(self) -> set[int]:
        return set(self._problem_nodes)

    def clear_run_state(self) -> None:
        """Forget run states, progress, errors and problem outlines (result images stay until replaced)."""
        for item in self._nodes.values():
            if item.run_state or item.progress or item.elapsed is not None or item.message:
                item.set_run_state("", None, None, None)
        self.set_problems([])

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

    # ==== model -> items ==========================================================================

    def _rebuild(self) -> None:
        self._close_transients()
        self._nodes.clear()
        self._wires.clear()
        self._groups.clear()
        self._node_links.clear()
        self._problem_nodes.clear()
        self._scene.clear()
        linked: dict[int, set[str]] = {}
        for lk in self.graph.links.values():
            linked.setdefault(lk.dst_node, set()).add(lk.dst_input)
            self._node_links.setdefault(lk.src_node, set()).add(lk.id)
            self._node_links.setdefault(lk.dst_node, set()).add(lk.id)
        for group in self.graph.groups.values():
            self._add_group_item(group.id)
        for nid in self.graph.nodes:
            self._add_node_item(nid, linked.get(nid, set()))
        for lk in self.graph.links.values():
            self._add_wire_item(lk)

    def _add_node_item(self, node_id: int, linked: set[str] | None = None) -> None:
        node = self.graph.nodes[node_id]
        item = NodeItem(self.graph, node_id, self.registry.get(node.type), linked=linked, registry=self.registry)
        self._nodes[node_id] = item
        self._scene.addItem(item)

    def _add_wire_item(self, lk: Link) -> None:
        self._link_dst[lk.id] = lk.dst_node
        wire = WireItem(lk.id, lk.type)
        wire.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._wires[lk.id] = wire
        self._scene.addItem(wire)
        self._place_wire(lk.id)

    def _add_group_item(self, group_id: int) -> None:
        item = GroupItem(self.graph.groups[group_id])
        self._groups[group_id] = item
        self._scene.addItem(item)

    def _place_wire(self, link_id: int) -> None:
        lk = self.graph.links.get(link_id)
        wire = self._wires.get(link_id)
        if lk is None or wire is None:
            return
        src, dst = self._nodes.get(lk.src_node), self._nodes.get(lk.dst_node)
        if src is None or dst is None:
            return
        wire.set_ends(src.output_pos(lk.src_output), dst.input_pos(lk.dst_input))
        wire.set_dimmed(self.graph.nodes[lk.dst_node].mode == NodeMode.MUTE)

    def _update_wires_of(self, node_id: int) -> None:
        for lid in self._node_links.get(node_id, ()):
            self._place_wire(lid)

    def _mark_stale(self, node_ids: Iterable[int]) -> None:
        """An edit made these nodes' results (and everything downstream) describe another graph: drop their
        done/cached/error badges. Nodes of a run in progress keep theirs; its events update them."""
        todo = [nid for nid in node_ids if nid in self.graph.nodes]
        seen: set[int] = set()
        while todo:
            nid = todo.pop()
            if nid in seen:
                continue
            seen.add(nid)
            item = self._nodes.get(nid)
            if item is not None and item.run_state not in ("running", "queued") and (item.run_state or item.message):
                item.set_run_state("", None, None, None)
            todo.extend(lk.dst_node for lk in self.graph.links_from(nid))

    def _is_stepping_seed(self, ev: GraphEvent) -> bool:
        """A seed with a control (randomize, increment...) moves on after every run by design; that keeps
        the last run's badges, which describe the run just made."""
        item = self._nodes.get(ev.ids[0]) if ev.ids else None
        spec = item.spec if item is not None else None
        inp = spec.input(ev.key) if spec is not None and ev.key else None
        return bool(inp is not None and inp.control_after_generate)

    def _on_graph_event(self, ev: GraphEvent) -> None:
        kind = ev.kind
        if kind == EVENT_VALUE_CHANGED and not self._is_stepping_seed(ev):
            self._mark_stale(ev.ids)
        elif kind == EVENT_LINK_ADDED:
            self._mark_stale(self.graph.links[lid].dst_node for lid in ev.ids if lid in self.graph.links)
        elif kind == EVENT_LINK_REMOVED:
            self._mark_stale(self._link_dst.pop(lid) for lid in ev.ids if lid in self._link_dst)
        elif kind == EVENT_NODE_CHANGED and ev.key == "mode":  # bypass/mute change what downstream gets
            self._mark_stale(ev.ids)
        if kind == EVENT_NODE_MOVED:
            for nid in ev.ids:
                item = self._nodes.get(nid)
                if item is not None:
                    item.setPos(QPointF(*self.graph.nodes[nid].pos))
                    self._update_wires_of(nid)
                    if nid in self._problem_nodes:
                        self.viewport().update()
        elif kind == EVENT_VALUE_CHANGED:
            for nid in ev.ids:
                if nid in self._nodes:
                    self._nodes[nid].value_changed(ev.key)
                    self._update_wires_of(nid)
                    if self._nodes[nid].is_value_source:
                        for consumer in reroute_consumers(self.graph, nid):
                            if consumer in self._nodes:
                                self._nodes[consumer].update()
        elif kind == EVENT_NODE_CHANGED:
            for nid in ev.ids:
                if nid in self._nodes:
                    self._nodes[nid].refresh()
                    self._update_wires_of(nid)
        elif kind == EVENT_NODE_ADDED:
            for nid in ev.ids:
                self._add_node_item(nid)
        elif kind == EVENT_NODE_REMOVED:
            for nid in ev.ids:
                item = self._nodes.pop(nid, None)
                if item is not None:
                    self._scene.removeItem(item)
                self._node_links.pop(nid, None)
                self._problem_nodes.discard(nid)
        elif kind == EVENT_LINK_ADDED:
            for lid in ev.ids:
                lk = self.graph.links[lid]
                self._node_links.setdefault(lk.src_node, set()).add(lid)
                self._node_links.setdefault(lk.dst_node, set()).add(lid)
                self._refresh_link_ends(lk)
                self._add_wire_item(lk)
        elif kind == EVENT_LINK_REMOVED:
            for lid in ev.ids:
                wire = self._wires.pop(lid, None)
                if wire is not None:
                    self._scene.removeItem(wire)
                for nid, links in list(self._node_links.items()):
                    if lid in links:
                        links.discard(lid)
                        item = self._nodes.get(nid)
                        if item is not None and (item.spec is None or nid in self.graph.nodes):
                            item.refresh()
                            self._update_wires_of(nid)
        elif kind in (EVENT_GROUP_ADDED, EVENT_GROUP_CHANGED, EVENT_GROUP_REMOVED):
            for gid in ev.ids:
                item = self._groups.get(gid)
                if kind == EVENT_GROUP_REMOVED:
                    if item is not None:
                        self._scene.removeItem(item)
                        del self._groups[gid]
                elif item is None:
                    self._add_group_item(gid)
                else:
                    item.refresh(self.graph.groups[gid])
        elif kind == EVENT_RESET:
            self._rebuild()

    def _refresh_link_ends(self, lk: Link) -> None:
        for nid in (lk.dst_node, lk.src_node):
            item = self._nodes.get(nid)
            if item is not None and (nid == lk.dst_node or item.spec is None or item.is_value_source):
                item.refresh()
                self._update_wires_of(nid)
        # A Primitive behind reroutes takes the shape of the widget it now reaches.
        origin = reroute_origin(self.graph, lk.src_node, lk.src_output)
        item = self._nodes.get(origin[0]) if origin is not None else None
        if item is not None and item.is_value_source and origin is not None and origin[0] != lk.src_node:
            item.refresh()
            self._update_wires_of(origin[0])

    def _emit_selection(self) -> None:
        self.nodeSelectionChanged.emit(self.selected_node_ids())

    # ==== painting ================================================================================

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        """A grid, drawn only over the exposed `rect`; fine lines fade out when zoomed out."""
        painter.fillRect(rect, theme.BACKGROUND)
        scale = self.zoom()
        step = theme.GRID_STEP
        major = step * theme.GRID_MAJOR_EVERY
        if scale * step >= 7:
            self._grid(painter, rect, step, theme.GRID_MINOR, skip=major)
        if scale * major >= 10:
            self._grid(painter, rect, major, theme.GRID_MAJOR)

    @staticmethod
    def _grid(painter: QPainter, rect: QRectF, step: float, color: Any, skip: float = 0.0) -> None:
        painter.setPen(theme.pen(color.name(), 1.0, True))
        left = math.floor(rect.left() / step) * step
        top = math.floor(rect.top() / step) * step
        lines = []
        x = left
        while x <= rect.right():
            if not skip or abs(math.remainder(x, skip)) > 1e-6:
                lines.append((QPointF(x, rect.top()), QPointF(x, rect.bottom())))
            x += step
        y = top
        while y <= rect.bottom():
            if not skip or abs(math.remainder(y, skip)) > 1e-6:
                lines.append((QPointF(rect.left(), y), QPointF(rect.right(), y)))
            y += step
        for a, b in lines:
            painter.drawLine(a, b)

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        """Problem outlines: drawn here with a cosmetic pen so zooming out never thins them away."""
        if not self._problem_nodes:
            return
        painter.setPen(theme.problem_pen())
        painter.setBrush(Qt.BrushStyle.NoBrush)
        margin = (theme.PROBLEM_PEN_WIDTH + 1) / max(self.zoom(), 1e-3)
        for nid in self._problem_nodes:
            item = self._nodes.get(nid)
            if item is None:
                continue
            r = item.mapRectToScene(item.layout.rect).adjusted(-margin, -margin, margin, margin)
            if r.intersects(rect):
                painter.drawRoundedRect(r, theme.CORNER + margin, theme.CORNER + margin)

    # ==== hit testing =============================================================================

    def _hit(self, scene_pos: QPointF) -> tuple[NodeItem | GroupItem | None, Hit | None]:
        """The node (and part of it) or group title under a scene point; sockets win over bodies."""
        r = theme.SOCKET_HIT
        area = QRectF(scene_pos.x() - r, scene_pos.y() - r, 2 * r, 2 * r)
        group: GroupItem | None = None
        for item in self._scene.items(area, Qt.ItemSelectionMode.IntersectsItemBoundingRect):
            if isinstance(item, NodeItem):
                hit = item.hit(scene_pos)
                if hit is not None:
                    return item, hit
            elif (
                isinstance(item, GroupItem)
                and group is None
                and item.mapRectToScene(item.title_rect()).contains(scene_pos)
            ):
                group = item
        return group, None

    def _socket_at(self, scene_pos: QPointF, want_output: bool) -> tuple[int, str] | None:
        r = theme.SOCKET_HIT * 1.4
        area = QRectF(scene_pos.x() - r, scene_pos.y() - r, 2 * r, 2 * r)
        for item in self._scene.items(area, Qt.ItemSelectionMode.IntersectsItemBoundingRect):
            if isinstance(item, NodeItem):
                hit = item.hit(scene_pos, socket_radius=r)
                if hit is not None and hit.kind == ("output" if want_output else "input"):
                    return item.node_id, hit.key
        return None

    def _wire_at(self, scene_pos: QPointF) -> WireItem | None:
        for item in self._scene.items(scene_pos):
            if isinstance(item, WireItem) and item.link_id is not None:
                return item
        return None

    # ==== mouse ===================================================================================

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self._gesture += 1
        self._close_transients()
        vp = event.position().toPoint()
        sp = self.mapToScene(vp)
        button = event.button()
        item, hit = self._hit(sp)
        pan_mod = self._space_down or bool(event.modifiers() & Qt.KeyboardModifier.AltModifier)
        if button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and pan_mod and item is None):
            self._mode = _Pan(vp)
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        if button == Qt.MouseButton.RightButton:
            event.accept()  # the context menu event follows
            return
        if button != Qt.MouseButton.LeftButton:
            super().mousePressEvent(event)
            return
        if isinstance(item, NodeItem) and hit is not None:
            self._press_node(item, hit, sp, vp, event.modifiers())
            event.accept()
            return
        if isinstance(item, GroupItem):
            self._press_group(item, sp, event.modifiers())
            event.accept()
            return
        super().mousePressEvent(event)

    def _press_node(self, item: NodeItem, hit: Hit, sp: QPointF, vp: QPoint, mods: Qt.KeyboardModifier) -> None:
        nid = item.node_id
        if hit.kind == "output":
            self._start_wire(True, nid, hit.key, sp)
            return
        if hit.kind == "input":
            existing = self.graph.link_into(nid, hit.key)
            if existing is not None:
                # pick up the wire: it now hangs from its source, and where it is dropped decides
                self._start_wire(True, existing.src_node, existing.src_output, sp, detached=existing)
            else:
                self._start_wire(False, nid, hit.key, sp)
            return
        if hit.kind == "control":
            self._open_seed_menu(item, hit.key)
            return
        if hit.kind == "button":
            self.choose_image(nid, hit.key)
            return
        if hit.kind == "widget" and not item.note:
            self._press_widget(item, hit, vp)
            return
        # title or body: select and start moving
        self._top_z += 0.001
        item.setZValue(self._top_z)
        if mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier):
            if mods & Qt.KeyboardModifier.ControlModifier:
                item.setSelected(not item.isSelected())
            else:
                item.setSelected(True)
        elif not item.isSelected():
            self.select_nodes([nid])
        moving = [i for i in self.selected_node_ids() if i in self.graph.nodes]
        self._mode = _NodeDrag(sp, vp, {i: self.graph.nodes[i].pos for i in moving}, next(self._serials), nid)

    def _press_group(self, item: GroupItem, sp: QPointF, mods: Qt.KeyboardModifier) -> None:
        if not (mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)):
            self._scene.clearSelection()
        item.setSelected(True)
        group = self.graph.groups[item.group_id]
        gx, gy, gw, gh = group.bounding
        frame = QRectF(gx, gy, gw, gh)
        inside = {
            nid: n.pos
            for nid, n in self.graph.nodes.items()
            if nid in self._nodes and frame.contains(self._nodes[nid].mapRectToScene(self._nodes[nid].layout.rect))
        }
        self._mode = _GroupDrag(item.group_id, sp, group.bounding, inside, next(self._serials))

    def _press_widget(self, item: NodeItem, hit: Hit, vp: QPoint) -> None:
        nid = item.node_id
        row = item.layout.widgets[hit.key]
        inp = row.input
        value = self.graph.nodes[nid].values.get(inp.id, inp.default)
        if inp.type == "BOOLEAN":
            self.undo_stack.push(cmds.set_value_command(self.graph, nid, inp.id, not bool(value)))
        elif inp.type == "COMBO":
            self._open_combo_menu(item, inp, value)
        elif inp.type == "STRING":
            self._edit_text(item, inp)
        elif inp.type in ("INT", "FLOAT"):
            self._mode = _NumberDrag(nid, inp, hit.part, value, vp, next(self._serials))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        vp = event.position().toPoint()
        self._last_mouse_vp = vp
        mode = self._mode
        if isinstance(mode, _Pan):
            delta = vp - mode.last
            mode.last = vp
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - delta.x())
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - delta.y())
            return
        sp = self.mapToScene(vp)
        if isinstance(mode, _WireDrag):
            self._drag_wire(mode, sp, vp)
            return
        if isinstance(mode, _NodeDrag):
            if not mode.moved and (vp - mode.press_vp).manhattanLength() < DRAG_THRESHOLD:
                return
            mode.moved = True
            d = sp - mode.press
            moves = {nid: (p[0] + d.x(), p[1] + d.y()) for nid, p in mode.start.items() if nid in self.graph.nodes}
            if moves:
                self.undo_stack.push(cmds.move_nodes_command(self.graph, moves, merge_key=("move", mode.serial)))
            return
        if isinstance(mode, _GroupDrag):
            d = sp - mode.press
            x, y, w, h = mode.bounding
            moves = {nid: (p[0] + d.x(), p[1] + d.y()) for nid, p in mode.start.items() if nid in self.graph.nodes}
            self.undo_stack.push(
                cmds.move_group_command(
                    self.graph, mode.group_id, (x + d.x(), y + d.y(), w, h), moves, merge_key=("group", mode.serial)
                )
            )
            return
        if isinstance(mode, _NumberDrag):
            dx = vp.x() - mode.press_vp.x()
            if not mode.moved and abs(dx) < DRAG_THRESHOLD:
                return
            mode.moved = True
            steps = int(dx / PX_PER_STEP)
            self._set_number(mode.node_id, mode.input, mode.start_value, steps, ("scrub", mode.serial))
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        mode = self._mode
        self._mode = None
        vp = event.position().toPoint()
        sp = self.mapToScene(vp)
        if isinstance(mode, _Pan):
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor if self._space_down else Qt.CursorShape.ArrowCursor)
            return
        if isinstance(mode, _WireDrag):
            self._drop_wire(mode, sp, vp)
            return
        if isinstance(mode, _NodeDrag):
            toggling = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
            no_mods = not (event.modifiers() & toggling)
            if not mode.moved and no_mods and len(mode.start) > 1:
                self.select_nodes([mode.clicked])  # a plain click inside a multi-selection picks one
            return
        if isinstance(mode, _GroupDrag):
            return
        if isinstance(mode, _NumberDrag):
            if not mode.moved:
                if mode.part == "dec":
                    self._set_number(mode.node_id, mode.input, mode.start_value, -1, None)
                elif mode.part == "inc":
                    self._set_number(mode.node_id, mode.input, mode.start_value, 1, None)
                else:
                    self._edit_number(mode.node_id, mode.input)
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        self._mode = None
        vp = event.position().toPoint()
        sp = self.mapToScene(vp)
        item, hit = self._hit(sp)
        if item is None:
            wire = self._wire_at(sp)
            if wire is None:
                self.open_search(vp)
            elif wire.link_id in self.graph.links:
                self.insert_reroute(wire.link_id, sp)
            return
        if isinstance(item, GroupItem):
            self._rename_group(item)
            return
        assert isinstance(item, NodeItem) and hit is not None
        if hit.kind == "title":
            self._rename_node(item)
        elif hit.kind == "widget" and item.note:
            self._edit_text(item, item.layout.widgets[hit.key].input)
        elif hit.kind == "widget":
            inp = item.layout.widgets[hit.key].input
            if inp.type in ("INT", "FLOAT"):
                self._close_transients()
                self._edit_number(item.node_id, inp)

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

    # ==== keys ====================================================================================

    def keyPressEvent(self, event: QKeyEvent) -> None:
        self._gesture += 1
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = True
            if self._mode is None:
                self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            event.accept()
            return
        if event.key() == Qt.Key.Key_Escape:
            if isinstance(self._mode, _WireDrag):
                self._cancel_wire(self._mode)
                self._mode = None
            self._close_transients()
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = False
            if self._mode is None:
                self.viewport().setCursor(Qt.CursorShape.ArrowCursor)
            event.accept()
            return
        super().keyReleaseEvent(event)

    def focusNextPrevChild(self, next: bool) -> bool:
        # Tab opens the node search (a canvas shortcut); it must not move focus away from the canvas.
        return False

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Leave:
            self._last_mouse_vp = None
        return super().event(event)

    # ==== wires ===================================================================================

    def _start_wire(
        self, from_output: bool, node_id: int, socket: str, sp: QPointF, detached: Link | None = None
    ) -> None:
        item = self._nodes[node_id]
        if from_output:
            spec = item.spec
            out = spec.output(socket) if spec else None
            typ = out.type if out else (detached.type if detached else "ANY")
        else:
            slot = item.layout.inputs.get(socket)
            typ = slot.type if slot else "ANY"
        wire = WireItem(None, typ, dragging=True)
        wire.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._scene.addItem(wire)
        drag = _WireDrag(from_output, node_id, socket, typ, wire, detached)
        if detached is not None and detached.id in self._wires:
            self._wires[detached.id].hide()
        self.last_refusal_reason = None
        self._mode = drag
        self._drag_wire(drag, sp, self.mapFromScene(sp))

    def _anchor(self, drag: _WireDrag) -> QPointF:
        item = self._nodes[drag.node_id]
        return item.output_pos(drag.socket) if drag.from_output else item.input_pos(drag.socket)

    def _verdict(self, drag: _WireDrag, target: tuple[int, str]) -> tuple[bool, str]:
        if drag.from_output:
            src, out, (dst, inp) = drag.node_id, drag.socket, target
        else:
            (src, out), dst, inp = target, drag.node_id, drag.socket
        v = can_connect(self.graph, self.registry, src, out, dst, inp)
        return bool(v), v.reason

    def _drag_wire(self, drag: _WireDrag, sp: QPointF, vp: QPoint) -> None:
        target = self._socket_at(sp, want_output=not drag.from_output)
        end = sp
        drag.target = None
        if target is not None:
            ok, reason = self._verdict(drag, target)
            if ok:
                drag.target = target
                tgt_item = self._nodes[target[0]]
                end = tgt_item.input_pos(target[1]) if drag.from_output else tgt_item.output_pos(target[1])
                self._show_refusal(None, vp)
            else:
                self._show_refusal(reason, vp)
        else:
            self._show_refusal(None, vp)
        anchor = self._anchor(drag)
        if drag.from_output:
            drag.item.set_ends(anchor, end)
        else:
            drag.item.set_ends(end, anchor)

    def _show_refusal(self, reason: str | None, vp: QPoint, *, linger_ms: int = 0) -> None:
        if reason is None:
            self.last_refusal_reason = None
            self._refusal_label.hide()
            return
        self.last_refusal_reason = reason
        self._refusal_label.setText(f"✕ {reason}")
        self._refusal_label.adjustSize()
        self._refusal_label.move(vp + QPoint(16, 12))
        self._refusal_label.show()
        self._refusal_label.raise_()
        if linger_ms:
            self._refusal_timer.start(linger_ms)

    def _cancel_wire(self, drag: _WireDrag) -> None:
        self._scene.removeItem(drag.item)
        if drag.detached is not None and drag.detached.id in self._wires:
            self._wires[drag.detached.id].show()

    def _drop_wire(self, drag: _WireDrag, sp: QPointF, vp: QPoint) -> None:
        self._drag_wire(drag, sp, vp)  # settle target and verdict at the release point
        self._cancel_wire(drag)
        target = self._socket_at(sp, want_output=not drag.from_output)
        if target is not None:
            if drag.target is None:
                self._show_refusal(self.last_refusal_reason, vp, linger_ms=1500)
                return
            self._refusal_label.hide()
            if drag.from_output:
                src, out, (dst, inp) = drag.node_id, drag.socket, drag.target
            else:
                (src, out), dst, inp = drag.target, drag.node_id, drag.socket
            det = drag.detached
            if det is not None and (det.dst_node, det.dst_input) == (dst, inp):
                return  # picked up and put back
            command = cmds.connect_command(
                self.graph, src, out, dst, inp, self._link_type(src, out, drag.type, dst, inp)
            )
            if det is not None:
                command.edits.insert(0, cmds.RemoveLink(link_record(det)))
                command.setText("Move connection")
            command.edits += adopt_widget_value_edits(self.graph, self.registry, src, out, dst, inp)
            self.undo_stack.push(command)
            return
        self._refusal_label.hide()
        if drag.detached is not None:
            self.undo_stack.push(cmds.disconnect_command(self.graph, [drag.detached.id]))
            return
        # dropped on empty canvas: offer the node types that fit, and wire the one picked
        self._pending_wire = drag
        self._search_scene_pos = sp
        candidates = compatible_specs(self.registry, drag.type, from_output=drag.from_output)
        self.search_popup.open(candidates, vp)

    def _link_type(self, src: int, out: str, fallback: str, dst: int | None = None, inp: str | None = None) -> str:
        spec = self.registry.get(self.graph.nodes[src].type)
        o = spec.output(out) if spec else None
        if o is not None and spec is not None and spec.virtual:
            # a reroute carries what feeds it; a primitive (or an unplugged reroute) what it feeds
            typ = output_type(self.graph, self.registry, src, out)
            dst_spec = self.registry.get(self.graph.nodes[dst].type) if dst is not None else None
            dst_inp = dst_spec.input(inp) if dst_spec is not None and inp is not None else None
            if typ == ANY and dst_inp is not None:
                typ = dst_inp.type
            return typ
        return o.type if o else fallback

    # ==== search ==================================================================================

    def open_search(self, vp: QPoint | None = None) -> None:
        """Open the add-node search at `vp` (default: the cursor, or the view centre)."""
        if self._editor is not None:
            return
        if vp is None:
            vp = self._last_mouse_vp or self.viewport().rect().center()
        self._pending_wire = None
        self._search_scene_pos = self.mapToScene(vp)
        self.search_popup.open(all_candidates(self.registry), vp)

    def _on_search_chosen(self, cand: Candidate) -> None:
        pos = self._search_scene_pos
        drag, self._pending_wire = self._pending_wire, None
        self.setFocus()
        if drag is None or cand.socket is None:
            self.add_node_at(cand.spec.type, pos)
            return
        if drag.from_output:
            place = (pos.x() + 20, pos.y() - theme.TITLE_HEIGHT - theme.ROW_HEIGHT / 2)
            spec_in = cand.spec.input(cand.socket)
            link = (drag.node_id, drag.socket, None, cand.socket, self._link_type(drag.node_id, drag.socket, drag.type))
            del spec_in
        else:
            place = (pos.x() - theme.NODE_MIN_WIDTH - 20, pos.y() - theme.TITLE_HEIGHT - theme.ROW_HEIGHT / 2)
            out = cand.spec.output(cand.socket)
            link = (None, cand.socket, drag.node_id, drag.socket, out.type if out else drag.type)
        command = cmds.add_connected_node_command(self.graph, self.registry, cand.spec.type, place, link)
        self.undo_stack.push(command)
        self.select_nodes([command.edits[0].record["id"]])  # type: ignore[attr-defined]

    def _on_search_closed(self) -> None:
        if not self.search_popup.isVisible():
            self.setFocus()

    # ==== widgets and editors =====================================================================

    def _set_number(self, node_id: int, inp: Input, start: Any, steps: int, merge_key: object) -> None:
        step = inp.step or (1 if inp.type == "INT" else 0.01)
        try:
            base = float(start)
        except (TypeError, ValueError):
            base = float(inp.default) if isinstance(inp.default, int | float) else 0.0
        value: float = base + steps * step
        if inp.min is not None:
            value = max(value, inp.min)
        if inp.max is not None:
            value = min(value, inp.max)
        new: int | float = round(value) if inp.type == "INT" else round(value, 10)
        if inp.type == "FLOAT" and inp.round:
            new = round(round(new / inp.round) * inp.round, 10)
        if new == self.graph.nodes[node_id].values.get(inp.id):
            return
        self.undo_stack.push(cmds.set_value_command(self.graph, node_id, inp.id, new, merge_key=merge_key))

    def _editor_rect(self, scene_rect: QRectF) -> Any:
        return self.mapFromScene(scene_rect).boundingRect()

    def _open_editor(
        self,
        scene_rect: QRectF,
        text: str,
        on_commit: Any,
        multiline: bool = False,
        owner: QRectF | None = None,
    ) -> None:
        """An inline editor over `scene_rect`, kept inside `owner` (the edited item's scene rect) and the
        viewport, so it never covers another node whose widgets the user may click next."""
        self._close_transients()
        bounds = self.viewport().rect()
        if owner is not None:
            bounds = bounds.intersected(self._editor_rect(owner))
        editor = InlineEditor(
            self.viewport(), self._editor_rect(scene_rect), text, on_commit, multiline=multiline, bounds=bounds
        )
        self._editor = editor
        editor.destroyed.connect(lambda *_: self._forget_editor(editor))

    def _forget_editor(self, editor: InlineEditor) -> None:
        if self._editor is editor:
            self._editor = None

    def _edit_number(self, node_id: int, inp: Input) -> None:
        item = self._nodes[node_id]
        value = self.graph.nodes[node_id].values.get(inp.id, inp.default)

        def commit(text: str) -> None:
            self._editor = None
            self.setFocus()
            try:
                number = float(text.strip().replace(",", "."))
            except ValueError:
                return
            if not math.isfinite(number) or node_id not in self.graph.nodes:
                return
            self._set_number(node_id, inp, number, 0, None)

        self._open_editor(
            item.widget_scene_rect(inp.id), format_value(inp, value), commit, owner=item.body_scene_rect()
        )

    def _edit_text(self, item: NodeItem, inp: Input) -> None:
        nid = item.node_id
        value = self.graph.nodes[nid].values.get(inp.id, inp.default)

        def commit(text: str) -> None:
            self._editor = None
            self.setFocus()
            if nid in self.graph.nodes and text != self.graph.nodes[nid].values.get(inp.id):
                self.undo_stack.push(cmds.set_value_command(self.graph, nid, inp.id, text))

        self._open_editor(
            item.widget_scene_rect(inp.id),
            str(value or ""),
            commit,
            multiline=inp.multiline,
            owner=item.body_scene_rect(),
        )

    def _rename_node(self, item: NodeItem) -> None:
        nid = item.node_id
        node = self.graph.nodes[nid]

        def commit(text: str) -> None:
            self._editor = None
            self.setFocus()
            title = text.strip() or None
            if nid in self.graph.nodes and title != self.graph.nodes[nid].title:
                self.undo_stack.push(cmds.set_title_command(self.graph, nid, title))

        self._open_editor(item.mapRectToScene(item.layout.title_rect), node.label, commit, owner=item.body_scene_rect())

    def _rename_group(self, item: GroupItem) -> None:
        gid = item.group_id

        def commit(text: str) -> None:
            self._editor = None
            self.setFocus()
            if gid in self.graph.groups and text != self.graph.groups[gid].title:
                self.undo_stack.push(cmds.update_group_command(self.graph, gid, title=text))

        self._open_editor(item.mapRectToScene(item.title_rect()), self.graph.groups[gid].title, commit)

    def _popup_menu(self, menu: QMenu, vp: QPoint) -> None:
        """Show a menu without blocking (tests and the event loop keep running); kept as `active_menu`."""
        self.active_menu = menu
        menu.aboutToHide.connect(lambda: QTimer.singleShot(0, lambda: self._forget_menu(menu)))
        menu.popup(self.viewport().mapToGlobal(vp))

    def _forget_menu(self, menu: QMenu) -> None:
        if self.active_menu is menu:
            self.active_menu = None
        menu.deleteLater()

    def _open_combo_menu(self, item: NodeItem, inp: Input, value: Any) -> None:
        nid = item.node_id
        menu = QMenu(self)
        choices = inp.choice_list()  # computed now: model files may have appeared since the last look
        if is_image_input(inp):
            menu.addAction(CHOOSE_FILE_TEXT, lambda: self.choose_image(nid, inp.id))
            menu.addAction("Open input folder", input_images.open_input_folder)
            menu.setToolTipsVisible(True)
            menu.setToolTip(input_images.folder_hint())
            menu.addSeparator()
        if not choices:
            empty = f"(no images in {input_images.input_dir()})" if is_image_input(inp) else "(nothing available)"
            menu.addAction(empty).setEnabled(False)
        for choice in choices:
            act = menu.addAction(choice)
            act.setCheckable(True)
            act.setChecked(choice == value)
            act.triggered.connect(
                lambda _c=False, c=choice: self.undo_stack.push(cmds.set_value_command(self.graph, nid, inp.id, c))
            )
        rect = item.widget_scene_rect(inp.id)
        self._popup_menu(menu, self.mapFromScene(rect.bottomLeft()))

    def _open_seed_menu(self, item: NodeItem, input_id: str) -> None:
        nid = item.node_id
        current = seed_mode(self.graph, nid)
        menu = QMenu(self)
        for mode in SEED_MODES:
            act = menu.addAction(mode)
            act.setCheckable(True)
            act.setChecked(mode == current)
            act.triggered.connect(
                lambda _c=False, m=mode: self.undo_stack.push(cmds.set_extra_command(self.graph, nid, EXTRA_KEY, m))
            )
        rect = item.mapRectToScene(item.layout.widgets[input_id].control_rect or item.layout.title_rect)
        self._popup_menu(menu, self.mapFromScene(rect.bottomLeft()))

    def _close_transients(self) -> None:
        if self._editor is not None:
            editor, self._editor = self._editor, None
            editor.commit()
        if self.search_popup.isVisible():
            self._pending_wire = None
            self.search_popup.close_popup()
        self._refusal_label.hide()

    # ==== context menus ===========================================================================

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        vp = event.pos()
        sp = self.mapToScene(vp)
        item, _hit = self._hit(sp)
        menu = QMenu(self)
        if isinstance(item, NodeItem):
            if not item.isSelected():
                self.select_nodes([item.node_id])
            for inp in input_images.image_inputs(item.spec):
                menu.addAction(
                    f"{CHOOSE_FILE_TEXT[:-1]} for {inp.display_name}…",
                    lambda i=inp.id: self.choose_image(item.node_id, i),
                )
            menu.addAction("Rename", lambda: self._rename_node(item))
            menu.addAction("Bypass", lambda: self.toggle_mode(NodeMode.BYPASS))
            menu.addAction("Mute", lambda: self.toggle_mode(NodeMode.MUTE))
            menu.addMenu(node_colour_menu(menu, self.graph, self.undo_stack, self.selected_node_ids()))
            if self.graph.nodes[item.node_id].type == mask_editor.LOAD_IMAGE:
                mask_editor.add_menu_entry(menu, self, item.node_id)
            menu.addSeparator()
            menu.addAction("Copy", self.copy_selected)
            menu.addAction("Duplicate", self.duplicate_selected)
            menu.addAction("Delete", self.delete_selected)
        elif isinstance(item, GroupItem):
            gid = item.group_id
            menu.addAction("Rename group", lambda: self._rename_group(item))
            selected = {i.group_id for i in self._scene.selectedItems() if isinstance(i, GroupItem)}
            gids = sorted(selected) if gid in selected else [gid]
            menu.addMenu(group_colour_menu(menu, self.graph, self.undo_stack, gids))
            menu.addAction("Delete group", lambda: self.undo_stack.push(cmds.remove_groups_command(self.graph, [gid])))
        elif (wire := self._wire_at(sp)) is not None and wire.link_id is not None:
            lid = wire.link_id
            menu.addAction("Delete link", lambda: self.undo_stack.push(cmds.disconnect_command(self.graph, [lid])))
        else:
            self._search_scene_pos = sp
            add = menu.addMenu("Add node")
            submenus: dict[str, QMenu] = {}
            for spec in self.registry:
                cat = spec.category or "misc"
                if cat not in submenus:
                    submenus[cat] = add.addMenu(cat)
                t = spec.type
                submenus[cat].addAction(node_titles.title(spec), lambda t=t: self.add_node_at(t, sp))
            menu.addSeparator()
            menu.addAction("Paste", self.paste)
            menu.addAction("Fit view", self.fit_all)
        self._popup_menu(menu, vp)
        event.accept()

    # ==== edit actions ============================================================================

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

    # ==== images for Load Image: choose, paste, drop ==============================================

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


def _safe_disconnect(graph: Graph, slot: Any) -> None:
    with contextlib.suppress(ValueError):
        graph.changed.disconnect(slot)
