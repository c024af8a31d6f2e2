"""Copy and paste of nodes as JSON: a pure layer, plus two thin functions for the system clipboard.

A copied selection becomes a small JSON document (`selection_to_payload`): the nodes with positions
relative to the selection's top-left corner, and only the links whose both ends were copied. Pasting
(`payload_to_records`) turns it back into node and link *records* with fresh ids taken from the target
graph's counters, so the same payload pastes into another file or another window. The records are
applied by `ui.commands.paste_command` as one undo step.

Records are plain dicts shaped like the model's dataclasses (see `node_record` / `link_record`); the
undo commands use the same functions to snapshot and restore what they remove, so there is one way to
copy a node.

Only `write_system_clipboard` / `read_system_clipboard` touch Qt, and they import it lazily, so this
module can be tested without a QApplication.
"""

from __future__ import annotations

import atexit
import copy
import json
from typing import Any

from graph_engine.model import Graph, Link, Node, NodeMode

MIME_TYPE = "application/x-sdgraph-nodes+json"
PAYLOAD_FORMAT = "sdgraph.clipboard"
PAYLOAD_VERSION = 1


class ClipboardFormatError(ValueError):
    """Clipboard content that is not a set of sdgraph nodes (or is damaged)."""


# ---- records: the one way to copy a node or link out of, and back into, a graph ------------------


def node_record(node: Node) -> dict[str, Any]:
    """Everything needed to re-create `node` exactly, deep-copied so later edits do not leak in."""
    return {
        "id": node.id,
        "type": node.type,
        "values": copy.deepcopy(node.values),
        "pos": tuple(node.pos),
        "size": None if node.size is None else tuple(node.size),
        "title": node.title,
        "mode": NodeMode(node.mode).value,  # Graph.add_node also accepts a plain str
        "color": node.color,
        "flags": copy.deepcopy(node.flags),
        "extra": copy.deepcopy(node.extra),
    }


def restore_node(graph: Graph, rec: dict[str, Any]) -> Node:
    """Add the node described by `rec` under its recorded id."""
    return graph.add_node(
        rec["type"],
        copy.deepcopy(rec.get("values", {})),
        id=rec["id"],
        pos=(float(rec["pos"][0]), float(rec["pos"][1])),
        size=None if rec.get("size") is None else (float(rec["size"][0]), float(rec["size"][1])),
        title=rec.get("title"),
        mode=NodeMode(rec.get("mode", "active")),
        color=rec.get("color"),
        flags=copy.deepcopy(rec.get("flags") or {}),
        extra=copy.deepcopy(rec.get("extra") or {}),
    )


def link_record(link: Link) -> dict[str, Any]:
    return {
        "id": link.id,
        "src_node": link.src_node,
        "src_output": link.src_output,
        "dst_node": link.dst_node,
        "dst_input": link.dst_input,
        "type": link.type,
        "extra": copy.deepcopy(link.extra),
    }


def restore_link(graph: Graph, rec: dict[str, Any]) -> Link:
    link = graph.add_link(
        rec["src_node"], rec["src_output"], rec["dst_node"], rec["dst_input"], rec["type"], id=rec["id"]
    )
    link.extra.update(copy.deepcopy(rec.get("extra") or {}))
    return link


# ---- copy ---------------------------------------------------------------------------------------


def selection_to_payload(graph: Graph, node_ids: list[int] | set[int]) -> dict[str, Any]:
    """The selected nodes and the links *between* them, positioned relative to their top-left corner.

    Links to nodes outside the selection are left out: pasting them would wire the copy into
    whatever graph it lands in, which is rarely what was meant (ComfyUI keeps that for Ctrl+Shift+V).
    """
    chosen = [graph.nodes[i] for i in sorted(set(node_ids)) if i in graph.nodes]
    if not chosen:
        return {"format": PAYLOAD_FORMAT, "version": PAYLOAD_VERSION, "nodes": [], "links": []}
    x0 = min(n.pos[0] for n in chosen)
    y0 = min(n.pos[1] for n in chosen)
    ids = {n.id for n in chosen}
    nodes = []
    for n in chosen:
        rec = node_record(n)
        rec["pos"] = [n.pos[0] - x0, n.pos[1] - y0]
        rec["size"] = None if n.size is None else list(n.size)
        nodes.append(rec)
    links = [
        link_record(lk)
        for lk in sorted(graph.links.values(), key=lambda lk: lk.id)
        if lk.src_node in ids and lk.dst_node in ids
    ]
    return {"format": PAYLOAD_FORMAT, "version": PAYLOAD_VERSION, "nodes": nodes, "links": links}


def dumps_payload(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)


