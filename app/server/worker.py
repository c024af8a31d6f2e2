"""The one thread that runs prompts: off the event loop, one at a time, with the shared executor.

Torch work never runs on the event loop: HTTP and WebSocket traffic keep flowing while a sampler works.
The executor (and through it the result cache and the per-process model manager) lives as long as the
server, so a second prompt with the same checkpoint reuses the loaded weights and the cached nodes,
whichever client sent it.

Before each prompt the output folder is checked (`app.output_folder`), as `sdgraph run` and the editor
do, so a folder that became unwritable fails the prompt at once instead of after the sampler.
Interrupting sets the running prompt's `CancelToken`; the engine stops at the next step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from app.output_folder import output_folder_problem
from app.server.messages import PromptMessages
from app.server.prompts import prompt_key
from app.server.queue import PromptQueue, QueuedPrompt
from graph_engine import CancelToken, Executor, InvalidGraph, RunResult
from graph_engine.serialization import graph_to_dict

log = logging.getLogger("sdgraph.server")

# (client_id, type, data) and (client_id, frame): how the worker hands messages to the WebSocket hub.
SendJson = Callable[[str | None, str, dict[str, Any]], None]
SendBytes = Callable[[str | None, bytes], None]
OnRun = Callable[[QueuedPrompt, RunResult, float], None]


class PromptWorker:
    def __init__(
        self,
        executor: Executor,
        queue: PromptQueue,
        send: SendJson,
        send_bytes: SendBytes,
        on_run: OnRun | None = None,
    ) -> None:
        self.executor = executor
        self.queue = queue
        self._send = send
        self._send_bytes = send_bytes
        self._on_run = on_run
        self._lock = threading.Lock()
        self._running: tuple[QueuedPrompt, CancelToken] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sdgraph-prompt-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the running prompt (interrupted first), e.g. when the server shuts down."""
        self._stop.set()
        self.interrupt()
        self.queue.close()
        self._thread.join(timeout)

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Cancel the running prompt (only if it is `prompt_id`, when given); False when nothing matched."""
        with self._lock:
            if self._running is None:
                return False
            item, token = self._running
            if prompt_id is not None and item.prompt_id != prompt_id:
                return False
            token.cancel()
            return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            item = self.queue.take(timeout=0.5)
            if item is not None:
                self._run(item)

    def _run(self, item: QueuedPrompt) -> None:
        token = CancelToken()
        with self._lock:
            self._running = (item, token)
        messages = PromptMessages(
            item.prompt_id,
            item.graph,
            lambda nid: prompt_key(item.graph, nid),
            lambda type, data: self._send(item.client_id, type, data),
            lambda frame: self._send_bytes(item.client_id, frame),
        )
        started = time.time()
        result: RunResult | None = None
        error: str | None = None
        try:
            messages.start()
            error = output_folder_problem(self.executor.output_dir)
            if error is None:
                result = self.executor.run(
                    item.graph,
                    targets=item.targets,
                    on_event=messages.on_event,
                    cancel=token,
                    workflow=graph_to_dict(item.graph),
                )
        except InvalidGraph as exc:  # a model file vanished between queueing and running
            error = f"the prompt cannot run: {exc}"
        except Exception as exc:  # a bug in the engine: reported to the client, logged with its traceback
            log.exception("prompt %s stopped unexpectedly", item.prompt_id)
            error = f"the prompt stopped unexpectedly: {type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._running = None
        status = messages.finish(result, error)
        entry = {
            "prompt": item.as_list(),
            "outputs": messages.outputs,
            "status": {"status_str": status, "completed": status == "success", "messages": messages.messages},
            "meta": {node: {"node_id": node, "display_node": node} for node in messages.outputs},
        }
        if result is not None and self._on_run is not None:
            try:
                self._on_run(item, result, started)
            except Exception:  # the history database is a convenience; a failure there never fails a prompt
                log.exception("the run could not be recorded in the history")
        self.queue.finish(item, entry)
        messages.send_closing()
