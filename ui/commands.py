"""Undoable edits of the graph: every change a person makes goes through a command here.

A `GraphCommand` is a `QUndoCommand` holding a list of small *edits* (`AddNode`, `RemoveLink`,
`SetValue`, ...). Each edit knows how to apply itself to the `Graph` and how to revert itself, using
only `Graph`'s public methods; the canvas then redraws from the graph's notifications, so a command
never touches an item. Compound gestures (paste, delete with the links it cascades to, dropping a wire
onto a connected input) are one command with several edits, so they undo as one step.

Exactness matters: undo must give back the very same serialized graph, including the id counters
(`next_node_id`, ...), or a later save would differ from the file the user had. `GraphCommand` snapshots
the counters before applying and restores them after reverting; removed nodes and links are re-added
under their old ids from deep-copied records (`ui.clipboard.node_record`).

Drags (moving nodes, scrubbing a number) push a command per mouse move with the same `merge_key`;
`mergeWith` folds them, keeping the first "before" and the last "after", so a drag is one undo step.

The factory functions at the bottom (`add_node_command`, `connect_command`, ...) are the API panels
and the canvas use; they decide ids up front (from the graph's counters) so redo re-creates the same
ids the first application did.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtGui import QUndoCommand

from graph_engine.comfy.common import COMFY_KEY
from graph_engine.model import (
    Graph,
    NodeMode,
)
from graph_engine.node_spec import NodeRegistry
from ui import node_titles
from ui.clipboard import link_record, node_record, payload_to_records, restore_link, restore_node


class _Missing:
    """A singleton that survives `copy.deepcopy` (commands deep-copy old values, and compare with `is`)."""

    def __repr__(self) -> str:
        return "ABSENT"

    def __copy__(self) -> _Missing:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Missing:
        return self


# ComfyUI's node body colour, kept where the ComfyUI importer keeps it: `node.extra["comfy"]["bgcolor"]`.
COMFY_BGCOLOR = "bgcolor"

# A key that was not in `node.values` / `node.extra` before the edit; reverting removes it again.
ABSENT: Any = _Missing()


# ---- edits --------------------------------------------------------------------------------------


class Edit:
    """One reversible change. `merge_target` identifies what a mergeable edit changes."""

    def apply(self, graph: Graph) -> None:
        raise NotImplementedError

    def revert(self, graph: Graph) -> None:
        raise NotImplementedError

    merge_target: tuple[Any, ...] | None = None

    def merged(self, later: Edit) -> Edit:
        """This edit's "before" with `later`'s "after" (only for edits with a `merge_target`)."""
        raise NotImplementedError

    def is_noop(self) -> bool:
        return False


@dataclass
class AddNode(Edit):
    record: dict[str, Any]

    def apply(self, graph: Graph) -> None:
        restore_node(graph, self.record)

    def revert(self, graph: Graph) -> None:
        graph.remove_node(self.record["id"])


@dataclass
class RemoveNode(Edit):
    """Removes a node with no links left (a command removes its links first, as separate edits)."""

    record: dict[str, Any]

    def apply(self, graph: Graph) -> None:
        graph.remove_node(self.record["id"])

    def revert(self, graph: Graph) -> None:
        restore_node(graph, self.record)


@dataclass
class AddLink(Edit):
    record: dict[str, Any]

    def apply(self, graph: Graph) -> None:
        restore_link(graph, self.record)

    def revert(self, graph: Graph) -> None:
        graph.remove_link(self.record["id"])


@dataclass
class RemoveLink(Edit):
    record: dict[str, Any]

    def apply(self, graph: Graph) -> None:
        graph.remove_link(self.record["id"])

    def revert(self, graph: Graph) -> None:
        restore_link(graph, self.record)


@dataclass
class MoveNode(Edit):
    node_id: int
    old: tuple[float, float]
    new: tuple[float, float]

    def apply(self, graph: Graph) -> None:
        graph.move_node(self.node_id, self.new)

    def revert(self, graph: Graph) -> None:
        graph.move_node(self.node_id, self.old)

    @property
    def merge_target(self) -> tuple[Any, ...]:  # type: ignore[override]
        return ("move", self.node_id)

    def merged(self, later: Edit) -> Edit:
        assert isinstance(later, MoveNode)
        return MoveNode(self.node_id, self.old, later.new)

    def is_noop(self) -> bool:
        return self.old == self.new


@dataclass
class SetValue(Edit):
    node_id: int
    key: str
    old: Any
    new: Any

    def apply(self, graph: Graph) -> None:
        graph.set_value(self.node_id, self.key, copy.deepcopy(self.new))

    def revert(self, graph: Graph) -> None:
        if self.old is ABSENT:
            graph.unset_value(self.node_id, self.key)
        else:
            graph.set_value(self.node_id, self.key, copy.deepcopy(self.old))

    @property
    def merge_target(self) -> tuple[Any, ...]:  # type: ignore[override]
        return ("value", self.node_id, self.key)

    def merged(self, later: Edit) -> Edit:
        assert isinstance(later, SetValue)
        return SetValue(self.node_id, self.key, self.old, later.new)

    def is_noop(self) -> bool:
        return self.old == self.new


@dataclass
class SetExtra(Edit):
    """A key of `node.extra` (UI-only settings saved with the node, e.g. the seed control)."""

    node_id: int
    key: str
    old: Any
    new: Any

    def _set(self, graph: Graph, value: Any) -> None:
        graph.set_extra(self.node_id, self.key, None if value is ABSENT else copy.deepcopy(value))

    def apply(self, graph: Graph) -> None:
        self._set(graph, self.new)

    def revert(self, graph: Graph) -> None:
        self._set(graph, self.old)


@dataclass
class SetTitle(Edit):
    node_id: int
    old: str | None
    new: str | None

    def apply(self, graph: Graph) -> None:
        graph.set_title(self.node_id, self.new)

    def revert(self, graph: Graph) -> None:
        graph.set_title(self.node_id, self.old)


@dataclass
class SetMode(Edit):
    node_id: int
    old: str
    new: str

    def apply(self, graph: Graph) -> None:
        graph.set_mode(self.node_id, self.new)

    def revert(self, graph: Graph) -> None:
        graph.set_mode(self.node_id, self.old)


@dataclass
class SetColor(Edit):
    """A node's title colour (`node.color`); its body colour travels as a `SetExtra` of "comfy"."""

    node_id: int
    old: str | None
    new: str | None

    def apply(self, graph: Graph) -> None:
        graph.set_color(self.node_id, self.new)

    def revert(self, graph: Graph) -> None:
        graph.set_color(self.node_id, self.old)


