"""Crash recovery: unsaved work is copied to `<home>/autosave/` and offered back after a crash.

Three kinds of file live in the autosave folder:

- `session-<id>.lock`: written when a window session starts, removed when it exits cleanly. A lock
  whose process is gone means that session crashed (or was killed), so its autosaves are worth
  offering back. A lock whose process still runs belongs to another open window and is left alone.
- `<name>.json`: the graph, written atomically (temp file, fsync, rename), so a crash mid-write
  leaves the previous autosave, never a torn one.
- `<name>.manifest.json`: which file the graph belongs to (`original`, or null for an untitled
  graph), when it was written and by which session.

An autosave is only offered when it is newer than the file it belongs to: if the user saved after the
last autosave, the file on disk already holds everything. A clean exit deletes the session's
autosaves with its lock; the user has either saved or chosen to discard by then.

`AutosaveStore` is the folder and its rules (no timers, easy to test); `Autosaver` is the Qt part that
writes every ~30 s while the document is dirty.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from graph_engine import Graph
from graph_engine.serialization import WorkflowFormatError, atomic_write, dumps, load, remove_stale_temps

AUTOSAVE_INTERVAL_MS = 30_000


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (False when unsure it does)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process on Windows
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return bool(ok) and code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Recovery:
    """One autosave left behind by a session that did not exit cleanly."""

    graph_path: Path
    manifest_path: Path
    original: Path | None
    saved_at: float
    session: str

    @property
    def display_name(self) -> str:
        return self.original.name if self.original else "Untitled"

    def load(self) -> Graph:
        return load(self.graph_path)

    def remove(self) -> None:
        self.graph_path.unlink(missing_ok=True)
        self.manifest_path.unlink(missing_ok=True)


class AutosaveStore:
    """The autosave folder of one home directory, seen from one session."""

    def __init__(self, root: Path, *, pid: int | None = None, session: str | None = None) -> None:
        self.root = Path(root)
        self.pid = os.getpid() if pid is None else pid
        self.host = socket.gethostname()
        # pid plus start time: a later process that happens to reuse the pid is a different session.
        self.session = session or f"{self.pid}-{int(time.time() * 1000)}"
        self._untitled = 0

    # ---- the session lock -------------------------------------------------------------------------

    @property
    def lock_path(self) -> Path:
        return self.root / f"session-{self.session}.lock"

    def start_session(self) -> None:
        """Take the lock; temp files of autosaves that a killed session was writing are removed."""
        self.root.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.root)
        info = {"pid": self.pid, "host": self.host, "started": time.time()}
        atomic_write(self.lock_path, json.dumps(info))

    def end_session(self) -> None:
        """The clean-exit path: this session's autosaves and its lock go; nothing is left to recover."""
        for manifest in self._manifests():
            data = _read_json(manifest)
            if data is not None and data.get("session") == self.session:
                _autosave_for(manifest).unlink(missing_ok=True)
                manifest.unlink(missing_ok=True)
        self.lock_path.unlink(missing_ok=True)

    def _session_crashed(self, session: str) -> bool:
        if session == self.session:
            return False
        info = _read_json(self.root / f"session-{session}.lock")
        if info is None:  # no lock: that session exited cleanly (or the lock was already handled)
            return False
        if info.get("host") not in (None, self.host):
            return False  # a shared home folder; we cannot tell whether that machine's window is open
        pid = info.get("pid")
        return not (isinstance(pid, int) and pid_alive(pid))

    # ---- writing ----------------------------------------------------------------------------------

    def name_for(self, original: Path | None) -> str:
        """A stable file name per document: the stem plus a hash of the full path (two `a.json`s differ)."""
        if original is None:
            self._untitled += 1
            return f"untitled-{self.session}-{self._untitled}"
        digest = hashlib.blake2b(str(Path(original).resolve()).encode(), digest_size=4).hexdigest()
        return f"{Path(original).stem}-{digest}"

    def write(self, graph: Graph, name: str, original: Path | None) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / f"{name}.json"
        atomic_write(target, dumps(graph))
        manifest = {
            "original": str(Path(original).resolve()) if original else None,
            "saved_at": time.time(),
            "session": self.session,
            "pid": self.pid,
        }
        atomic_write(self.root / f"{name}.manifest.json", json.dumps(manifest, indent=2))
        return target

    def discard(self, name: str) -> None:
        (self.root / f"{name}.json").unlink(missing_ok=True)
        (self.root / f"{name}.manifest.json").unlink(missing_ok=True)

    # ---- recovering -------------------------------------------------------------------------------

    def _manifests(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(self.root.glob("*.manifest.json"))

    def recoverable(self) -> list[Recovery]:
        """Autosaves from crashed sessions that hold more than the file they belong to, newest first."""
        found: list[Recovery] = []
        for manifest in self._manifests():
            data = _read_json(manifest)
            graph_path = _autosave_for(manifest)
            if data is None or not graph_path.is_file():
                continue
            session = str(data.get("session", ""))
            if not self._session_crashed(session):
                continue
            original = Path(data["original"]) if isinstance(data.get("original"), str) else None
            saved_at = float(data.get("saved_at", 0.0))
            if original is not None and original.is_file() and original.stat().st_mtime >= saved_at:
                continue  # saved after the last autosave: the file already has it all
            found.append(Recovery(graph_path, manifest, original, saved_at, session))
        return sorted(found, key=lambda r: r.saved_at, reverse=True)

    def forget_crashed_sessions(self) -> None:
        """After the user has answered: drop every crashed session's leftovers, so they are asked once."""
        for manifest in self._manifests():
            data = _read_json(manifest)
            if data is not None and self._session_crashed(str(data.get("session", ""))):
                _autosave_for(manifest).unlink(missing_ok=True)
                manifest.unlink(missing_ok=True)
        for lock in self.root.glob("session-*.lock") if self.root.is_dir() else []:
            session = lock.name[len("session-") : -len(".lock")]
            if self._session_crashed(session):
                lock.unlink(missing_ok=True)


def _autosave_for(manifest: Path) -> Path:
    return manifest.with_name(manifest.name[: -len(".manifest.json")] + ".json")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Autosaver(QObject):
    """Writes the current document to the store every ~30 s while it is dirty, and on request.

    The window tells it which document is current (`track`) and whether it is dirty (a callable, so
    the undo stack stays the single source of truth). A graph unchanged since the last write is not
    written again.
    """

    saved = Signal(str)  # path of the autosave
    failed = Signal(str)

    def __init__(self, store: AutosaveStore, interval_ms: int = AUTOSAVE_INTERVAL_MS, parent: QObject | None = None):
        super().__init__(parent)
        self.store = store
        self._graph: Graph | None = None
        self._original: Path | None = None
        self._is_dirty: Callable[[], bool] = lambda: False
        self._name: str | None = None
        self._written_revision: int | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.save_if_dirty)
        self._timer.start()

    @property
    def current_name(self) -> str | None:
        return self._name

    def track(self, graph: Graph, original: Path | None, is_dirty: Callable[[], bool]) -> None:
        """Follow a newly opened document; the previous one's autosave is dropped (it was saved or discarded)."""
        if self._name is not None:
            self.store.discard(self._name)
        self._graph, self._original, self._is_dirty = graph, original, is_dirty
        self._name = self.store.name_for(original)
        self._written_revision = None

    def rename(self, original: Path) -> None:
        """The document was saved under a (new) path: later autosaves belong to that file."""
        if self._name is not None:
            self.store.discard(self._name)
        self._original = original
        self._name = self.store.name_for(original)
        self._written_revision = None

    def save_if_dirty(self) -> Path | None:
        if self._graph is None or self._name is None or not self._is_dirty():
            return None
        if self._written_revision == self._graph.revision:
            return None
        try:
            path = self.store.write(self._graph, self._name, self._original)
        except (OSError, WorkflowFormatError) as exc:  # a full disk must not break editing
            self.failed.emit(f"autosave failed: {exc}")
            return None
        self._written_revision = self._graph.revision
        self.saved.emit(str(path))
        return path

    def document_saved(self) -> None:
        """The user saved: the file is now the newest copy, so the autosave is only clutter."""
        if self._name is not None:
            self.store.discard(self._name)
        self._written_revision = None

    def stop(self) -> None:
        self._timer.stop()
