"""Reading ComfyUI's UI ("workflow") format: what its frontend saves and puts in the `workflow` PNG chunk.

Both schemas are read: 0.4 (litegraph: links as `[id, origin, origin_slot, target, target_slot, type]`,
`last_node_id`) and 1 (links as objects, `state`). Each ComfyUI node becomes one of ours:

* a type we have: widget values named through `widgets.read_widgets_values`; the seed's control
  selector goes to `extra["control_after_generate"]`;
* `Note` / `MarkdownNote`: our `Note` (a MarkdownNote remembers its type for export);
* `Reroute`: our Reroute node (one `input`, one `output`), links through it kept; the engine looks
  through it. (With a registry that lacks Reroute, a link through one becomes one link from the real
  source.)
* `PrimitiveNode`: our Primitive (same type name), its value in `values["value"]`, its control value in
  `extra["control_after_generate"]`, linked to each widget it feeds (a widget converted to a socket,
  `inputs[i].widget`); the engine gives its value to those inputs. (With a registry that lacks it, its
  value is written into each widget it feeds instead.)
* anything else: a placeholder of the same type that keeps all its data (`extra["comfy"]`: inputs and
  outputs with names and types, widgets_values, properties) and its links, so nothing is lost and the
  parts of the graph that do not need it still run.

Links address our sockets by id: the output id from the source spec's output order by slot, the input
id by the input's name in the file. Positions, sizes, titles, colours, groups and modes (2 → mute,
4 → bypass) are kept; other keys go to `extra["comfy"]` and are written back by `export.to_ui`.

Normalisations on import (documented because a re-export differs from the file in these points):

* legacy boolean control values become "randomize" / "fixed";
* LoadImage's upload entry is not kept (export writes "image");
* a widget the file has no value for gets its declared default, as in ComfyUI's frontend (a
  model-file combo stays empty rather than guessed);
* a PrimitiveNode's widgets_values after its value and control (a combo's filter) go to
  `extra["comfy"]["extra_widgets_values"]`;
* a schema-1 file is written back as 0.4; subgraphs are kept as one placeholder per instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graph_engine.comfy.common import (
    COMFY_KEY,
    MAX_ID,
    NOTE_TYPES,
    OUR_NOTE,
    PRIMITIVE,
    REROUTE,
    SDGRAPH_EXTRA_KEY,
    ComfyImport,
    check_id,
    check_numbers,
    check_slot,
    check_text,
    fail,
    is_int,
    missing_types_notice,
    plural,
    short,
)
from graph_engine.comfy.widgets import CONTROL_EXTRA_KEY, normalize_control, read_widgets_values
from graph_engine.model import Graph, GraphError, NodeMode
from graph_engine.node_spec import MISSING, NodeRegistry, NodeSpec
from graph_engine.reroute import REROUTE_INPUT
from graph_engine.types import ANY
from graph_engine.value_sources import VALUE

MODES = {0: NodeMode.ACTIVE, 1: NodeMode.ACTIVE, 2: NodeMode.MUTE, 3: NodeMode.ACTIVE, 4: NodeMode.BYPASS}
_NODE_KEYS = {"id", "type", "pos", "size", "title", "mode", "color", "flags", "inputs", "outputs", "widgets_values"}
# Per-link fields in a node's inputs/outputs lists; the links table is the truth, so they are rebuilt.
_SOCKET_LINK_KEYS = {"link", "links", "slot_index"}
_TOP_CONSUMED = {"nodes", "links", "groups", "last_node_id", "last_link_id", "state", "version"}


@dataclass
class _RawNode:
    index: int
    key: int | str
    id: int
    type: str
    raw: dict[str, Any]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    spec: NodeSpec | None = None
    placeholder_outputs: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"nodes[{self.index}] (id {self.key}, {self.type})"


@dataclass(frozen=True)
class _RawLink:
    index: int
    id: int
    origin: int | str
    origin_slot: int
    target: int | str
    target_slot: int
    type: Any
    extra: dict[str, Any]

    @property
    def where(self) -> str:
        return f"links[{self.index}] (id {self.id})"


def looks_like_ui(doc: Any) -> bool:
    """ComfyUI's top-level keys, and none of our own format's (a damaged sdgraph file is not ComfyUI's)."""
    return (
        isinstance(doc, dict)
        and "nodes" in doc
        and ("links" in doc or "last_node_id" in doc or "version" in doc)
        and "schema_version" not in doc
        and "format" not in doc
    )


def _key(value: Any, where: str) -> int | str:
    """A node reference: an int id, or the "a:b" strings of legacy group nodes."""
    if isinstance(value, str) and value.strip():
        plain = value.isascii() and value.isdigit() and str(int(value)) == value and int(value) <= MAX_ID
        return int(value) if plain else value
    return check_id(value, where)


def _sockets(value: Any, where: str, kind: str, *, unnamed_ok: bool = True) -> list[dict[str, Any]]:
    """A node's socket list; only a Reroute's inputs may have no name (every other input is linked by it)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(where, f"'{kind}' must be a list, got {short(value)}")
    out = []
    for i, s in enumerate(value):
        if not isinstance(s, dict):
            raise fail(f"{where}.{kind}[{i}]", f"expected an object, got {short(s)}")
        name = s.get("name", s.get("type") if kind == "outputs" else None)
        if not isinstance(name, str):  # may be empty: a Reroute's sockets have no name
            raise fail(f"{where}.{kind}[{i}].name", f"expected text, got {short(name)}")
        if not name and not unnamed_ok:
            raise fail(f"{where}.{kind}[{i}].name", "an input needs a name")
        widget = s.get("widget")
        if widget is not None and not (isinstance(widget, dict) and isinstance(widget.get("name"), str)):
            raise fail(f"{where}.{kind}[{i}].widget", f"expected {{'name': ...}}, got {short(widget)}")
        out.append(s)
    return out


def _parse_links(doc: dict[str, Any]) -> list[_RawLink]:
    raw = doc.get("links", [])
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise fail("links", f"expected a list, got {short(raw)}")
    links = []
    for i, lk in enumerate(raw):
        where = f"links[{i}]"
        if isinstance(lk, list):
            if len(lk) < 5:
                raise fail(where, f"expected [id, origin, origin_slot, target, target_slot, type], got {short(lk)}")
            lid, origin, oslot, target, tslot = lk[:5]
            typ = lk[5] if len(lk) > 5 else None
            extra: dict[str, Any] = {}
        elif isinstance(lk, dict):
            lid, origin, oslot = lk.get("id"), lk.get("origin_id"), lk.get("origin_slot")
            target, tslot, typ = lk.get("target_id"), lk.get("target_slot"), lk.get("type")
            extra = {
                k: v
                for k, v in lk.items()
                if k not in {"id", "origin_id", "origin_slot", "target_id", "target_slot", "type"}
            }
        else:
            raise fail(where, f"expected a list or an object, got {short(lk)}")
        links.append(
            _RawLink(
                i,
                check_id(lid, f"{where}.id"),
                _key(origin, f"{where}.origin"),
                check_slot(oslot, f"{where}.origin_slot"),
                _key(target, f"{where}.target"),
                check_slot(tslot, f"{where}.target_slot"),
                typ,
                extra,
            )
        )
    return links


class _UIReader:
    def __init__(self, doc: dict[str, Any], registry: NodeRegistry) -> None:
        self.doc = doc
        self.registry = registry
        self.graph = Graph()
        self.notices: list[str] = []
        self.missing: list[str] = []
        self.nodes: dict[int | str, _RawNode] = {}
        self.subgraphs = self._subgraph_names()
        # Reroutes and primitives are kept as our nodes when this install has them (it always does; a
        # bare registry, as some tests and tools use, falls back to dissolving them).
        prim = registry.get(PRIMITIVE)
        self.keep_primitives = prim is not None and prim.value_source
        self.keep_reroutes = registry.get(REROUTE) is not None

    def _subgraph_names(self) -> dict[str, str]:
        defs = self.doc.get("definitions")
        subgraphs = defs.get("subgraphs") if isinstance(defs, dict) else None
        names: dict[str, str] = {}
        if isinstance(subgraphs, list):
            for sg in subgraphs:
                if isinstance(sg, dict) and isinstance(sg.get("id"), str):
                    names[sg["id"]] = str(sg.get("name") or sg["id"])
        return names

    # ---- nodes ---------------------------------------------------------------------------------

    def read_nodes(self) -> None:
        raw_nodes = self.doc.get("nodes")
        if not isinstance(raw_nodes, list):
            raise fail("nodes", f"expected a list, got {short(raw_nodes)}")
        pending: list[tuple[int, dict[str, Any], int | str, str]] = []
        seen: set[int | str] = set()
        used: set[int] = set()
        for i, n in enumerate(raw_nodes):
            if not isinstance(n, dict):
                raise fail(f"nodes[{i}]", f"expected an object, got {short(n)}")
            key = _key(n.get("id"), f"nodes[{i}].id")
            if key in seen:
                raise fail(f"nodes[{i}].id", f"node id {key} appears twice")
            seen.add(key)
            typ = n.get("type")
            if not isinstance(typ, str) or not typ.strip():
                raise fail(f"nodes[{i}].type", f"expected a node type name, got {short(typ)}")
            pending.append((i, n, key, typ))
            if isinstance(key, int):
                used.add(key)
        next_free = max(used, default=0) + 1
        for i, n, key, typ in pending:
            if isinstance(key, int):
                nid = key
            else:
                nid, next_free = next_free, next_free + 1
            where = f"nodes[{i}] (id {key}, {typ})"
            rn = _RawNode(
                i,
                key,
                nid,
                typ,
                n,
                _sockets(n.get("inputs"), where, "inputs", unnamed_ok=typ == REROUTE),
                _sockets(n.get("outputs"), where, "outputs"),
            )
            rn.spec = self.registry.get(OUR_NOTE if typ in NOTE_TYPES else typ)
            self.nodes[key] = rn

    def _common_attrs(self, rn: _RawNode) -> dict[str, Any]:
        n, where = rn.raw, rn.where
        mode_raw = n.get("mode", 0)
        if not is_int(mode_raw) or mode_raw not in MODES:
            raise fail(f"{where}.mode", f"expected 0 (always), 2 (never/muted) or 4 (bypass), got {short(mode_raw)}")
        flags = n.get("flags", {})
        if flags is None:
            flags = {}
        if not isinstance(flags, dict):
            raise fail(f"{where}.flags", f"expected an object, got {short(flags)}")
        comfy = {k: v for k, v in n.items() if k not in _NODE_KEYS and k != SDGRAPH_EXTRA_KEY}
        if mode_raw in (1, 3):
            comfy["mode"] = mode_raw
        if not isinstance(rn.key, int):
            comfy["id"] = rn.key
        return {
            "pos": check_numbers(n.get("pos", [0, 0]), 2, f"{where}.pos"),
            "size": None if n.get("size") is None else check_numbers(n["size"], 2, f"{where}.size"),
            "title": check_text(n.get("title"), f"{where}.title") or None,
            "mode": MODES[mode_raw],
            "color": check_text(n.get("color"), f"{where}.color"),
            "flags": flags,
            "comfy": comfy,
        }

    def add_nodes(self) -> None:
        missing: list[str] = []
        short_nodes: list[str] = []
        for rn in sorted(self.nodes.values(), key=lambda r: r.index):
            if self.dissolved(rn):
                continue
            attrs = self._common_attrs(rn)
            comfy = attrs.pop("comfy")
            own = rn.raw.get(SDGRAPH_EXTRA_KEY)
            extra: dict[str, Any] = dict(own) if isinstance(own, dict) else {}
            saved = rn.raw.get("widgets_values")
            values: dict[str, Any]
            if rn.type == REROUTE:
                values = {}
                if saved is not None:
                    comfy["widgets_values"] = saved
            elif rn.type == PRIMITIVE:
                values = {}
                if isinstance(saved, list):
                    if saved and saved[0] is not None:
                        values[VALUE] = saved[0]
                    control = normalize_control(saved[1]) if len(saved) > 1 else None
                    if control is not None:
                        extra[CONTROL_EXTRA_KEY] = control
                    if len(saved) > 2:
                        comfy["extra_widgets_values"] = saved[2:]
                elif saved is not None:
                    raise fail(f"{rn.where}.widgets_values", f"expected a list of values, got {short(saved)}")
            elif rn.spec is not None and rn.type in NOTE_TYPES:
                values = {}
                if isinstance(saved, list) and saved and isinstance(saved[0], str):
                    values["text"] = saved[0]
                if rn.type != OUR_NOTE:
                    comfy["type"] = rn.type
            elif rn.spec is not None:
                values, control, leftovers, short_by = self._widget_values(rn, saved)
                # The frontend gives a widget missing from the file its default; so do we, explicitly.
                defaults = {i.id: i.default for i in rn.spec.inputs if i.is_widget and i.default is not MISSING}
                values = {**defaults, **values}
                if control is not None:
                    extra[CONTROL_EXTRA_KEY] = control
                if leftovers:
                    comfy["extra_widgets_values"] = leftovers
                if leftovers or short_by:
                    short_nodes.append(f"{rn.id} ({rn.type})")
            else:
                values = {}
                if rn.type not in self.subgraphs and rn.type not in missing:
                    missing.append(rn.type)
                comfy["inputs"] = [_strip_links(s) for s in rn.inputs]
                comfy["outputs"] = [_strip_links(s) for s in rn.outputs]
                if saved is not None:
                    comfy["widgets_values"] = saved
                rn.placeholder_outputs = unique_names(output_names(rn.outputs))
            if comfy:
                extra["comfy"] = comfy
            node_type = OUR_NOTE if rn.spec is not None and rn.type in NOTE_TYPES else rn.type
            self.graph.add_node(node_type, values, id=rn.id, extra=extra, **attrs)
        if missing:
            self.missing = missing
            self.notices.append(missing_types_notice(missing))
        used = sorted({self.subgraphs[rn.type] for rn in self.nodes.values() if rn.type in self.subgraphs})
        if used:
            self.notices.append(
                f"this workflow uses {plural(len(used), 'subgraph')} ({', '.join(used)}), which sdgraph cannot "
                "open yet; each is kept as one placeholder node with its contents, so the file is not lost"
            )
        if short_nodes:
            self.notices.append(
                f"{plural(len(short_nodes), 'node')} ({', '.join(short_nodes)}) saved a different number of "
                "settings than this version has; they were matched in order, so check their values"
            )

    def dissolved(self, rn: _RawNode) -> bool:
        """A Reroute or PrimitiveNode this registry cannot hold: its links and values go where they lead."""
        return (rn.type == REROUTE and not self.keep_reroutes) or (rn.type == PRIMITIVE and not self.keep_primitives)

    def _widget_values(self, rn: _RawNode, saved: Any) -> tuple[dict[str, Any], str | None, list[Any], int]:
        assert rn.spec is not None
        where = f"{rn.where}.widgets_values"
        if saved is None:
            return {}, None, [], 0
        if isinstance(saved, dict):  # a named form (`widgets_values_named`-style): only our widget names
            names = {i.id for i in rn.spec.inputs if i.is_widget}
            unknown = sorted(str(k) for k in saved if k not in names)
            if unknown:
                raise fail(where, f"{rn.type} has no settings named {', '.join(unknown)}")
            return {k: v for k, v in saved.items() if v is not None}, None, [], 0
        if not isinstance(saved, list):
            raise fail(where, f"expected a list of values, got {short(saved)}")
        read = read_widgets_values(rn.spec, saved)
        return read.values, read.control, read.leftovers, read.short_by

    # ---- links ---------------------------------------------------------------------------------

    def add_links(self) -> None:
        links = _parse_links(self.doc)
        by_id: dict[int, _RawLink] = {}
        into: dict[tuple[int | str, int], _RawLink] = {}
        for lk in links:
            if lk.id in by_id:
                raise fail(f"{lk.where}.id", f"link id {lk.id} appears twice")
            by_id[lk.id] = lk
            for end, key in (("origin", lk.origin), ("target", lk.target)):
                if key not in self.nodes:
                    raise fail(lk.where, f"its {end} is node {key}, which is not in the file")
            target = self.nodes[lk.target]
            if lk.target_slot >= len(target.inputs):
                raise fail(
                    lk.where,
                    f"goes into input slot {lk.target_slot} of node {target.key} ({target.type}), which has "
                    f"{plural(len(target.inputs), 'input')}",
                )
            slot_key = (lk.target, lk.target_slot)
            if slot_key in into:
                # litegraph sometimes leaves a stale duplicate; the input's own `link` field says which is live
                live = target.inputs[lk.target_slot].get("link")
                if live not in (lk.id, into[slot_key].id):
                    name = target.inputs[lk.target_slot]["name"]
                    raise fail(lk.where, f"input '{name}' of node {target.key} ({target.type}) has two links")
                if live == into[slot_key].id:
                    continue
            into[slot_key] = lk
        self.into = into
        for lk in sorted(into.values(), key=lambda lk: lk.id):
            target = self.nodes[lk.target]
            if target.type == PRIMITIVE or target.type in NOTE_TYPES or self.dissolved(target):
                continue
            source = self._resolve(lk, set())  # also finds reroute loops, which no graph may hold
            if source is None and not self.keep_reroutes:
                continue
            if self.keep_reroutes:
                origin, slot, link_type = self.nodes[lk.origin], lk.origin_slot, lk.type
            else:
                assert source is not None
                origin, slot, link_type = source
            inp = target.inputs[lk.target_slot]
            widget = inp.get("widget")
            input_id = widget["name"] if isinstance(widget, dict) else inp["name"]
            if target.type == REROUTE:
                if lk.target_slot != 0:
                    raise fail(lk.where, f"goes into input slot {lk.target_slot} of Reroute node {target.key}")
                input_id = REROUTE_INPUT
            if origin.type == PRIMITIVE and not self.keep_primitives:
                self._push_primitive(origin, target, input_id)
                continue
            output_id = self._output_id(origin, slot, lk)
            typ = self._link_type(origin, output_id, target, input_id, link_type)
            try:
                link = self.graph.add_link(origin.id, output_id, target.id, input_id, typ, id=lk.id)
            except GraphError as exc:
                raise fail(lk.where, str(exc)) from None
            if lk.extra:
                link.extra.update({COMFY_KEY: lk.extra})

    def _resolve(self, lk: _RawLink, seen: set[int | str]) -> tuple[_RawNode, int, Any] | None:
        """The real source of a link, looking through Reroutes; None when a Reroute has no input."""
        origin = self.nodes[lk.origin]
        if origin.type != REROUTE:
            return origin, lk.origin_slot, lk.type
        if origin.key in seen:
            raise fail(lk.where, f"Reroute nodes form a loop (through node {origin.key})")
        seen.add(origin.key)
        feeding = self.into.get((origin.key, 0))
        return None if feeding is None else self._resolve(feeding, seen)

    def _push_primitive(self, prim: _RawNode, target: _RawNode, input_id: str) -> None:
        saved = prim.raw.get("widgets_values")
        if target.spec is None or not isinstance(saved, list) or not saved:
            return
        node = self.graph.nodes[target.id]
        if saved[0] is not None:
            node.values[input_id] = saved[0]
        inp = target.spec.input(input_id)
        if inp is not None and inp.control_after_generate and len(saved) > 1:
            control = normalize_control(saved[1])
            if control is not None:
                node.extra[CONTROL_EXTRA_KEY] = control

    def _output_id(self, origin: _RawNode, slot: int, lk: _RawLink) -> str:
        if origin.spec is not None:
            if slot >= len(origin.spec.outputs) or origin.type in NOTE_TYPES:
                raise fail(
                    lk.where,
                    f"comes from output slot {slot} of node {origin.key} ({origin.type}), which has "
                    f"{plural(len(origin.spec.outputs), 'output')}",
                )
            return origin.spec.outputs[slot].id
        if slot >= len(origin.placeholder_outputs):
            raise fail(
                lk.where,
                f"comes from output slot {slot} of node {origin.key} ({origin.type}), which lists "
                f"{plural(len(origin.placeholder_outputs), 'output')}",
            )
        return origin.placeholder_outputs[slot]

    def _link_type(self, origin: _RawNode, output_id: str, target: _RawNode, input_id: str, file_type: Any) -> str:
        """Our spec's type where we know the node; the file's where we do not (a placeholder's socket) or
        where ours is ANY (a reroute's or primitive's output carries what the file says)."""
        if origin.spec is not None and (out := origin.spec.output(output_id)) is not None and out.type != ANY:
            return out.type
        if isinstance(file_type, str) and file_type and file_type != "*":
            return file_type
        if target.spec is not None and (inp := target.spec.input(input_id)) is not None:
            return inp.type
        return ANY

    # ---- groups and the rest -------------------------------------------------------------------

    def add_groups(self) -> None:
        groups = self.doc.get("groups", [])
        if groups is None:
            groups = []
        if not isinstance(groups, list):
            raise fail("groups", f"expected a list, got {short(groups)}")
        ids = [g.get("id") for g in groups if isinstance(g, dict)]
        explicit = {g for g in ids if is_int(g) and 0 <= g <= 2**53}
        next_free = max(explicit, default=0) + 1
        for i, g in enumerate(groups):
            where = f"groups[{i}]"
            if not isinstance(g, dict):
                raise fail(where, f"expected an object, got {short(g)}")
            gid = g.get("id")
            if not (is_int(gid) and gid in explicit) or gid in self.graph.groups:
                gid, next_free = next_free, next_free + 1
            extra = {k: v for k, v in g.items() if k not in {"id", "title", "bounding", "color"}}
            self.graph.add_group(
                check_text(g.get("title", ""), f"{where}.title") or "",
                check_numbers(g.get("bounding"), 4, f"{where}.bounding"),  # type: ignore[arg-type]
                id=gid,
                color=check_text(g.get("color"), f"{where}.color"),
                extra={COMFY_KEY: extra} if extra else {},
            )

    def finish(self) -> None:
        doc, graph = self.doc, self.graph
        raw_state = doc.get("state")
        state: dict[str, Any] = raw_state if isinstance(raw_state, dict) else {}
        for value, attr in (
            (doc.get("last_node_id", state.get("lastNodeId")), "next_node_id"),
            (doc.get("last_link_id", state.get("lastLinkId")), "next_link_id"),
        ):
            if is_int(value) and 0 <= value < 2**53:
                setattr(graph, attr, max(getattr(graph, attr), value + 1))
        rest = {k: v for k, v in doc.items() if k not in _TOP_CONSUMED}
        if isinstance(rest.get("extra"), dict) and SDGRAPH_EXTRA_KEY in rest["extra"]:
            rest["extra"] = dict(rest["extra"])
            own = rest["extra"].pop(SDGRAPH_EXTRA_KEY)
            if isinstance(own, dict):
                graph.extra.update({k: v for k, v in own.items() if k != COMFY_KEY})
        if rest:
            graph.extra[COMFY_KEY] = rest


def _strip_links(socket: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in socket.items() if k not in _SOCKET_LINK_KEYS}


def output_names(outputs: list[dict[str, Any]]) -> list[str]:
    """A placeholder's output socket ids: the names in the file, else the type, else the slot."""
    names = []
    for i, s in enumerate(outputs):
        name = s.get("name") or s.get("type")
        names.append(name if isinstance(name, str) and name else f"output {i}")
    return names


def unique_names(names: list[str]) -> list[str]:
    """Socket ids must be unique per node; ComfyUI output names need not be."""
    out: list[str] = []
    for i, name in enumerate(names):
        out.append(name if name not in out and names.count(name) == 1 else f"{name} {i}")
    return out


def import_ui(doc: dict[str, Any], registry: NodeRegistry) -> ComfyImport:
    """A ComfyUI UI-format workflow as our graph; `WorkflowFormatError` says what in the file is wrong."""
    version = doc.get("version", 0.4)
    if not isinstance(version, int | float) or isinstance(version, bool) or version > 1:
        raise fail("version", f"this reader knows ComfyUI workflow schemas 0.4 and 1, got {short(version)}")
    reader = _UIReader(doc, registry)
    reader.read_nodes()
    reader.add_nodes()
    reader.add_links()
    reader.add_groups()
    reader.finish()
    return ComfyImport(reader.graph, "comfyui-ui", reader.notices, reader.missing)