@dataclass
class AddGroup(Edit):
    group_id: int
    title: str
    bounding: tuple[float, float, float, float]
    color: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def apply(self, graph: Graph) -> None:
        graph.add_group(self.title, self.bounding, id=self.group_id, color=self.color, extra=copy.deepcopy(self.extra))

    def revert(self, graph: Graph) -> None:
        graph.remove_group(self.group_id)


@dataclass
class RemoveGroup(Edit):
    inverse: AddGroup

    def apply(self, graph: Graph) -> None:
        self.inverse.revert(graph)

    def revert(self, graph: Graph) -> None:
        self.inverse.apply(graph)


@dataclass
class UpdateGroup(Edit):
    group_id: int
    old: dict[str, Any]
    new: dict[str, Any]

    def apply(self, graph: Graph) -> None:
        graph.update_group(self.group_id, **copy.deepcopy(self.new))

    def revert(self, graph: Graph) -> None:
        graph.update_group(self.group_id, **copy.deepcopy(self.old))

    @property
    def merge_target(self) -> tuple[Any, ...]:  # type: ignore[override]
        return ("group", self.group_id, tuple(sorted(self.new)))

    def merged(self, later: Edit) -> Edit:
        assert isinstance(later, UpdateGroup)
        return UpdateGroup(self.group_id, self.old, later.new)

    def is_noop(self) -> bool:
        return self.old == self.new


# ---- the undo command ---------------------------------------------------------------------------

