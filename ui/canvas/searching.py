"""The node search popup: opened by Tab, a double-click or a wire dropped on empty canvas; the chosen node is
added (and wired when a wire asked for it).

A mixin of `ui.canvas.view.GraphView`: it uses the view's graph, registry, undo stack and items."""

from __future__ import annotations

from PySide6.QtCore import QPoint

from ui import commands as cmds
from ui import theme
from ui.canvas.search import Candidate, all_candidates


class SearchMixin:
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