def loads_payload(text: str | bytes) -> dict[str, Any]:
    """Parse and check clipboard JSON; raises `ClipboardFormatError` for anything that is not ours."""
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ClipboardFormatError(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != PAYLOAD_FORMAT:
        raise ClipboardFormatError("the clipboard does not hold sdgraph nodes")
    if doc.get("version") != PAYLOAD_VERSION:
        raise ClipboardFormatError(f"clipboard nodes are from an unsupported version {doc.get('version')!r}")
    nodes, links = doc.get("nodes"), doc.get("links")
    if not isinstance(nodes, list) or not isinstance(links, list):
        raise ClipboardFormatError("clipboard nodes are damaged ('nodes' and 'links' must be lists)")
    for i, n in enumerate(nodes):
        if not (isinstance(n, dict) and isinstance(n.get("id"), int) and isinstance(n.get("type"), str)):
            raise ClipboardFormatError(f"clipboard node {i} is damaged (needs an id and a type)")
        pos = n.get("pos")
        if not (isinstance(pos, list | tuple) and len(pos) == 2 and all(isinstance(v, int | float) for v in pos)):
            raise ClipboardFormatError(f"clipboard node {i} has no valid position")
        if n.get("mode", "active") not in {m.value for m in NodeMode}:
            raise ClipboardFormatError(f"clipboard node {i} has an unknown mode {n.get('mode')!r}")
    for i, lk in enumerate(links):
        keys = ("src_node", "src_output", "dst_node", "dst_input", "type")
        if not (isinstance(lk, dict) and all(k in lk for k in keys)):
            raise ClipboardFormatError(f"clipboard link {i} is damaged")
    return doc


# ---- paste --------------------------------------------------------------------------------------


def payload_to_records(
    graph: Graph, payload: dict[str, Any], at: tuple[float, float]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Node and link records for pasting `payload` into `graph` with its top-left corner at `at`.

    New ids continue the target graph's counters; the graph is not changed. Links whose ends did not
    both come along (a hand-edited payload) are dropped rather than pointing at unrelated nodes.
    """
    id_map: dict[int, int] = {}
    nodes: list[dict[str, Any]] = []
    next_id = graph.next_node_id
    for n in payload.get("nodes", []):
        rec = copy.deepcopy(n)
        id_map[n["id"]] = next_id
        rec["id"] = next_id
        next_id += 1
        rec["pos"] = (float(at[0] + n["pos"][0]), float(at[1] + n["pos"][1]))
        if rec.get("size") is not None:
            rec["size"] = (float(rec["size"][0]), float(rec["size"][1]))
        nodes.append(rec)
    links: list[dict[str, Any]] = []
    next_link = graph.next_link_id
    taken: set[tuple[int, str]] = set()
    for lk in payload.get("links", []):
        src, dst = id_map.get(lk["src_node"]), id_map.get(lk["dst_node"])
        if src is None or dst is None or (dst, lk["dst_input"]) in taken:
            continue
        taken.add((dst, lk["dst_input"]))
        rec = copy.deepcopy(lk)
        rec.update(id=next_link, src_node=src, dst_node=dst)
        next_link += 1
        links.append(rec)
    return nodes, links


# ---- the system clipboard (Qt, imported lazily) -----------------------------------------------


def write_system_clipboard(payload: dict[str, Any]) -> None:
    """Put the payload on the system clipboard under our MIME type and as plain text (for pasting into chat)."""
    from PySide6.QtCore import QMimeData
    from PySide6.QtGui import QGuiApplication

    text = dumps_payload(payload)
    mime = QMimeData()
    mime.setData(MIME_TYPE, text.encode())
    mime.setText(text)
    QGuiApplication.clipboard().setMimeData(mime)
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(_downgrade_to_text_at_exit)
        _exit_hook_registered = True


_exit_hook_registered = False


def _downgrade_to_text_at_exit() -> None:
    """Swap our Python-made QMimeData for plain text before the interpreter shuts down.

    PySide6 (6.11 and 6.12 checked) segfaults at exit when a QMimeData created from Python is still on
    the clipboard as the application is torn down. Text set with `setText` is created on the C++ side
    and is safe; it still pastes, here (`read_system_clipboard` accepts the JSON text) and elsewhere.
    """
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance()
    if app is None:
        return
    clipboard = QGuiApplication.clipboard()
    mime = clipboard.mimeData()
    if mime is not None and mime.hasFormat(MIME_TYPE):
        clipboard.setText(mime.text())


def read_system_clipboard() -> dict[str, Any] | None:
    """Our payload from the system clipboard (our MIME type, or JSON text of it), else None."""
    from PySide6.QtGui import QGuiApplication

    mime = QGuiApplication.clipboard().mimeData()
    if mime is None:
        return None
    raw: str | bytes | None = None
    if mime.hasFormat(MIME_TYPE):
        raw = bytes(mime.data(MIME_TYPE).data())
    elif mime.hasText() and PAYLOAD_FORMAT in mime.text():
        raw = mime.text()
    if raw is None:
        return None
    try:
        return loads_payload(raw)
    except ClipboardFormatError:
        return None
