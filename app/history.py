"""The run history: every finished run's images with the graph that made them, kept across launches.

One SQLite file, `<home>/history.sqlite3`, shared by the editor and (later) an HTTP server, so this
module knows nothing of Qt or torch: callers hand over plain data, thumbnails included as PNG bytes.

Why SQLite and how it stays sound:

* WAL journal mode: readers (a gallery listing runs) never block the one writer, and a writer that
  dies mid-transaction leaves only an uncommitted tail in the WAL that the next open ignores.
* Each run is recorded in one transaction (`BEGIN IMMEDIATE … COMMIT`): a crash, a full disk or an
  exception halfway leaves the database exactly as it was before that run, never half a run.
* `synchronous=NORMAL`: in WAL mode that is crash-safe for the application (a power cut may lose the
  last run, never corrupt the file), and recording a run does not wait for an fsync per image.
* A `schema_version` table; a file written by a newer sdgraph is refused rather than misread.

Listing is what must be fast (1,000 runs in well under 0.5 s, see `bench/history.py`), so the big
parts live in their own tables: the workflow JSON in `workflows`, thumbnails in `thumbnails`. A
listing reads only the small `runs` and `images` rows; a gallery asks `thumbnail(image_id)` for the
items it actually shows, and `workflow(run_id)` only when a run is reopened.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
DB_NAME = "history.sqlite3"

# Inputs that name the model a run used (checkpoint loaders, diffusion-model loaders).
MODEL_KEYS = ("ckpt_name", "unet_name")
# Inputs that hold prompt text (CLIPTextEncode, the SDXL/SD3/Flux encoders, a Primitive's value).
PROMPT_KEYS = ("text", "text_g", "text_l", "clip_l", "clip_g", "t5xxl", "prompt", "value")
# Links a prompt travels along on its way to a sampler's `positive` input.
_PROMPT_LINK_TYPES = frozenset({"CONDITIONING", "STRING", "*"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL NOT NULL,
    status TEXT NOT NULL,
    prompt TEXT NOT NULL DEFAULT '',
    prompt_key TEXT NOT NULL DEFAULT '',
    models TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started);
CREATE TABLE IF NOT EXISTS run_models (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE INDEX IF NOT EXISTS run_models_name ON run_models (name, run_id);
CREATE TABLE IF NOT EXISTS workflows (
    run_id INTEGER PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    node_id INTEGER,
    path TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS images_run ON images (run_id, position);
CREATE TABLE IF NOT EXISTS thumbnails (
    image_id INTEGER PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    png BLOB NOT NULL
);
"""


class HistoryError(Exception):
    """The history file cannot be used (damaged, or written by a newer sdgraph); says which and why."""


@dataclass
class RecordedImage:
    """One output image of a run, as the caller hands it over (`thumbnail`: PNG bytes, or None)."""

    path: str
    width: int
    height: int
    node_id: int | None = None
    thumbnail: bytes | None = None


@dataclass
class RunRecord:
    """A finished run to record. `models`/`prompts` left as None are read from the workflow."""

    workflow: Mapping[str, Any]
    images: Sequence[RecordedImage] = ()
    started: float = field(default_factory=time.time)
    finished: float = field(default_factory=time.time)
    status: str = "done"
    models: Sequence[str] | None = None
    prompts: Sequence[str] | None = None


@dataclass(frozen=True)
class HistoryImage:
    id: int
    run_id: int
    path: str
    width: int
    height: int
    node_id: int | None


@dataclass(frozen=True)
class HistoryRun:
    """A listed run: everything but the workflow and the thumbnails (ask the store for those)."""

    id: int
    started: float
    finished: float
    status: str
    prompt: str
    models: tuple[str, ...]
    images: tuple[HistoryImage, ...]


