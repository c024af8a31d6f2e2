"""The batch manifest: one JSON line per finished job in the output folder, so a re-run skips them.

A record is appended only after the job's files are in place (written through a temp file and a
rename), and every append is flushed and fsynced. So after a crash, a kill or Ctrl+C the manifest never
claims a file that is not there; at worst a job that finished is missing from it and runs again.
A kill in the middle of an append leaves a torn last line: it is ignored when read, and the next
append starts on a fresh line.

Whether a job is done is decided by the manifest *and* the folder: a recorded file that was deleted,
or whose size changed, makes its job run again. Failed jobs are recorded too (what failed, where),
and run again next time.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

MANIFEST_NAME = "sdgraph-batch.jsonl"


class Manifest:
    """Append-only job records in `folder/sdgraph-batch.jsonl`; thread-safe appends."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_NAME
        self._lock = threading.Lock()

    def records(self) -> list[dict[str, Any]]:
        """Every complete record, in file order; a torn or foreign line is skipped."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        records = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("job"), str):
                records.append(record)
        return records

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last record of each job."""
        return {r["job"]: r for r in self.records()}

    def done(self, job_ids: Iterable[str] | None = None) -> set[str]:
        """Jobs whose last record says done and whose files are all present with the recorded sizes."""
        wanted = None if job_ids is None else set(job_ids)
        finished = set()
        for job_id, record in self.latest().items():
            if record.get("status") != "done" or (wanted is not None and job_id not in wanted):
                continue
            if all(self._present(f) for f in record.get("files", [])):
                finished.add(job_id)
        return finished

    def _present(self, entry: Mapping[str, Any]) -> bool:
        name = entry.get("name")
        if not isinstance(name, str) or "/" in name or name.startswith("."):
            return False
        try:
            return (self.folder / name).stat().st_size == entry.get("bytes")
        except OSError:
            return False

    def append(self, record: Mapping[str, Any]) -> None:
        """Add one record durably (write, fsync); a torn last line from a killed writer is closed first."""
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = "\n" + line
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