_MERGE_ID = 0x5D6


class GraphCommand(QUndoCommand):
    """A named list of edits applied in order and reverted in reverse, restoring the id counters."""

    def __init__(self, graph: Graph, text: str, edits: list[Edit], *, merge_key: object = None) -> None:
        super().__init__(text)
        self.graph = graph
        self.edits = list(edits)
        self.merge_key = merge_key
        self._counters: tuple[int, int, int] | None = None

    def redo(self) -> None:
        g = self.graph
        self._counters = (g.next_node_id, g.next_link_id, g.next_group_id)
        for edit in self.edits:
            edit.apply(g)

    def undo(self) -> None:
        g = self.graph
        for edit in reversed(self.edits):
            edit.revert(g)
        if self._counters is not None:
            g.next_node_id, g.next_link_id, g.next_group_id = self._counters

    def id(self) -> int:
        return _MERGE_ID if self.merge_key is not None else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        """Fold a later step of the same drag into this one (same `merge_key`, only mergeable edits)."""
        if not isinstance(other, GraphCommand) or other.merge_key is None or other.merge_key != self.merge_key:
            return False
        if any(e.merge_target is None for e in self.edits + other.edits):
            return False
        by_target = {e.merge_target: i for i, e in enumerate(self.edits)}
        for later in other.edits:
            i = by_target.get(later.merge_target)
            if i is None:
                by_target[later.merge_target] = len(self.edits)
                self.edits.append(later)
            else:
                self.edits[i] = self.edits[i].merged(later)
        if all(e.is_noop() for e in self.edits):
            self.setObsolete(True)
        return True


# ---- factories ------------------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def new_node_record(
    graph: Graph,
    registry: NodeRegistry,
    type: str,
    pos: tuple[float, float],
    *,
    node_id: int | None = None,
    values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A record for a fresh node of `type` with the spec's default values."""
    spec = registry.get(type)
    defaults = spec.default_values() if spec is not None else {}
    defaults.update(values or {})
    return {
        "id": graph.next_node_id if node_id is None else node_id,
        "type": type,
        "values": defaults,
        "pos": (float(pos[0]), float(pos[1])),
        "size": None,
        "title": None,
        "mode": NodeMode.ACTIVE.value,
        "color": None,
        "flags": {},
        "extra": {},
    }


def add_node_command(
    graph: Graph, registry: NodeRegistry, type: str, pos: tuple[float, float], values: dict[str, Any] | None = None
) -> GraphCommand:
    rec = new_node_record(graph, registry, type, pos, values=values)
    spec = registry.get(type)
    return GraphCommand(graph, f"Add {node_titles.title(spec) if spec else type}", [AddNode(rec)])


def add_connected_node_command(
    graph: Graph,
    registry: NodeRegistry,
    type: str,
    pos: tuple[float, float],
    link: tuple[int | None, str, int | None, str, str],
) -> GraphCommand:
    """Add a node and wire it in one step (a wire dropped on empty canvas, then a node picked).

    `link` is (src_node, src_output, dst_node, dst_input, type) with `None` standing for the new node.
    """
    rec = new_node_record(graph, registry, type, pos)
    new_id = rec["id"]
    src, out, dst, inp, typ = link
    src_id = new_id if src is None else src
    dst_id = new_id if dst is None else dst
    edits: list[Edit] = [AddNode(rec)]
    old = graph.link_into(dst_id, inp) if dst is not None else None
    if old is not None:
        edits.append(RemoveLink(link_record(old)))
    edits.append(AddLink(_link_rec(graph.next_link_id, src_id, out, dst_id, inp, typ)))
    spec = registry.get(type)
    return GraphCommand(graph, f"Add {node_titles.title(spec) if spec else type}", edits)


def _link_rec(link_id: int, src: int, out: str, dst: int, inp: str, typ: str) -> dict[str, Any]:
    return {
        "id": link_id,
        "src_node": src,
        "src_output": out,
        "dst_node": dst,
        "dst_input": inp,
        "type": typ,
        "extra": {},
    }


