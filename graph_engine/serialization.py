"""Workflow files: versioned JSON with values by name, saved atomically.

    {"format": "sdgraph.workflow", "schema_version": 2, "app_version": "...",
     "state": {"next_node_id": 8, "next_link_id": 10, "next_group_id": 1},
     "nodes": [{"id": 3, "type": "KSampler", "pos": [x, y], "mode": "active",
                "inputs": {"seed": 42, "steps": 20, ...}, ...}],
     "links": [{"id": 1, "src": [4, "MODEL"], "dst": [3, "model"], "type": "MODEL"}],
     "groups": [{"id": 1, "title": "...", "bounding": [x, y, w, h]}],
     "view": {"center": [x, y], "scale": 1.0},
     "extra": {...}}

Input values are stored by input id, never by position. Keys this version does not know are kept on
the node, link, group or top level and written back unchanged. Older files are brought forward by
the migrations in `MIGRATIONS` before they are read; a file that still does not fit raises one
`WorkflowFormatError` saying where and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graph_engine.model import Graph, GraphError, NodeMode

FORMAT = "sdgraph.workflow"
SCHEMA_VERSION = 2
APP_VERSION = "0.1.0"
# The PNG text chunk saved images carry their workflow in, so an image reopens as its graph.
PNG_WORKFLOW_KEY = "sdgraph_workflow"


class WorkflowFormatError(ValueError):
    """A workflow file that cannot be read; the message says where in the file and what is wrong."""


# ---- migrations -------------------------------------------------------------------------------


def _migrate_0_to_1(doc: dict[str, Any]) -> dict[str, Any]:
    """Schema 0 (development builds) stored values under "values" and links as arrays."""
    doc = dict(doc)
    if not isinstance(doc.get("nodes", []), list) or not isinstance(doc.get("links", []), list):
        raise WorkflowFormatError("'nodes' and 'links' must be lists")
    nodes = []
    for n in doc.get("nodes", []):
        if isinstance(n, dict) and "values" in n and "inputs" not in n:
            n = dict(n)
            n["inputs"] = n.pop("values")
        nodes.append(n)
    doc["nodes"] = nodes
    links = []
    for lk in doc.get("links", []):
        if isinstance(lk, list) and len(lk) == 6:
            lid, src, out, dst, inp, typ = lk
            lk = {"id": lid, "src": [src, out], "dst": [dst, inp], "type": typ}
        links.append(lk)
    doc["links"] = links
    doc["schema_version"] = 1
    return doc


# What sdgraph's forward-noise node (type `AddNoise` up to schema 1, `ForwardNoise` since) takes: its
# sockets and its widgets. ComfyUI's AddNoise (model, noise, sigmas, latent_image) shares none of these
# names, which is how the migration tells the two apart.
_FORWARD_NOISE_INPUTS = {"image", "latent", "vae", "t", "schedule", "seed", "shift"}


def _is_forward_noise(node: dict[str, Any], links_in: set[str]) -> bool:
    """A schema-1 `AddNoise` node is sdgraph's forward-noise node unless something on it says otherwise:
    a value or a link under a name the forward-noise node does not have (ComfyUI's AddNoise
    has model, noise, sigmas and latent_image). Schema 1 knew only the forward-noise node by this name,
    so a node with nothing set is one too."""
    values = node.get("inputs", {})
    names = set(values) if isinstance(values, dict) else set()
    return (names | links_in) <= _FORWARD_NOISE_INPUTS


def _migrate_1_to_2(doc: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 gave sdgraph's forward-noise node its own type, `ForwardNoise`: `AddNoise` is ComfyUI's
    custom-sampling node, so ComfyUI workflows using it run. Schema-1 `AddNoise` nodes shaped like the
    forward-noise node are renamed; any other (a ComfyUI AddNoise kept as a placeholder) keeps its name."""
    doc = dict(doc)
    if not isinstance(doc.get("nodes", []), list) or not isinstance(doc.get("links", []), list):
        raise WorkflowFormatError("'nodes' and 'links' must be lists")
    links_in: dict[Any, set[str]] = {}
    for lk in doc.get("links", []):
        dst = lk.get("dst") if isinstance(lk, dict) else None
        if isinstance(dst, list) and len(dst) == 2 and isinstance(dst[0], int) and isinstance(dst[1], str):
            links_in.setdefault(dst[0], set()).add(dst[1])
    nodes = []
    for n in doc.get("nodes", []):
        if isinstance(n, dict) and n.get("type") == "AddNoise":
            nid = n.get("id")
            if _is_forward_noise(n, links_in.get(nid, set()) if isinstance(nid, int) else set()):
                n = {**n, "type": "ForwardNoise"}
        nodes.append(n)
    doc["nodes"] = nodes
    doc["schema_version"] = 2
    return doc


