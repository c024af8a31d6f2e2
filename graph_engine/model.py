"""The graph the user edits: nodes, links and groups as plain dataclasses, with change notifications.

The model is the single source of truth. The canvas never keeps its own copy of a value; it calls the
methods here and redraws when `Graph.changed` reports what happened. Ids are small integers handed out
by the graph itself (never `id()`), so they survive saving, loading, copying and undo.

Links address sockets by their stable ids (`"LATENT"`, `"samples"`), not by position, so a node type
gaining an input does not shift the wiring of old workflows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from graph_engine.signals import Signal


class NodeMode(StrEnum):
    ACTIVE = "active"
    # The node is skipped; each output passes through the first linked input of the same type.
    BYPASS = "bypass"
    # The node and everything that needs it do not run.
    MUTE = "mute"


@dataclass
class Node:
    id: int
    type: str
    values: dict[str, Any] = field(default_factory=dict)
    pos: tuple[float, float] = (0.0, 0.0)
    size: tuple[float, float] | None = None
    title: str | None = None
    mode: NodeMode = NodeMode.ACTIVE
    color: str | None = None
    flags: dict[str, Any] = field(default_factory=dict)
    # Keys this version does not know, kept so a round trip loses nothing.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.title or self.type


@dataclass(frozen=True)
class Link:
    id: int
    src_node: int
    src_output: str
    dst_node: int
    dst_input: str
    type: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Group:
    id: int
    title: str
    bounding: tuple[float, float, float, float]
    color: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GraphEvent:
    """What changed. `kind` is one of the `EVENT_*` names; `ids` are the node/link/group ids involved."""

    kind: str
    ids: tuple[int, ...] = ()
    key: str | None = None


EVENT_NODE_ADDED = "node_added"
EVENT_NODE_REMOVED = "node_removed"
EVENT_NODE_MOVED = "node_moved"
EVENT_NODE_CHANGED = "node_changed"  # title, mode, size, color, flags
EVENT_VALUE_CHANGED = "value_changed"  # key = input id
EVENT_LINK_ADDED = "link_added"
EVENT_LINK_REMOVED = "link_removed"
EVENT_GROUP_ADDED = "group_added"
EVENT_GROUP_REMOVED = "group_removed"
EVENT_GROUP_CHANGED = "group_changed"
EVENT_RESET = "reset"  # the whole graph was replaced


class GraphError(ValueError):
    """An edit that would break the graph's own invariants (unknown id, a second link into one input)."""