def _removal_edits(graph: Graph, node_ids: list[int]) -> list[Edit]:
    ids = set(node_ids)
    links = sorted(
        (lk for lk in graph.links.values() if lk.src_node in ids or lk.dst_node in ids), key=lambda lk: lk.id
    )
    edits: list[Edit] = [RemoveLink(link_record(lk)) for lk in links]
    edits += [RemoveNode(node_record(graph.nodes[i])) for i in sorted(ids) if i in graph.nodes]
    return edits


def remove_nodes_command(graph: Graph, node_ids: list[int]) -> GraphCommand:
    """Delete nodes and every link touching them, as one step."""
    return GraphCommand(graph, f"Delete {_plural(len(set(node_ids)), 'node')}", _removal_edits(graph, node_ids))


def move_nodes_command(
    graph: Graph, moves: dict[int, tuple[float, float]], *, merge_key: object = None
) -> GraphCommand:
    """Move nodes to new positions; pushes with one `merge_key` per drag fold into one step."""
    edits: list[Edit] = [
        MoveNode(nid, graph.nodes[nid].pos, (float(p[0]), float(p[1]))) for nid, p in sorted(moves.items())
    ]
    return GraphCommand(graph, f"Move {_plural(len(moves), 'node')}", edits, merge_key=merge_key)


def connect_command(graph: Graph, src: int, out: str, dst: int, inp: str, type: str) -> GraphCommand:
    """Connect, replacing whatever fed that input (one undo step for both)."""
    edits: list[Edit] = []
    old = graph.link_into(dst, inp)
    if old is not None:
        edits.append(RemoveLink(link_record(old)))
    edits.append(AddLink(_link_rec(graph.next_link_id, src, out, dst, inp, type)))
    return GraphCommand(graph, "Replace connection" if old else "Connect", edits)


def disconnect_command(graph: Graph, link_ids: list[int]) -> GraphCommand:
    edits: list[Edit] = [RemoveLink(link_record(graph.links[i])) for i in sorted(link_ids)]
    return GraphCommand(graph, "Disconnect", edits)


def set_value_command(graph: Graph, node_id: int, key: str, value: Any, *, merge_key: object = None) -> GraphCommand:
    old = copy.deepcopy(graph.node(node_id).values.get(key, ABSENT))
    return GraphCommand(graph, f"Set {key}", [SetValue(node_id, key, old, copy.deepcopy(value))], merge_key=merge_key)


def set_values_command(graph: Graph, uses: list[tuple[int, str]], value: Any, text: str) -> GraphCommand:
    """One undo step setting the same value on several (node, input) pairs, e.g. a model replaced everywhere."""
    edits: list[Edit] = [
        SetValue(nid, key, copy.deepcopy(graph.node(nid).values.get(key, ABSENT)), copy.deepcopy(value))
        for nid, key in uses
    ]
    return GraphCommand(graph, text, edits)


def set_extra_command(graph: Graph, node_id: int, key: str, value: Any) -> GraphCommand:
    old = copy.deepcopy(graph.node(node_id).extra.get(key, ABSENT))
    return GraphCommand(graph, f"Set {key.replace('_', ' ')}", [SetExtra(node_id, key, old, value)])


def set_title_command(graph: Graph, node_id: int, title: str | None) -> GraphCommand:
    return GraphCommand(graph, "Rename node", [SetTitle(node_id, graph.node(node_id).title, title or None)])


def set_mode_command(graph: Graph, node_ids: list[int], mode: NodeMode | str) -> GraphCommand:
    mode = NodeMode(mode)
    edits: list[Edit] = [SetMode(i, NodeMode(graph.node(i).mode).value, mode.value) for i in sorted(node_ids)]
    verb = {"active": "Activate", "bypass": "Bypass", "mute": "Mute"}[mode.value]
    return GraphCommand(graph, f"{verb} {_plural(len(node_ids), 'node')}", edits)


