"""Reading ComfyUI's API ("prompt") format: `{"<id>": {"class_type": ..., "inputs": {...}}}`.

This is what `POST /prompt` receives, what "Export (API)" writes and what ComfyUI puts in the `prompt`
PNG chunk. Values are already by name; a link is `["<source id>", output_slot]`; list values are
wrapped as `{"__value__": [...]}`. There are no positions, notes, reroutes, primitives or muted nodes:
the frontend removed them before sending. A widget value the file leaves out gets its declared default
(as in the UI import), so the graph says what will run. We lay the nodes out in columns by depth so the editor shows
something readable.

Placeholders (types we lack) keep their named values in `node.values` and get output socket ids from
what their consumers expect (`MODEL`, or `output 2` when nothing says), recorded in
`extra["comfy"]["outputs"]` by slot so an export finds the slot again.

Normalisations: ids that are not plain numbers (flattened subgraphs write "12:5") get fresh numbers
and keep the original in `extra["comfy"]["id"]`; `_meta.title` becomes the node title only when it is
not just the class name; LoadImage's `"choose file to upload"` entry is dropped (it is a button).
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from graph_engine.comfy.common import (
    COMFY_KEY,
    MAX_ID,
    VIRTUAL_TYPES,
    ComfyImport,
    check_slot,
    fail,
    is_int,
    missing_types_notice,
    plural,
    short,
)
from graph_engine.model import Graph, GraphError
from graph_engine.node_spec import MISSING, NodeRegistry
from graph_engine.types import ANY

# Inputs older frontends sent for buttons; the backend ignores them.
UI_ONLY_INPUTS = frozenset({"choose file to upload", "upload"})

COLUMN_WIDTH, ROW_HEIGHT = 340.0, 240.0


def looks_like_api(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and bool(doc)
        and all(isinstance(v, dict) for v in doc.values())
        and any("class_type" in v for v in doc.values())
    )


def numeric_id(key: Any) -> int | None:
    """A plain id ("7") as a number; anything else (compound "12:5", "07", "²") gets a fresh number."""
    if isinstance(key, str) and key.isascii() and key.isdigit() and str(int(key)) == key and int(key) <= MAX_ID:
        return int(key)
    return None


def is_link(value: Any) -> bool:
    """`["4", 0]`: a source id and an output slot (widget lists are wrapped, so this is unambiguous)."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and (isinstance(value[0], str) or is_int(value[0]))
        and is_int(value[1])
    )


