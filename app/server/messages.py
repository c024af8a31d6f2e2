"""One prompt's engine events as the WebSocket messages ComfyUI clients follow.

The executor reports `RunStarted`, per node `NodeCached` or `NodeStarted`/`NodeProgress`/`NodePreview`/
`NodeFinished`/`NodeFailed`, then `RunFinished` (`graph_engine.events`). Clients expect, in order:
`execution_start`, `execution_cached` (the nodes reused from the cache), `executing` before each node,
`progress` per sampler step, binary preview frames, `executed` with a node's UI output (`{"images":
[{filename, subfolder, type}]}`), then `execution_success`, `execution_error` or
`execution_interrupted`, and last `executing` with `node: null`, which most clients take as "done".

Node ids are the client's own (strings, "12:5" for a flattened subgraph node), never sdgraph's numbers.
Absolute paths in a node's UI output are dropped: a client fetches images by name through `/view`.
Previews are JPEG-encoded on the worker thread and sent at most `PREVIEW_INTERVAL_S` apart.
"""

from __future__ import annotations

import io
import json
import struct
import time
from collections.abc import Callable
from typing import Any

from graph_engine import Graph, RunResult
from graph_engine.events import (
    Event,
    NodeCached,
    NodeFailed,
    NodeFinished,
    NodePreview,
    NodeProgress,
    NodeStarted,
    RunFinished,
)

PREVIEW_IMAGE, JPEG = 1, 1  # ComfyUI's binary event type and image format numbers
PREVIEW_INTERVAL_S = 0.1
PREVIEW_MAX_SIDE = 512

Send = Callable[[str, dict[str, Any]], None]
SendBytes = Callable[[bytes], None]


def now_ms() -> int:
    return int(time.time() * 1000)


def comfy_ui(ui: dict[str, Any]) -> dict[str, Any]:
    """A node's UI output as ComfyUI writes it: images by filename/subfolder/type, JSON-able values only."""
    out: dict[str, Any] = {}
    for key, value in ui.items():
        if key == "images" and isinstance(value, list):
            value = [
                {
                    "filename": img.get("filename", ""),
                    "subfolder": "" if img.get("subfolder") in (None, ".") else img["subfolder"],
                    "type": img.get("type", "output"),
                }
                for img in value
                if isinstance(img, dict)
            ]
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


def preview_frame(image: Any) -> bytes:
    """ComfyUI's binary preview: event type, image format (4 bytes each, big-endian), then the JPEG."""
    import numpy as np
    from PIL import Image

    a = np.asarray(image)
    if a.ndim == 4:
        a = a[0]
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    picture = Image.fromarray(a[..., :3] if a.ndim == 3 else a).convert("RGB")
    picture.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return struct.pack(">II", PREVIEW_IMAGE, JPEG) + buffer.getvalue()


class PromptMessages:
    """Turns one prompt's events into messages; collects its outputs and status for the history."""

    def __init__(self, prompt_id: str, graph: Graph, key: Callable[[int], str], send: Send, send_bytes: SendBytes):
        self.prompt_id = prompt_id
        self.graph = graph
        self.key = key
        self._send = send
        self._send_bytes = send_bytes
        self.outputs: dict[str, dict[str, Any]] = {}
        self.executed: list[str] = []
        self.messages: list[list[Any]] = []  # the status messages, as ComfyUI keeps them in history
        self._cached: list[str] = []
        self._cached_sent = False
        self._last_preview = 0.0
        self._current: int | None = None  # the node running now (named when the prompt is interrupted)
        self._closing: list[tuple[str, dict[str, Any]]] | None = None  # held back by `finish`

    def status(self, type: str, data: dict[str, Any]) -> None:
        """A message that also goes into the history entry's `status.messages`."""
        data = {"prompt_id": self.prompt_id, **data, "timestamp": now_ms()}
        self.messages.append([type, data])
        self._send_or_hold(type, data)

    def _send_or_hold(self, type: str, data: dict[str, Any]) -> None:
        if self._closing is not None:
            self._closing.append((type, data))
        else:
            self._send(type, data)

    def start(self) -> None:
        self.status("execution_start", {})

    def on_event(self, event: Event) -> None:
        if isinstance(event, NodeCached):
            self._cached.append(self.key(event.node_id))
        elif isinstance(event, NodeStarted):
            self._flush_cached()
            self._current = event.node_id
            node = self.key(event.node_id)
            self._send("executing", {"node": node, "display_node": node, "prompt_id": self.prompt_id})
        elif isinstance(event, NodeProgress):
            self._send(
                "progress",
                {"value": event.step, "max": event.total, "prompt_id": self.prompt_id, "node": self.key(event.node_id)},
            )
        elif isinstance(event, NodePreview):
            moment = time.monotonic()
            if moment - self._last_preview >= PREVIEW_INTERVAL_S:
                self._last_preview = moment
                self._send_bytes(preview_frame(event.image))
        elif isinstance(event, NodeFinished):
            node = self.key(event.node_id)
            self.executed.append(node)
            if event.ui:
                self._executed(node, event.ui)
        elif isinstance(event, NodeFailed | RunFinished):
            self._flush_cached()

    def _executed(self, node: str, ui: dict[str, Any]) -> None:
        output = comfy_ui(ui)
        self.outputs[node] = output
        self._send("executed", {"node": node, "display_node": node, "output": output, "prompt_id": self.prompt_id})

    def _flush_cached(self) -> None:
        if self._cached or not self._cached_sent:
            self.status("execution_cached", {"nodes": self._cached})
            self._cached, self._cached_sent = [], True

    def finish(self, result: RunResult | None, error: str | None = None) -> str:
        """Prepares the closing messages and returns ComfyUI's `status_str` ("success" or "error").

        They are held until `send_closing`, so the worker can store the history entry first: a client
        that asks `/history/{id}` as soon as it hears "done" finds the prompt there.
        """
        self._flush_cached()
        if result is not None:
            for node_id in result.cached:  # cached outputs are shown again, as ComfyUI re-sends them
                if node_id in result.ui:
                    self._executed(self.key(node_id), result.ui[node_id])
        self._closing = []
        status = "error"
        if result is not None and result.status == "done" and error is None:
            self.status("execution_success", {})
            status = "success"
        elif result is not None and result.status == "cancelled":
            failed = self._node_of(self._current)
            self.status("execution_interrupted", {**failed, "executed": self.executed})
        else:
            node_error = result.error if result is not None else None
            where = self._node_of(node_error.node_id if node_error is not None else None)
            message = error or (node_error.message if node_error is not None else "the run failed")
            self.status(
                "execution_error",
                {
                    **where,
                    "executed": self.executed,
                    "exception_message": message,
                    "exception_type": "ExecutionError" if node_error is not None else "ServerError",
                    "traceback": node_error.traceback.splitlines() if node_error is not None else [],
                    "current_inputs": dict(node_error.inputs) if node_error is not None else {},
                    "current_outputs": {},
                },
            )
        self._send_or_hold("executing", {"node": None, "display_node": None, "prompt_id": self.prompt_id})
        return status

    def send_closing(self) -> None:
        closing, self._closing = self._closing or [], None
        for type, data in closing:
            self._send(type, data)

    def _node_of(self, node_id: int | None) -> dict[str, Any]:
        if node_id is None or node_id not in self.graph.nodes:
            return {"node_id": None, "node_type": None}
        return {"node_id": self.key(node_id), "node_type": self.graph.nodes[node_id].type}