# from-version -> function producing the next version's document
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _migrate_0_to_1, 1: _migrate_1_to_2}


def migrate(doc: dict[str, Any]) -> dict[str, Any]:
    version = doc.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise WorkflowFormatError(f"'schema_version' must be a whole number, got {version!r}")
    if version > SCHEMA_VERSION:
        raise WorkflowFormatError(
            f"this workflow was saved by a newer sdgraph (schema {version}; this version reads up to "
            f"{SCHEMA_VERSION}); update sdgraph to open it"
        )
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise WorkflowFormatError(f"schema version {version} is not supported")
        doc = step(doc)
        version = doc["schema_version"]
    return doc


# ---- reading ----------------------------------------------------------------------------------

_NODE_KEYS = {"id", "type", "inputs", "pos", "size", "title", "mode", "color", "flags"}
_LINK_KEYS = {"id", "src", "dst", "type"}
_GROUP_KEYS = {"id", "title", "bounding", "color"}
_TOP_KEYS = {"format", "schema_version", "app_version", "state", "nodes", "links", "groups", "view", "extra"}


def _int_id(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**53:
        raise WorkflowFormatError(f"{where}: expected a non-negative whole-number id, got {value!r}")
    return value


def _numbers(value: Any, n: int, where: str) -> tuple[float, ...]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != n
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) for v in value)
    ):
        raise WorkflowFormatError(f"{where}: expected a list of {n} finite numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _str(value: Any, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not optional and not value):
        raise WorkflowFormatError(f"{where}: expected text, got {value!r}")
    return value


def _endpoint(value: Any, where: str) -> tuple[int, str]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise WorkflowFormatError(f"{where}: expected [node id, socket id], got {value!r}")
    return _int_id(value[0], where), str(_str(value[1], where))


def graph_from_dict(doc: Any) -> Graph:
    """Build a graph from a parsed workflow document; raises `WorkflowFormatError` on anything amiss."""
    if not isinstance(doc, dict):
        raise WorkflowFormatError("a workflow must be a JSON object")
    if doc.get("format") != FORMAT:
        raise WorkflowFormatError(f"not an sdgraph workflow ('format' is {doc.get('format')!r}, expected {FORMAT!r})")
    doc = migrate(doc)
    graph = Graph()
    try:
        _fill(graph, doc)
    except GraphError as exc:
        raise WorkflowFormatError(str(exc)) from None
    return graph


def _fill(graph: Graph, doc: dict[str, Any]) -> None:
    for key in ("nodes", "links", "groups"):
        if not isinstance(doc.get(key, []), list):
            raise WorkflowFormatError(f"'{key}' must be a list")
    for i, n in enumerate(doc.get("nodes", [])):
        where = f"nodes[{i}]"
        if not isinstance(n, dict):
            raise WorkflowFormatError(f"{where}: expected an object")
        nid = _int_id(n.get("id"), f"{where}.id")
        if nid in graph.nodes:
            raise WorkflowFormatError(f"{where}.id: node id {nid} appears twice")
        values = n.get("inputs", {})
        if not isinstance(values, dict):
            raise WorkflowFormatError(f"{where}.inputs: expected an object of values by input name")
        mode = n.get("mode", "active")
        if not isinstance(mode, str) or mode not in {m.value for m in NodeMode}:
            raise WorkflowFormatError(f"{where}.mode: expected active, bypass or mute, got {mode!r}")
        flags = n.get("flags", {})
        if not isinstance(flags, dict):
            raise WorkflowFormatError(f"{where}.flags: expected an object")
        graph.add_node(
            str(_str(n.get("type"), f"{where}.type")),
            values,
            id=nid,
            pos=_numbers(n.get("pos", [0, 0]), 2, f"{where}.pos"),  # type: ignore[arg-type]
            size=None if n.get("size") is None else _numbers(n["size"], 2, f"{where}.size"),
            title=_str(n.get("title"), f"{where}.title", optional=True),
            mode=NodeMode(mode),
            color=_str(n.get("color"), f"{where}.color", optional=True),
            flags=flags,
            extra={k: v for k, v in n.items() if k not in _NODE_KEYS},
        )
    for i, lk in enumerate(doc.get("links", [])):
        where = f"links[{i}]"
        if not isinstance(lk, dict):
            raise WorkflowFormatError(f"{where}: expected an object")
        lid = _int_id(lk.get("id"), f"{where}.id")
        src, out = _endpoint(lk.get("src"), f"{where}.src")
        dst, inp = _endpoint(lk.get("dst"), f"{where}.dst")
        for node_id, end in ((src, "src"), (dst, "dst")):
            if node_id not in graph.nodes:
                raise WorkflowFormatError(f"{where}.{end}: node {node_id} does not exist")
        if lid in graph.links:
            raise WorkflowFormatError(f"{where}.id: link id {lid} appears twice")
        if graph.link_into(dst, inp) is not None:
            raise WorkflowFormatError(f"{where}: input {inp!r} of node {dst} has two links")
        link = graph.add_link(src, out, dst, inp, str(_str(lk.get("type"), f"{where}.type")), id=lid)
        link.extra.update({k: v for k, v in lk.items() if k not in _LINK_KEYS})
    for i, g in enumerate(doc.get("groups", [])):
        where = f"groups[{i}]"
        if not isinstance(g, dict):
            raise WorkflowFormatError(f"{where}: expected an object")
        gid = _int_id(g.get("id"), f"{where}.id")
        if gid in graph.groups:
            raise WorkflowFormatError(f"{where}.id: group id {gid} appears twice")
        graph.add_group(
            _str(g.get("title", ""), f"{where}.title", optional=True) or "",
            _numbers(g.get("bounding"), 4, f"{where}.bounding"),  # type: ignore[arg-type]
            id=gid,
            color=_str(g.get("color"), f"{where}.color", optional=True),
            extra={k: v for k, v in g.items() if k not in _GROUP_KEYS},
        )
    state = doc.get("state", {})
    if not isinstance(state, dict):
        raise WorkflowFormatError("'state' must be an object")
    for key, attr in (
        ("next_node_id", "next_node_id"),
        ("next_link_id", "next_link_id"),
        ("next_group_id", "next_group_id"),
    ):
        if key in state:
            value = _int_id(state[key], f"state.{key}")
            setattr(graph, attr, max(getattr(graph, attr), value))
    view = doc.get("view", {})
    extra = doc.get("extra", {})
    if not isinstance(view, dict) or not isinstance(extra, dict):
        raise WorkflowFormatError("'view' and 'extra' must be objects")
    graph.view = dict(view)
    graph.extra = dict(extra)
    unknown = {k: v for k, v in doc.items() if k not in _TOP_KEYS}
    if unknown:
        graph.extra.setdefault("__unknown_top_level__", {}).update(unknown)


def loads(text: str | bytes) -> Graph:
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WorkflowFormatError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise WorkflowFormatError("not valid JSON: nested too deeply") from None
    return graph_from_dict(doc)


def load(path: Path | str) -> Graph:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorkflowFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return loads(data)
    except WorkflowFormatError as exc:
        raise WorkflowFormatError(f"{path.name}: {exc}") from None


# ---- writing ----------------------------------------------------------------------------------


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def graph_to_dict(graph: Graph) -> dict[str, Any]:
    nodes = []
    for n in sorted(graph.nodes.values(), key=lambda n: n.id):
        d: dict[str, Any] = {"id": n.id, "type": n.type, "pos": [_num(n.pos[0]), _num(n.pos[1])]}
        if n.size is not None:
            d["size"] = [_num(n.size[0]), _num(n.size[1])]
        if n.title:
            d["title"] = n.title
        d["mode"] = n.mode.value
        if n.color:
            d["color"] = n.color
        if n.flags:
            d["flags"] = n.flags
        d["inputs"] = dict(n.values)
        d.update(n.extra)
        nodes.append(d)
    links = []
    for lk in sorted(graph.links.values(), key=lambda lk: lk.id):
        links.append(
            {"id": lk.id, "src": [lk.src_node, lk.src_output], "dst": [lk.dst_node, lk.dst_input], "type": lk.type}
            | lk.extra
        )
    groups = []
    for g in sorted(graph.groups.values(), key=lambda g: g.id):
        gd: dict[str, Any] = {"id": g.id, "title": g.title, "bounding": [_num(v) for v in g.bounding]}
        if g.color:
            gd["color"] = g.color
        groups.append(gd | g.extra)
    extra = dict(graph.extra)
    unknown_top = extra.pop("__unknown_top_level__", {})
    doc: dict[str, Any] = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "app_version": APP_VERSION,
        "state": {
            "next_node_id": graph.next_node_id,
            "next_link_id": graph.next_link_id,
            "next_group_id": graph.next_group_id,
        },
        "nodes": nodes,
        "links": links,
        "groups": groups,
        "view": graph.view,
        "extra": extra,
    }
    doc.update(unknown_top)
    return doc