def import_api(doc: dict[str, Any], registry: NodeRegistry) -> ComfyImport:
    """A ComfyUI API-format prompt as our graph; `WorkflowFormatError` says which node and input is wrong."""
    graph = Graph()
    ids: dict[str, int] = {}
    numeric = {k: n for k in doc if (n := numeric_id(k)) is not None}
    next_free = max(numeric.values(), default=0) + 1
    for key in doc:
        if key in numeric:
            ids[key] = numeric[key]
        else:
            ids[key], next_free = next_free, next_free + 1

    missing: list[str] = []
    pending_links: list[tuple[str, int, str, Any]] = []
    for key in sorted(doc, key=lambda k: ids[k]):
        entry = doc[key]
        where = f"node {key!r}"
        class_type = entry.get("class_type")
        if not isinstance(class_type, str) or not class_type.strip():
            raise fail(where, f"'class_type' must be a node type name, got {short(class_type)}")
        where = f"node {key} ({class_type})"
        if class_type in VIRTUAL_TYPES:
            raise fail(where, "a frontend-only node cannot be in an API prompt (ComfyUI removes them before sending)")
        inputs = entry.get("inputs", {})
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, dict):
            raise fail(f"{where}.inputs", f"expected an object of inputs by name, got {short(inputs)}")
        spec = registry.get(class_type)
        if spec is None and class_type not in missing:
            missing.append(class_type)
        values: dict[str, Any] = {}
        for name, value in inputs.items():
            if is_link(value):
                pending_links.append((key, ids[key], name, value))
            elif spec is not None and name in UI_ONLY_INPUTS and spec.input(name) is None:
                continue
            elif isinstance(value, dict) and set(value) == {"__value__"}:
                values[name] = value["__value__"]
            elif value is not None:
                values[name] = value
        if spec is not None:  # as the UI import does: a widget the file leaves out has its declared default
            for inp in spec.inputs:
                if inp.is_widget and inp.default is not MISSING and inp.id not in values:
                    values[inp.id] = inp.default
        comfy: dict[str, Any] = {}
        if str(ids[key]) != key:
            comfy["id"] = key
        title = None
        meta = entry.get("_meta")
        if isinstance(meta, dict) and isinstance(meta.get("title"), str) and meta["title"] not in ("", class_type):
            title = meta["title"]
        rest = {k: v for k, v in entry.items() if k not in {"class_type", "inputs", "_meta"}}
        if rest:
            comfy["api"] = rest
        graph.add_node(class_type, values, id=ids[key], title=title, extra={COMFY_KEY: comfy} if comfy else {})

    # Placeholder outputs are named from what their consumers expect.
    wanted: dict[int, dict[int, set[str]]] = {}
    for key, _nid, name, (src, slot) in pending_links:
        src_key = str(src)
        where = f"node {key} ({doc[key]['class_type']}), input '{name}'"
        if src_key not in ids:
            raise fail(where, f"links to node {src_key!r}, which is not in the file")
        check_slot(slot, where)
        src_node = graph.nodes[ids[src_key]]
        src_spec = registry.get(src_node.type)
        if src_spec is not None:
            if slot >= len(src_spec.outputs):
                raise fail(
                    where,
                    f"links to output slot {slot} of node {src_key} ({src_node.type}), which has "
                    f"{plural(len(src_spec.outputs), 'output')}",
                )
            continue
        dst_spec = registry.get(graph.nodes[ids[key]].type)
        dst_inp = dst_spec.input(name) if dst_spec is not None else None
        types = wanted.setdefault(src_node.id, {}).setdefault(slot, set())
        if dst_inp is not None:
            types.add(dst_inp.type)
    placeholder_outputs: dict[int, list[dict[str, str]]] = {}
    for nid, slots in wanted.items():
        outputs = []
        for slot in range(max(slots) + 1):
            types = slots.get(slot, set())
            typ = next(iter(types)) if len(types) == 1 else ANY
            outputs.append({"name": typ if typ != ANY else f"output {slot}", "type": typ})
        names = [o["name"] for o in outputs]
        for i, o in enumerate(outputs):
            if names.count(o["name"]) > 1:
                o["name"] = f"{o['name']} {i}"
        placeholder_outputs[nid] = outputs
        graph.nodes[nid].extra.setdefault(COMFY_KEY, {})["outputs"] = outputs

    for key, nid, name, (src, slot) in pending_links:
        src_node = graph.nodes[ids[str(src)]]
        src_spec = registry.get(src_node.type)
        dst_spec = registry.get(graph.nodes[nid].type)
        if src_spec is not None:
            out = src_spec.outputs[slot]
            output_id, typ = out.id, out.type
        else:
            entry = placeholder_outputs[src_node.id][slot]
            output_id, typ = entry["name"], entry["type"]
            if typ == ANY and dst_spec is not None and (target := dst_spec.input(name)) is not None:
                typ = target.type
        try:
            graph.add_link(src_node.id, output_id, nid, name, typ)
        except GraphError as exc:
            raise fail(f"node {key}, input '{name}'", str(exc)) from None

    layout_columns(graph)
    notices = [missing_types_notice(missing)] if missing else []
    return ComfyImport(graph, "comfyui-api", notices, missing)


def layout_columns(graph: Graph) -> None:
    """Place nodes left to right by their depth from the sources; a cycle falls back to one row per id."""
    g = nx.DiGraph()
    g.add_nodes_from(graph.nodes)
    g.add_edges_from((lk.src_node, lk.dst_node) for lk in graph.links.values())
    depth: dict[int, int] = {}
    if nx.is_directed_acyclic_graph(g):
        for nid in nx.lexicographical_topological_sort(g):
            depth[nid] = max((depth[p] + 1 for p in g.predecessors(nid)), default=0)
    else:
        depth = {nid: 0 for nid in graph.nodes}
    rows: dict[int, int] = {}
    for nid in sorted(graph.nodes):
        col = depth[nid]
        row = rows.get(col, 0)
        rows[col] = row + 1
        graph.nodes[nid].pos = (col * COLUMN_WIDTH, row * ROW_HEIGHT)
