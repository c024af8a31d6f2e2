"""Editing values in place: number scrubbing and typing, text and title editors, the combo, seed and context
menus, and closing whatever is open.

A mixin of `ui.canvas.view.GraphView`: it uses the view's graph, registry, undo stack and items."""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QPoint, QRectF, QTimer
from PySide6.QtGui import QContextMenuEvent
from PySide6.QtWidgets import QMenu

from graph_engine.model import NodeMode
from graph_engine.node_spec import Input
from ui import commands as cmds
from ui import input_images, mask_editor, node_titles
from ui.canvas.colours import group_colour_menu, node_colour_menu
from ui.canvas.editors import InlineEditor
from ui.canvas.group_item import GroupItem
from ui.canvas.node_item import CHOOSE_FILE_TEXT, NodeItem, format_value
from ui.canvas.seed import EXTRA_KEY, SEED_MODES, seed_mode
from ui.input_images import is_image_input

XY_SWEEP = "XYSweep"  # its cells can run as batch jobs (ui.batch_run), one image file per cell
RUN_CELLS_TEXT = "Run Cells as Batch…"


class EditingMixin:
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
            if self.graph.nodes[item.node_id].type == XY_SWEEP:
                nid = item.node_id
                # after the menu has closed: the window answers with a modal dialog
                menu.addAction(
                    RUN_CELLS_TEXT,
                    lambda: QTimer.singleShot(0, lambda: self.sweepBatchRequested.emit(nid)),  # type: ignore[attr-defined]
                )
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
