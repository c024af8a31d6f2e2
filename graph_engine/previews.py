"""Step previews rendered and delivered off the thread that runs the node.

A sampler hands a preview to its context once per step. Rendering it (latent → RGB, and for the
server a JPEG) and handing it on are cheap on a CPU next to a step (well under 1 % measured, see
docs/benchmarks.md "Parts of the graph"), but a consumer can be slow — a websocket that stalls, a
bigger preview decoder, a busy machine — and a preview is never worth a slower image. So the
executor gives each node a `PreviewWorker`: `submit` only swaps the newest frame into a one-item
slot (a frame not yet rendered when a newer one comes is dropped, so at most one is ever pending) and
returns; a daemon thread renders and delivers it. When the node ends, `close` waits for the frame in
flight and delivers the newest pending one, so the last preview shown is the last step's and no
preview arrives after the node's Finished event.

A frame may be a value or a zero-argument callable that makes it (the sampler passes
``partial(latent_to_rgb, denoised, family)``), so the render runs on the worker thread too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_EMPTY = object()


def render(frame: Any) -> Any:
    """A frame's picture: call it when it is a render function, else the frame itself."""
    return frame() if callable(frame) else frame


class PreviewWorker:
    """Delivers the newest submitted preview to ``deliver`` on its own thread (see the module docstring)."""

    def __init__(self, deliver: Callable[[Any], None], name: str = "preview") -> None:
        self._deliver = deliver
        self._name = name
        self._lock = threading.Condition()
        self._pending: Any = _EMPTY
        self._closed = False
        self._thread: threading.Thread | None = None
        self.dropped = 0  # frames replaced before they were rendered (for tests and benchmarks)

    def submit(self, frame: Any) -> None:
        """Hand over a frame and return at once; an older frame still waiting is dropped."""
        with self._lock:
            if self._closed:
                return
            if self._pending is not _EMPTY:
                self.dropped += 1
            self._pending = frame
            if self._thread is None:  # started on the first frame: most nodes never preview
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._lock.notify_all()

    __call__ = submit

    def close(self, deliver_pending: bool = True, timeout: float | None = None) -> None:
        """Stop taking frames; wait for the one being delivered and, if ``deliver_pending``, deliver the
        newest waiting one too (else drop it: a failed or cancelled node shows no late preview)."""
        with self._lock:
            self._closed = True
            if not deliver_pending:
                self._pending = _EMPTY
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._pending is _EMPTY and not self._closed:
                    self._lock.wait()
                if self._pending is _EMPTY:  # closed and nothing left
                    return
                frame, self._pending = self._pending, _EMPTY
            try:
                self._deliver(render(frame))
            except Exception:  # a broken preview must not end the run; the node's own result still counts
                log.exception("a step preview could not be shown")
