"""The server's prompt queue and its in-memory history, shared by every client.

One queue, one worker (`app.server.worker`): prompts run one at a time, lowest `number` first, as in
ComfyUI (a client's `front` makes the number negative so it jumps ahead). Clients see the queue as
ComfyUI shows it: each item as `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.

History here is what ComfyUI's `GET /history` returns: the last `HISTORY_MAX` prompts by id, with
their outputs and status, kept in memory for the clients that poll it. Runs that wrote images are also
recorded in the persistent `app.history` database by the worker, so the editor's History dock lists
what the server made.

Thread-safe: HTTP handlers on the event loop put and delete, the worker thread takes; `on_change` is
called (from either thread) whenever the number of remaining prompts changes, for the `status` message.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graph_engine import Graph

HISTORY_MAX = 10_000


@dataclass(eq=False)
class QueuedPrompt:
    number: float
    prompt_id: str
    prompt: dict[str, Any]  # as the client posted it
    extra_data: dict[str, Any]
    outputs: list[str]  # prompt ids of the output nodes that will run
    graph: Graph
    targets: list[int]
    client_id: str | None = None
    seq: int = 0  # ties between equal numbers keep the order of arrival
    node_errors: dict[str, Any] = field(default_factory=dict)

    def as_list(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


class PromptQueue:
    def __init__(self, on_change: Callable[[int], None] | None = None) -> None:
        self._cond = threading.Condition()
        self._pending: list[tuple[float, int, QueuedPrompt]] = []
        self._running: QueuedPrompt | None = None
        self._history: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._counter = itertools.count()
        self._numbers = itertools.count()
        self._on_change = on_change or (lambda _n: None)
        self._closed = False

    def next_number(self, front: bool = False) -> int:
        """ComfyUI's numbering: a counter; `front` negates it so the prompt runs before the others."""
        n = next(self._numbers)
        return -n if front else n

    def put(self, item: QueuedPrompt) -> None:
        with self._cond:
            item.seq = next(self._counter)
            heapq.heappush(self._pending, (item.number, item.seq, item))
            self._cond.notify()
            remaining = self._remaining()
        self._on_change(remaining)

    def take(self, timeout: float | None = None) -> QueuedPrompt | None:
        """The next prompt, now marked running; None after `timeout` seconds or once closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._pending or self._closed, timeout):
                return None
            if self._closed:
                return None
            _n, _s, item = heapq.heappop(self._pending)
            self._running = item
            return item

    def finish(self, item: QueuedPrompt, entry: dict[str, Any]) -> None:
        """The running prompt is done; its history entry is stored under its id."""
        with self._cond:
            self._history[item.prompt_id] = entry
            while len(self._history) > HISTORY_MAX:
                self._history.popitem(last=False)
            if self._running is item:
                self._running = None
            remaining = self._remaining()
        self._on_change(remaining)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _remaining(self) -> int:
        return len(self._pending) + (self._running is not None)

    def remaining(self) -> int:
        with self._cond:
            return self._remaining()

    def running(self) -> QueuedPrompt | None:
        with self._cond:
            return self._running

    def snapshot(self) -> tuple[list[QueuedPrompt], list[QueuedPrompt]]:
        """(running, pending in the order they will run)."""
        with self._cond:
            running = [self._running] if self._running is not None else []
            return running, [item for _n, _s, item in sorted(self._pending, key=lambda t: (t[0], t[1]))]

    def delete(self, prompt_ids: list[str]) -> int:
        """Drop waiting prompts by id (a running one is interrupted, not deleted); how many were dropped."""
        wanted = set(prompt_ids)
        return self._drop(lambda item: item.prompt_id in wanted)

    def clear(self) -> int:
        return self._drop(lambda _item: True)

    def _drop(self, match: Callable[[QueuedPrompt], bool]) -> int:
        with self._cond:
            kept = [t for t in self._pending if not match(t[2])]
            dropped = len(self._pending) - len(kept)
            heapq.heapify(kept)
            self._pending = kept
            remaining = self._remaining()
        if dropped:
            self._on_change(remaining)
        return dropped

    # ---- history ------------------------------------------------------------------------------

    def history(self, max_items: int | None = None, offset: int = 0) -> dict[str, Any]:
        """The newest `max_items` entries (all when None) after skipping `offset` newest, oldest first."""
        with self._cond:
            ids = list(self._history)
            if offset > 0:
                ids = ids[:-offset] if offset < len(ids) else []
            if max_items is not None:
                ids = ids[-max_items:] if max_items > 0 else []
            return {pid: self._history[pid] for pid in ids}

    def history_entry(self, prompt_id: str) -> dict[str, Any] | None:
        with self._cond:
            return self._history.get(prompt_id)

    def delete_history(self, prompt_ids: list[str] | None = None) -> None:
        """Forget entries (all when `prompt_ids` is None); image files stay, as in ComfyUI."""
        with self._cond:
            if prompt_ids is None:
                self._history.clear()
            for pid in prompt_ids or ():
                self._history.pop(pid, None)
