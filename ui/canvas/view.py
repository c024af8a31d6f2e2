"""The canvas: a QGraphicsView that mirrors a `Graph` and turns gestures into undo commands.

Data flows one way. The view subscribes to `Graph.changed` and creates, updates or removes its items
for each `GraphEvent`; a gesture (dragging a wire, scrubbing a number, pressing Delete) builds a command
from `ui.commands` and pushes it on the undo stack, whose `redo()` edits the graph, whose notification
updates the items. Nothing in the scene keeps its own copy of a value, so the canvas cannot drift from
the model, and undo/redo, panels and file loading all redraw the canvas the same way.

Interaction is handled by the view rather than the items: `mousePressEvent` asks the node under the
cursor what was hit (`NodeItem.hit`) and starts one of a few drag modes (`ui.canvas.drags`: pan, move
nodes, move group, wire, number scrub); empty canvas falls through to Qt's rubber-band selection. The
view is assembled from one mixin per kind of interaction, so the code for what you see is in one place:

==================== ==========================================================================
module               what it handles
==================== ==========================================================================
``view``             the scene kept in sync with the graph, run state, painting, mouse/key dispatch
``wiring``           dragging, checking and dropping wires; reroutes inserted on a wire
``searching``        the node search popup and what a chosen node does
``editing``          inline editors, number scrubbing, combo/seed/context menus
``selection``        select, delete, copy/cut/paste/duplicate, bypass/mute, groups
``navigation``       fit, centre, wheel zoom
``drops``            files and images dropped or pasted, the Load Image file picker
==================== ==========================================================================

What the view adds on top of the model is run state only: per-node state/progress/elapsed/error,
result thumbnails and pre-run problem outlines, set by the run controller through the public methods
below and cleared by `clear_run_state()`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterable
from typing import Any

from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QUndoStack,
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
from graph_engine.node_spec import NodeRegistry
from graph_engine.reroute import reroute_origin
from graph_engine.validation import Problem
from ui import commands as cmds
from ui import mask_editor, theme
from ui.canvas.drags import DRAG_THRESHOLD, PX_PER_STEP, SCENE_HALF, GroupDrag, NodeDrag, NumberDrag, Pan, WireDrag
from ui.canvas.drops import DropsMixin
from ui.canvas.editing import EditingMixin
from ui.canvas.editors import InlineEditor
from ui.canvas.group_item import GroupItem
from ui.canvas.minimap import Minimap
from ui.canvas.navigation import NavigationMixin
from ui.canvas.node_item import NODE_Z, Hit, NodeItem
from ui.canvas.reroute import reroute_consumers
from ui.canvas.search import NodeSearchPopup
from ui.canvas.searching import SearchMixin
from ui.canvas.selection import SelectionMixin
from ui.canvas.wire_item import WireItem
from ui.canvas.wiring import WiringMixin
from ui.shortcuts import build_actions


class GraphView(WiringMixin, SearchMixin, EditingMixin, SelectionMixin, NavigationMixin, DropsMixin, QGraphicsView):
    """The node canvas for one graph. See the module docstring for how it stays in sync."""

    nodeSelectionChanged = Signal(list)
    sweepBatchRequested = Signal(int)  # an XY Sweep node's "Run Cells as Batch…" (the window runs it)

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
        self._pending_wire: WireDrag | None = None  # a wire dropped on empty canvas, waiting for a pick
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

    def add_node_at(self, type: str, scene_pos: QPointF | tuple[float, float]) -> int:
        """Add a node of `type` with its default values, top-left at `scene_pos` (one undo step)."""
        p = scene_pos if isinstance(scene_pos, QPointF) else QPointF(*scene_pos)
        command = cmds.add_node_command(self.graph, self.registry, type, (p.x(), p.y()))
        self.undo_stack.push(command)
        node_id = command.edits[0].record["id"]  # type: ignore[attr-defined]
        self.select_nodes([node_id])
        return int(node_id)

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
            self._mode = Pan(vp)
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
        self._mode = NodeDrag(sp, vp, {i: self.graph.nodes[i].pos for i in moving}, next(self._serials), nid)

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
        self._mode = GroupDrag(item.group_id, sp, group.bounding, inside, next(self._serials))

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
            self._mode = NumberDrag(nid, inp, hit.part, value, vp, next(self._serials))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        vp = event.position().toPoint()
        self._last_mouse_vp = vp
        mode = self._mode
        if isinstance(mode, Pan):
            delta = vp - mode.last
            mode.last = vp
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - delta.x())
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - delta.y())
            return
        sp = self.mapToScene(vp)
        if isinstance(mode, WireDrag):
            self._drag_wire(mode, sp, vp)
            return
        if isinstance(mode, NodeDrag):
            if not mode.moved and (vp - mode.press_vp).manhattanLength() < DRAG_THRESHOLD:
                return
            mode.moved = True
            d = sp - mode.press
            moves = {nid: (p[0] + d.x(), p[1] + d.y()) for nid, p in mode.start.items() if nid in self.graph.nodes}
            if moves:
                self.undo_stack.push(cmds.move_nodes_command(self.graph, moves, merge_key=("move", mode.serial)))
            return
        if isinstance(mode, GroupDrag):
            d = sp - mode.press
            x, y, w, h = mode.bounding
            moves = {nid: (p[0] + d.x(), p[1] + d.y()) for nid, p in mode.start.items() if nid in self.graph.nodes}
            self.undo_stack.push(
                cmds.move_group_command(
                    self.graph, mode.group_id, (x + d.x(), y + d.y(), w, h), moves, merge_key=("group", mode.serial)
                )
            )
            return
        if isinstance(mode, NumberDrag):
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
        if isinstance(mode, Pan):
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor if self._space_down else Qt.CursorShape.ArrowCursor)
            return
        if isinstance(mode, WireDrag):
            self._drop_wire(mode, sp, vp)
            return
        if isinstance(mode, NodeDrag):
            toggling = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
            no_mods = not (event.modifiers() & toggling)
            if not mode.moved and no_mods and len(mode.start) > 1:
                self.select_nodes([mode.clicked])  # a plain click inside a multi-selection picks one
            return
        if isinstance(mode, GroupDrag):
            return
        if isinstance(mode, NumberDrag):
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
            if isinstance(self._mode, WireDrag):
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

    # ==== search ==================================================================================

    # ==== widgets and editors =====================================================================

    # ==== context menus ===========================================================================

    # ==== edit actions ============================================================================

    # ==== images for Load Image: choose, paste, drop ==============================================


def _safe_disconnect(graph: Graph, slot: Any) -> None:
    with contextlib.suppress(ValueError):
        graph.changed.disconnect(slot)