def describe_workflow(workflow: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The model names and positive prompt texts of a saved workflow (`graph_to_dict` form).

    Models: the checkpoint / diffusion-model names of its loader nodes. Prompts: the text inputs of
    the nodes that feed a sampler's `positive` input (following conditioning links back, through
    combiners and guidance nodes). A graph with no `positive` input (a Flux BasicGuider) starts from
    every conditioning input instead, except `negative` ones.
    """
    nodes: dict[int, Mapping[str, Any]] = {}
    for raw in workflow.get("nodes") or []:
        if isinstance(raw, Mapping) and isinstance(raw.get("id"), int):
            nodes[raw["id"]] = raw
    links: list[tuple[int, int, str, str]] = []  # src, dst, dst input, type
    for raw in workflow.get("links") or []:
        if not isinstance(raw, Mapping):
            continue
        src, dst = raw.get("src"), raw.get("dst")
        if isinstance(src, list | tuple) and isinstance(dst, list | tuple) and len(src) >= 1 and len(dst) >= 2:
            links.append((src[0], dst[0], str(dst[1]), str(raw.get("type", ""))))

    def inputs(node: Mapping[str, Any]) -> Mapping[str, Any]:
        values = node.get("inputs")
        return values if isinstance(values, Mapping) else {}

    models: list[str] = []
    for node in nodes.values():
        for key in MODEL_KEYS:
            value = inputs(node).get(key)
            if isinstance(value, str) and value and value not in models:
                models.append(value)

    roots = [src for src, _dst, name, _t in links if name == "positive"]
    if not roots:
        roots = [src for src, _dst, name, t in links if t == "CONDITIONING" and name != "negative"]
    seen: set[int] = set()
    frontier = list(roots)
    while frontier:
        nid = frontier.pop()
        if nid in seen or nid not in nodes:
            continue
        seen.add(nid)
        frontier.extend(src for src, dst, _n, t in links if dst == nid and t in _PROMPT_LINK_TYPES)
    prompts: list[str] = []
    for nid in sorted(seen):
        for key in PROMPT_KEYS:
            value = inputs(nodes[nid]).get(key)
            if isinstance(value, str) and value.strip() and value.strip() not in prompts:
                prompts.append(value.strip())
    return models, prompts


def default_path() -> Path:
    """`<home>/history.sqlite3`: the user data folder, or `$SDGRAPH_HOME` (tests always set it)."""
    from app.settings import home_dir

    return home_dir() / DB_NAME


class HistoryStore:
    """The run history in one SQLite file. Thread-safe: one connection, one lock, short statements.

    `list()` returns lightweight rows, newest first; `thumbnail()` and `workflow()` fetch the heavy
    parts one at a time. Nothing here deletes image files unless `delete(..., delete_files=True)`.
    """

    def __init__(self, path: Path | str | None = None, *, timeout: float = 5.0) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are begun and ended explicitly below, never implicitly.
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=timeout)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"the history at {self.path} cannot be opened: {exc}") from None
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise HistoryError(f"the history at {self.path} is damaged or not a history file: {exc}") from None
        except HistoryError:
            self._conn.close()
            raise

    def _setup(self) -> None:
        c = self._conn
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA foreign_keys=ON")
        with self._transaction():
            # One statement at a time: executescript() would commit on its own, outside this transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            row = c.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                c.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise HistoryError(
                    f"the history at {self.path} was written by a newer sdgraph (schema {row[0]}, "
                    f"this version reads {SCHEMA_VERSION}); it was left untouched"
                )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is committed, or (on any exception) none of it."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # a broken connection has nothing to roll back
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[sqlite3.Connection]:
        """Serialise access to the connection; SQLite's errors (locked too long, disk trouble, closed)
        come out as `HistoryError` saying what was being done, the one error callers handle."""
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise HistoryError(f"the history could not be {what}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- writing ------------------------------------------------------------------------------------

    def record(self, run: RunRecord) -> int:
        """Store one run with its images and thumbnails, atomically; returns the run's id.

        Waits up to `timeout` seconds for another process's write to end, then raises `HistoryError`."""
        found_models, found_prompts = describe_workflow(run.workflow)
        models = list(dict.fromkeys(run.models if run.models is not None else found_models))
        prompts = list(run.prompts if run.prompts is not None else found_prompts)
        prompt = "\n".join(prompts)
        workflow_json = json.dumps(run.workflow, separators=(",", ":"))
        try:
            with self._transaction() as c:
                cur = c.execute(
                    "INSERT INTO runs (started, finished, status, prompt, prompt_key, models)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (run.started, run.finished, run.status, prompt, prompt.casefold(), json.dumps(models)),
                )
                run_id = int(cur.lastrowid or 0)
                c.execute("INSERT INTO workflows (run_id, json) VALUES (?, ?)", (run_id, workflow_json))
                c.executemany("INSERT INTO run_models (run_id, name) VALUES (?, ?)", [(run_id, m) for m in models])
                for position, image in enumerate(run.images):
                    cur = c.execute(
                        "INSERT INTO images (run_id, position, node_id, path, width, height) VALUES (?, ?, ?, ?, ?, ?)",
                        (run_id, position, image.node_id, str(image.path), int(image.width), int(image.height)),
                    )
                    if image.thumbnail:
                        c.execute(
                            "INSERT INTO thumbnails (image_id, png) VALUES (?, ?)",
                            (cur.lastrowid, sqlite3.Binary(image.thumbnail)),
                        )
        except sqlite3.Error as exc:
            raise HistoryError(f"the run could not be added to the history at {self.path}: {_reason(exc)}") from None
        return run_id

    def delete(self, run_id: int, *, delete_files: bool = False) -> list[str]:
        """Forget a run (its images' files stay unless `delete_files`); returns the image paths it had."""
        with self._reading("changed"), self._transaction() as c:
            paths = [r[0] for r in c.execute("SELECT path FROM images WHERE run_id = ? ORDER BY position", (run_id,))]
            c.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        if delete_files:
            for p in paths:
                with contextlib.suppress(OSError):
                    Path(p).unlink(missing_ok=True)
        return paths

    # ---- reading ------------------------------------------------------------------------------------

    def workflow(self, run_id: int) -> dict[str, Any] | None:
        """The graph that made the run, as saved (`graph_to_dict`), or None when the run is gone."""
        with self._reading("read"):
            row = self._conn.execute("SELECT json FROM workflows WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        doc = json.loads(row[0])
        return doc if isinstance(doc, dict) else None

    def thumbnail(self, image_id: int) -> bytes | None:
        with self._reading("read"):
            row = self._conn.execute("SELECT png FROM thumbnails WHERE image_id = ?", (image_id,)).fetchone()
        return bytes(row[0]) if row is not None else None

    def models(self) -> builtins.list[str]:
        """Every model name some recorded run used, sorted (for a filter's choices)."""
        with self._reading("read"):
            return [r[0] for r in self._conn.execute("SELECT DISTINCT name FROM run_models ORDER BY name")]

    def count(self) -> int:
        with self._reading("read"):
            return int(self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def list(
        self,
        query: str = "",
        model: str = "",
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[HistoryRun]:
        """Runs newest first. `query`: words that must all appear in the prompt (any case); `model`: a
        model name the run used; `since`/`until`: start time bounds (unix seconds, `until` exclusive)."""
        where: builtins.list[str] = []
        args: builtins.list[Any] = []
        for word in query.casefold().split():
            where.append("instr(r.prompt_key, ?) > 0")
            args.append(word)
        if model:
            where.append("EXISTS (SELECT 1 FROM run_models m WHERE m.run_id = r.id AND m.name = ?)")
            args.append(model)
        if since is not None:
            where.append("r.started >= ?")
            args.append(since)
        if until is not None:
            where.append("r.started < ?")
            args.append(until)
        sql = "SELECT r.id, r.started, r.finished, r.status, r.prompt, r.models FROM runs r"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.started DESC, r.id DESC LIMIT ? OFFSET ?"
        args += [-1 if limit is None else int(limit), int(offset)]
        with self._reading("listed"):
            rows = self._conn.execute(sql, args).fetchall()
            images: dict[int, builtins.list[HistoryImage]] = {r[0]: [] for r in rows}
            for chunk in _chunks([r[0] for r in rows], 500):
                marks = ",".join("?" * len(chunk))
                for i in self._conn.execute(
                    f"SELECT id, run_id, path, width, height, node_id FROM images "
                    f"WHERE run_id IN ({marks}) ORDER BY run_id, position",
                    chunk,
                ):
                    images[i[1]].append(HistoryImage(i[0], i[1], i[2], i[3], i[4], i[5]))
        return [HistoryRun(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), tuple(images[r[0]])) for r in rows]


def _reason(exc: sqlite3.Error) -> str:
    """SQLite's text for a full disk ("database or disk is full") said the way every other write says it."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
        return f"no space left on the disk ({exc})"
    return str(exc)


def _chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    """SQLite caps the number of `?` in one statement; ask in slices."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "HistoryError",
    "HistoryImage",
    "HistoryRun",
    "HistoryStore",
    "RecordedImage",
    "RunRecord",
    "default_path",
    "describe_workflow",
]
