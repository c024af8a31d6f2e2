"""What a running node may ask of the engine: report progress, show a preview, stop when cancelled.

Cancellation is cooperative: long nodes call `progress()` (or `check_cancelled()`) between steps, and
that call raises `Cancelled` once the user has asked to stop. `Cancelled` is an ordinary `Exception`,
never a `BaseException`, so it passes cleanly through thread pools and asyncio executors.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graph_engine.previews import PreviewWorker, render


class Cancelled(Exception):
    """The user stopped the run."""


class CancelToken:
    """Shared between the thread that runs a graph and the one (UI, signal handler) that stops it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class ExecutionContext:
    node_id: int
    title: str
    device: str = "cpu"
    output_dir: Path = Path("output")
    temp_dir: Path | None = None
    # The workflow being run, as saved JSON, for embedding in images (SaveImage).
    workflow: Mapping[str, Any] | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    cancel_token: CancelToken = field(default_factory=CancelToken)
    on_progress: Callable[[int, int], None] | None = None
    on_preview: Callable[[Any], None] | None = None
    # Extra data a node may return alongside its outputs (e.g. the sampler's timeline), read by the UI.
    records: dict[str, Any] = field(default_factory=dict)

    def check_cancelled(self) -> None:
        if self.cancel_token.cancelled:
            raise Cancelled(f"cancelled in node {self.node_id} ({self.title})")

    def progress(self, i: int, n: int) -> None:
        """Step i of n is done. Also the place where a long node notices it was cancelled."""
        self.check_cancelled()
        if self.on_progress is not None:
            self.on_progress(i, n)

    def preview(self, image: Any) -> None:
        """Show a picture of the node's progress. ``image`` may be a zero-argument function that makes
        it: under the executor it then runs on the preview thread (`graph_engine.previews`), never
        delaying the node; with a plain ``on_preview`` callback it is called here."""
        if self.on_preview is None:
            return
        if isinstance(self.on_preview, PreviewWorker):
            self.on_preview.submit(image)
        else:
            self.on_preview(render(image))


class InputError(Exception):
    """Raised by a node when one of its inputs is unusable; the message is shown with node and input."""

    def __init__(self, input_id: str, message: str) -> None:
        self.input_id = input_id
        self.message = message
        super().__init__(message)
