"""A server run recorded in the run history the editor shows (`app.history`), thumbnails made with Pillow.

The editor records its runs from the Qt side (`ui.panels.history.record_run`); the server has no Qt,
so this is the same record made from the saved PNG files. Only finished runs that wrote output images
are kept, as in the editor; previews (temp images) are not.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

from app.history import HistoryStore, RecordedImage, RunRecord
from app.server.queue import QueuedPrompt
from graph_engine import RunResult
from graph_engine.serialization import graph_to_dict

THUMBNAIL_SIDE = 256


def recorded_image(path: Path, node_id: int) -> RecordedImage:
    from PIL import Image

    with Image.open(path) as img:
        width, height = img.size
        img.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        buffer = io.BytesIO()
        img.save(buffer, format="PNG")
    return RecordedImage(str(path), width, height, node_id, buffer.getvalue())


class RunRecorder:
    """Opens the history database on first use (from the worker thread) and records finished runs."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._store: HistoryStore | None = None

    def __call__(self, item: QueuedPrompt, result: RunResult, started: float) -> None:
        if result.status != "done":
            return
        images = [
            recorded_image(Path(img["path"]), node_id)
            for node_id, ui in sorted(result.ui.items())
            if node_id in result.executed
            for img in ui.get("images", [])
            if isinstance(img, dict) and img.get("type") == "output" and img.get("path")
        ]
        if not images:
            return
        if self._store is None:
            self._store = HistoryStore(self._path)
        self._store.record(RunRecord(graph_to_dict(item.graph), images, started=started, finished=time.time()))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
