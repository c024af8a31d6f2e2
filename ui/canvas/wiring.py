"""Wires: dragging a wire from a socket, the accept/refuse verdict while it moves, and dropping it (connect,
replace, or open the search filtered by the wire's type).

A mixin of `ui.canvas.view.GraphView`: it uses the view's graph, registry, undo stack and items."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt

from graph_engine.model import Link
from graph_engine.reroute import output_type
from graph_engine.types import ANY
from graph_engine.validation import can_connect
from ui import commands as cmds
from ui.canvas.drags import WireDrag
from ui.canvas.reroute import adopt_widget_value_edits, insert_reroute_command
from ui.canvas.search import compatible_specs
from ui.canvas.wire_item import WireItem
from ui.clipboard import link_record


class WiringMixin:
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
        drag = WireDrag(from_output, node_id, socket, typ, wire, detached)
        if detached is not None and detached.id in self._wires:
            self._wires[detached.id].hide()
        self.last_refusal_reason = None
        self._mode = drag
        self._drag_wire(drag, sp, self.mapFromScene(sp))

    def _anchor(self, drag: WireDrag) -> QPointF:
        item = self._nodes[drag.node_id]
        return item.output_pos(drag.socket) if drag.from_output else item.input_pos(drag.socket)

    def _verdict(self, drag: WireDrag, target: tuple[int, str]) -> tuple[bool, str]:
        if drag.from_output:
            src, out, (dst, inp) = drag.node_id, drag.socket, target
        else:
            (src, out), dst, inp = target, drag.node_id, drag.socket
        v = can_connect(self.graph, self.registry, src, out, dst, inp)
        return bool(v), v.reason

    def _drag_wire(self, drag: WireDrag, sp: QPointF, vp: QPoint) -> None:
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

    def _cancel_wire(self, drag: WireDrag) -> None:
        self._scene.removeItem(drag.item)
        if drag.detached is not None and drag.detached.id in self._wires:
            self._wires[drag.detached.id].show()

    def _drop_wire(self, drag: WireDrag, sp: QPointF, vp: QPoint) -> None:
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

    def insert_reroute(self, link_id: int, scene_pos: QPointF) -> int:
        """Put a Reroute on a wire, centred at `scene_pos` (double-click on the wire); one undo step."""
        command = insert_reroute_command(self.graph, self.registry, link_id, (scene_pos.x(), scene_pos.y()))
        self.undo_stack.push(command)
        node_id = int(command.edits[0].record["id"])  # type: ignore[attr-defined]
        self.select_nodes([node_id])
        return node_id