def dumps(graph: Graph) -> str:
    return json.dumps(graph_to_dict(graph), indent=2, ensure_ascii=False) + "\n"


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows.

    `os.umask` can only be read by setting it, which for a moment gives files other threads create
    mode 0o666/0o777; Linux reports it in /proc, so that racy dance is only the fallback.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode_for(path: Path | str) -> int:
    """The mode a file written at `path` should get: the existing file's, or 0o666 less the umask.

    Atomic writes go through `tempfile.mkstemp`, which creates files 0o600 whatever the umask; a file
    saved that way would be private although a plain `open(path, "w")` makes it readable to the group
    or everyone. Replacing a file keeps its mode, as editing it in place would.
    """
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~current_umask()


def set_file_mode(fd_or_path: int | str | Path, mode: int) -> None:
    """chmod where the OS has POSIX modes (on Windows a mode only means read-only, so it is skipped)."""
    if os.name != "posix":
        return
    if isinstance(fd_or_path, int):
        os.fchmod(fd_or_path, mode)
    else:
        os.chmod(fd_or_path, mode)


_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{6})-(?P<pid>\d+)\.[^.]+\.tmp$")
STALE_TEMP_AGE_S = 24 * 3600  # where a writer's pid cannot be checked, only this old a temp counts as left over
_HOST_TAG = hashlib.blake2b(socket.gethostname().encode(), digest_size=3).hexdigest()