class Graph:
    """Nodes, links and groups plus the id counters. Every mutation goes through a method and emits."""

    def __init__(self) -> None:
        self.nodes: dict[int, Node] = {}
        self.links: dict[int, Link] = {}
        self.groups: dict[int, Group] = {}
        self.next_node_id = 1
        self.next_link_id = 1
        self.next_group_id = 1
        self.view: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        self.changed: Signal[GraphEvent] = Signal()
        # Bumped on every edit, so caches of derived data (plans, layouts) know when to refresh.
        self.revision = 0

    # ---- notifications -------------------------------------------------------------------------

    def _emit(self, kind: str, ids: tuple[int, ...] = (), key: str | None = None) -> None:
        self.revision += 1
        self.changed.emit(GraphEvent(kind, ids, key))

    # ---- nodes ---------------------------------------------------------------------------------

    def add_node(
        self,
        type: str,
        values: dict[str, Any] | None = None,
        *,
        pos: tuple[float, float] = (0.0, 0.0),
        id: int | None = None,
        **attrs: Any,
    ) -> Node:
        """Add a node; `id` is for restoring a saved or undone node under its old id."""
        if id is None:
            id = self.next_node_id
        elif id in self.nodes:
            raise GraphError(f"node id {id} is already in use")
        if "mode" in attrs:
            attrs["mode"] = NodeMode(attrs["mode"])
        node = Node(id=id, type=type, values=dict(values or {}), pos=pos, **attrs)
        self.nodes[id] = node
        self.next_node_id = max(self.next_node_id, id + 1)
        self._emit(EVENT_NODE_ADDED, (id,))
        return node

    def node(self, node_id: int) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise GraphError(f"there is no node {node_id}") from None

    def remove_node(self, node_id: int) -> list[Link]:
        """Remove a node and every link touching it; returns those links (for undo)."""
        self.node(node_id)
        removed = [lk for lk in self.links.values() if node_id in (lk.src_node, lk.dst_node)]
        for lk in removed:
            self.remove_link(lk.id)
        del self.nodes[node_id]
        self._emit(EVENT_NODE_REMOVED, (node_id,))
        return removed

    def move_node(self, node_id: int, pos: tuple[float, float]) -> None:
        self.node(node_id).pos = (float(pos[0]), float(pos[1]))
        self._emit(EVENT_NODE_MOVED, (node_id,))

    def set_value(self, node_id: int, input_id: str, value: Any) -> None:
        self.node(node_id).values[input_id] = value
        self._emit(EVENT_VALUE_CHANGED, (node_id,), input_id)

    def unset_value(self, node_id: int, input_id: str) -> None:
        """Forget a stored value, so the input falls back to its default (undoing a first edit)."""
        self.node(node_id).values.pop(input_id, None)
        self._emit(EVENT_VALUE_CHANGED, (node_id,), input_id)

    def set_extra(self, node_id: int, key: str, value: Any) -> None:
        """UI-only settings saved with a node (e.g. the seed control); `None` removes the key."""
        extra = self.node(node_id).extra
        if value is None:
            extra.pop(key, None)
        else:
            extra[key] = value
        self._emit(EVENT_NODE_CHANGED, (node_id,), "extra")

    def set_mode(self, node_id: int, mode: NodeMode | str) -> None:
        self.node(node_id).mode = NodeMode(mode)
        self._emit(EVENT_NODE_CHANGED, (node_id,), "mode")

    def set_title(self, node_id: int, title: str | None) -> None:
        self.node(node_id).title = title or None
        self._emit(EVENT_NODE_CHANGED, (node_id,), "title")

    def set_color(self, node_id: int, color: str | None) -> None:
        """The title colour (ComfyUI's node `color`, a CSS hex string); `None` is the category's colour."""
        self.node(node_id).color = color or None
        self._emit(EVENT_NODE_CHANGED, (node_id,), "color")

    def set_size(self, node_id: int, size: tuple[float, float] | None) -> None:
        self.node(node_id).size = size
        self._emit(EVENT_NODE_CHANGED, (node_id,), "size")

    # ---- links ---------------------------------------------------------------------------------

    def add_link(
        self,
        src_node: int,
        src_output: str,
        dst_node: int,
        dst_input: str,
        type: str,
        *,
        id: int | None = None,
    ) -> Link:
        """Add a link. An input holds one link; the caller removes the old one first (see `connect`)."""
        self.node(src_node)
        self.node(dst_node)
        if self.link_into(dst_node, dst_input) is not None:
            raise GraphError(f"input {dst_input!r} of node {dst_node} is already connected")
        if id is None:
            id = self.next_link_id
        elif id in self.links:
            raise GraphError(f"link id {id} is already in use")
        link = Link(id, src_node, src_output, dst_node, dst_input, type)
        self.links[id] = link
        self.next_link_id = max(self.next_link_id, id + 1)
        self._emit(EVENT_LINK_ADDED, (id,))
        return link

    def connect(self, src_node: int, src_output: str, dst_node: int, dst_input: str, type: str) -> Link:
        """Connect, replacing whatever fed that input before (what dragging a wire onto it means)."""
        old = self.link_into(dst_node, dst_input)
        if old is not None:
            self.remove_link(old.id)
        return self.add_link(src_node, src_output, dst_node, dst_input, type)

    def remove_link(self, link_id: int) -> Link:
        try:
            link = self.links.pop(link_id)
        except KeyError:
            raise GraphError(f"there is no link {link_id}") from None
        self._emit(EVENT_LINK_REMOVED, (link_id,))
        return link

    def link_into(self, node_id: int, input_id: str) -> Link | None:
        for lk in self.links.values():
            if lk.dst_node == node_id and lk.dst_input == input_id:
                return lk
        return None

    def links_from(self, node_id: int, output_id: str | None = None) -> list[Link]:
        return [
            lk
            for lk in self.links.values()
            if lk.src_node == node_id and (output_id is None or lk.src_output == output_id)
        ]

    def inputs_of(self, node_id: int) -> dict[str, Link]:
        """The links feeding a node, by input id."""
        return {lk.dst_input: lk for lk in self.links.values() if lk.dst_node == node_id}

    # ---- groups --------------------------------------------------------------------------------

    def add_group(
        self, title: str, bounding: tuple[float, float, float, float], *, id: int | None = None, **kw: Any
    ) -> Group:
        if id is None:
            id = self.next_group_id
        elif id in self.groups:
            raise GraphError(f"group id {id} is already in use")
        group = Group(id, title, bounding, **kw)
        self.groups[id] = group
        self.next_group_id = max(self.next_group_id, id + 1)
        self._emit(EVENT_GROUP_ADDED, (id,))
        return group

    def remove_group(self, group_id: int) -> Group:
        try:
            group = self.groups.pop(group_id)
        except KeyError:
            raise GraphError(f"there is no group {group_id}") from None
        self._emit(EVENT_GROUP_REMOVED, (group_id,))
        return group

    def update_group(self, group_id: int, **changes: Any) -> None:
        group = self.groups[group_id]
        for key, value in changes.items():
            setattr(group, key, value)
        self._emit(EVENT_GROUP_CHANGED, (group_id,))

    # ---- whole graph ---------------------------------------------------------------------------

    def replace_with(self, other: Graph) -> None:
        """Take over another graph's content in place, keeping this object's observers (open/revert)."""
        self.nodes, self.links, self.groups = other.nodes, other.links, other.groups
        self.next_node_id, self.next_link_id = other.next_node_id, other.next_link_id
        self.next_group_id = other.next_group_id
        self.view, self.extra = other.view, other.extra
        self._emit(EVENT_RESET)

    def __repr__(self) -> str:
        return f"Graph({len(self.nodes)} nodes, {len(self.links)} links, {len(self.groups)} groups)"