def toggle_mode_command(graph: Graph, node_ids: list[int], mode: NodeMode | str) -> GraphCommand:
    """Ctrl+B / Ctrl+M: if every node already has `mode`, make them active again, else set `mode`."""
    mode = NodeMode(mode)
    target = NodeMode.ACTIVE if all(graph.node(i).mode == mode for i in node_ids) else mode
    return set_mode_command(graph, node_ids, target)


def paste_command(
    graph: Graph, payload: dict[str, Any], at: tuple[float, float], *, text: str = "Paste"
) -> GraphCommand:
    """Add the payload's nodes and their internal links with fresh ids, as one step."""
    nodes, links = payload_to_records(graph, payload, at)
    edits: list[Edit] = [AddNode(r) for r in nodes] + [AddLink(r) for r in links]
    return GraphCommand(graph, f"{text} {_plural(len(nodes), 'node')}", edits)


def add_group_command(
    graph: Graph, title: str, bounding: tuple[float, float, float, float], color: str | None = None
) -> GraphCommand:
    return GraphCommand(graph, "Add group", [AddGroup(graph.next_group_id, title, bounding, color)])


def remove_groups_command(graph: Graph, group_ids: list[int]) -> GraphCommand:
    edits: list[Edit] = []
    for gid in sorted(group_ids):
        g = graph.groups[gid]
        edits.append(RemoveGroup(AddGroup(g.id, g.title, g.bounding, g.color, copy.deepcopy(g.extra))))
    return GraphCommand(graph, "Delete group", edits)


def update_group_command(graph: Graph, group_id: int, *, merge_key: object = None, **changes: Any) -> GraphCommand:
    g = graph.groups[group_id]
    old = {k: copy.deepcopy(getattr(g, k)) for k in changes}
    return GraphCommand(graph, "Edit group", [UpdateGroup(group_id, old, changes)], merge_key=merge_key)


def move_group_command(
    graph: Graph,
    group_id: int,
    bounding: tuple[float, float, float, float],
    node_moves: dict[int, tuple[float, float]],
    *,
    merge_key: object = None,
) -> GraphCommand:
    """Move a group's frame and the nodes that sit inside it together."""
    g = graph.groups[group_id]
    edits: list[Edit] = [UpdateGroup(group_id, {"bounding": g.bounding}, {"bounding": tuple(bounding)})]
    edits += [MoveNode(nid, graph.nodes[nid].pos, (float(p[0]), float(p[1]))) for nid, p in sorted(node_moves.items())]
    return GraphCommand(graph, "Move group", edits, merge_key=merge_key)


def set_node_colors_command(graph: Graph, node_ids: list[int], color: str | None, bgcolor: str | None) -> GraphCommand:
    """Colour nodes as ComfyUI does, as one step: `color` (title) in `node.color`, `bgcolor` (body) in
    `node.extra["comfy"]["bgcolor"]`; `None` removes them. Nothing else in "comfy" is touched."""
    edits: list[Edit] = []
    for nid in sorted(set(node_ids)):
        node = graph.node(nid)
        edits.append(SetColor(nid, node.color, color or None))
        old_comfy = copy.deepcopy(node.extra.get(COMFY_KEY, ABSENT))
        before = old_comfy if isinstance(old_comfy, dict) else {}
        after = dict(before)
        if bgcolor:
            after[COMFY_BGCOLOR] = bgcolor
        else:
            after.pop(COMFY_BGCOLOR, None)
        if after != before:
            edits.append(SetExtra(nid, COMFY_KEY, old_comfy, after if after else ABSENT))
    n = len(set(node_ids))
    text = f"Colour {_plural(n, 'node')}" if color else f"Remove colour of {_plural(n, 'node')}"
    return GraphCommand(graph, text, edits)


def set_group_colors_command(graph: Graph, group_ids: list[int], color: str | None) -> GraphCommand:
    """Colour groups (ComfyUI's `groupcolor` in `group.color`; `None` is the theme's) as one step."""
    edits: list[Edit] = [
        UpdateGroup(gid, {"color": graph.groups[gid].color}, {"color": color or None}) for gid in sorted(set(group_ids))
    ]
    return GraphCommand(graph, "Colour group" if color else "Remove group colour", edits)
