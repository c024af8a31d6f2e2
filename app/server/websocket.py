"""The `/ws?clientId=` socket: who is listening, and getting each message to the right listeners.

A prompt's messages go only to the client that queued it (the `client_id` it posted); a prompt posted
without one reports to nobody, so one client never sees another's prompts, images or errors. `status`
(how many prompts remain) goes to everyone, and to each new socket on connect with its `sid`, the id
to post prompts with (the `clientId` it connected with, or a new one).

The worker thread calls `send`/`send_bytes`; they hop onto the event loop with `call_soon_threadsafe`
and land in each socket's own outgoing queue, drained by one task per socket, so messages arrive in
the order they were sent and a slow client only slows itself (its preview frames are dropped first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

log = logging.getLogger("sdgraph.server")

MAX_BACKLOG = 1000  # messages waiting for one socket; beyond it preview frames are dropped
MAX_INCOMING = 64 * 1024  # clients only send small JSON (feature flags) on this socket


@dataclass(eq=False)
class Connection:
    client_id: str
    ws: web.WebSocketResponse
    outbox: asyncio.Queue[dict[str, Any] | bytes] = field(default_factory=asyncio.Queue)


class Hub:
    def __init__(self) -> None:
        self._connections: dict[str, set[Connection]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.queue_remaining: Callable[[], int] = lambda: 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # ---- from any thread --------------------------------------------------------------------

    def send(self, client_id: str | None, type: str, data: dict[str, Any]) -> None:
        """A JSON message to one client's sockets; none when the prompt named no client."""
        if client_id is not None:
            self._threadsafe(client_id, {"type": type, "data": data})

    def send_bytes(self, client_id: str | None, frame: bytes) -> None:
        if client_id is not None:
            self._threadsafe(client_id, frame)

    def broadcast_status(self, remaining: int) -> None:
        self._threadsafe(None, status_message(remaining))

    def _threadsafe(self, client_id: str | None, message: dict[str, Any] | bytes) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed in between: the server is stopping
            loop.call_soon_threadsafe(self._deliver, client_id, message)

    # ---- on the event loop --------------------------------------------------------------------

    def _deliver(self, client_id: str | None, message: dict[str, Any] | bytes) -> None:
        """To `client_id`'s sockets, or to every socket when it is None (only `status` is sent so)."""
        if client_id is None:
            targets = [c for conns in self._connections.values() for c in conns]
        else:
            targets = list(self._connections.get(client_id, ()))
        for conn in targets:
            if isinstance(message, bytes) and conn.outbox.qsize() >= MAX_BACKLOG:
                continue
            conn.outbox.put_nowait(message)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_INCOMING)
        await ws.prepare(request)
        client_id = request.query.get("clientId", "")
        if not valid_client_id(client_id):
            client_id = uuid.uuid4().hex
        conn = Connection(client_id, ws)
        self._connections.setdefault(client_id, set()).add(conn)
        hello = status_message(self.queue_remaining())
        hello["data"]["sid"] = client_id
        conn.outbox.put_nowait(hello)
        sender = asyncio.create_task(self._drain(conn))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
                # Clients may announce feature flags; sdgraph has none to offer beyond the basics.
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            conns = self._connections.get(client_id)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self._connections[client_id]
        return ws

    async def _drain(self, conn: Connection) -> None:
        while True:
            message = await conn.outbox.get()
            try:
                if isinstance(message, bytes):
                    await conn.ws.send_bytes(message)
                else:
                    await conn.ws.send_json(message)
            except (ConnectionError, RuntimeError):  # the client went away mid-send
                return

    async def close_all(self) -> None:
        for conn in [c for conns in self._connections.values() for c in conns]:
            with contextlib.suppress(Exception):
                await conn.ws.close()


def valid_client_id(value: object) -> bool:
    """Client ids are what ComfyUI clients make (uuid hex, "krita-…"): short, printable, no spaces."""
    return isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable() and " " not in value


def status_message(remaining: int) -> dict[str, Any]:
    return {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": remaining}}}}