def temp_prefix(name: str, pid: int | None = None) -> str:
    """`.<name>.<host>-<pid>.`: whose temp file this is, so a later start can tell a dead writer's.

    The host tag keeps a folder shared between machines safe: another machine's pid means nothing
    here, so its temps are only treated as left over once they are a day old.
    """
    return f".{name}.{_HOST_TAG}-{os.getpid() if pid is None else pid}."


def _writer_gone(pid: int) -> bool:
    """Whether the process that made a temp file has ended (False when unsure: its file is kept)."""
    if os.name != "posix" or pid <= 0:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists but belongs to someone else, or we may not ask
        return False
    return False


def remove_stale_temps(folder: Path | str, name: str | None = None) -> list[Path]:
    """Delete temp files that killed writers left in `folder` (only those of `name` when given).

    `atomic_write` names its temp `.<name>.<host>-<pid>.<random>.tmp`. A SIGKILL or power cut between the
    temp's creation and the rename leaves it behind; the target itself is intact, and the temp is a
    hidden file no listing shows, but it takes space. A temp whose process on this machine is gone
    (or, another machine's or where a pid cannot be checked, one older than a day) is removed; a live
    writer's temp is never touched.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or (name is not None and match["name"] != name):
            continue
        try:
            here = match["host"] == _HOST_TAG and os.name == "posix"
            gone = _writer_gone(int(match["pid"])) if here else now - entry.stat().st_mtime > STALE_TEMP_AGE_S
            if gone and entry.is_file():
                entry.unlink()
                removed.append(entry)
        except OSError:
            continue
    return removed


def atomic_write(path: Path | str, data: bytes | str, *, fsync: bool = True) -> None:
    """Write via a temp file in the same folder, fsync, rename: a crash leaves the old file or the new one.

    The file gets the mode a plain write would give it (`file_mode_for`), not mkstemp's 0o600.
    `fsync=False` skips the flushes for files that are cheap to lose (previews), not the atomic rename.
    A failure (a full disk, no permission) raises `OSError` naming `path`, not the temp file, so the
    message tells the user which file was not written; the temp is removed and `path` is untouched.
    Temps of earlier writers of `path` that were killed are removed first (`remove_stale_temps`).
    """
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    mode = file_mode_for(path)
    remove_stale_temps(path.parent, path.name)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
        set_file_mode(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    if not fsync:
        return
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def save(graph: Graph, path: Path | str) -> None:
    atomic_write(path, dumps(graph))
