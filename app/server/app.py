"""Putting the server together: routes (also under `/api`), the socket, safety, and start/stop.

Safe by default: `ServerConfig.host` is 127.0.0.1 (other machines reach it only with `--listen`),
requests are capped at `max_upload_mb` (aiohttp's `client_max_size`), there are no CORS headers unless
`cors_origin` names the one origin allowed, and with a `token` every request must carry
`Authorization: Bearer <token>` (a browser's WebSocket, which cannot set headers, may pass `?token=`).
Whatever goes wrong inside a handler is answered as JSON with a one-line message; the traceback goes
to the server's log, never to the client.

`Server.start()` runs the event loop on a thread of its own (tests, embedding); `Server.run()` on the
calling thread until Ctrl+C (`sdgraph serve`). Both share one `PromptWorker` thread for the prompts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from app.server.files import FileRefused, Folders
from app.server.prompts import PromptRejected
from app.server.queue import PromptQueue
from app.server.recording import RunRecorder
from app.server.routes import ROUTES, Handler
from app.server.state import STATE, ServerState
from app.server.websocket import Hub
from app.server.worker import PromptWorker
from graph_engine import Executor, NodeRegistry

log = logging.getLogger("sdgraph.server")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8188
    token: str | None = None
    cors_origin: str | None = None
    max_upload_mb: int = 100
    record_history: bool = True  # finished runs go to the editor's History as well ...
    history_path: Path | None = None  # ... in this database (default: `app.history.default_path()`)
    # ComfyUI's web front-end on `/`: None for none, "" for the installed comfyui-frontend-package, or a folder.
    frontend: str | None = None


def _json_error(status: int, type: str, message: str) -> web.Response:
    return web.json_response(
        {"error": {"type": type, "message": message, "details": "", "extra_info": {}}}, status=status
    )


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except PromptRejected as exc:
        return web.json_response(exc.body(), status=400)
    except FileRefused as exc:
        return _json_error(exc.status, "invalid_request" if exc.status == 400 else "not_found", exc.message)
    except web.HTTPRequestEntityTooLarge as exc:
        return _json_error(413, "too_large", f"the request is larger than the server accepts: {exc.text}")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _json_error(exc.status, "http_error", exc.reason)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return _json_error(500, "server_error", f"the server failed on this request ({type(exc).__name__})")


def _auth(token: str) -> Middleware:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS":  # CORS preflights carry no credentials
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        if not given and request.path in ("/ws", "/api/ws"):
            given = f"Bearer {request.query.get('token', '')}".encode()
        if not hmac.compare_digest(given, expected):
            response = _json_error(401, "unauthorized", "this server needs 'Authorization: Bearer <token>'")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return await handler(request)

    return check


def _cors(origin: str) -> Middleware:
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, Authorization",
        "Vary": "Origin",
    }

    @web.middleware
    async def add(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return web.Response(headers=headers)
        response = await handler(request)
        if not response.prepared:
            response.headers.update(headers)
        return response

    return add


def create_app(state: ServerState, config: ServerConfig) -> web.Application:
    middlewares: list[Middleware] = []
    if config.cors_origin:
        middlewares.append(_cors(config.cors_origin))
    middlewares.append(_errors)
    if config.token:
        middlewares.append(_auth(config.token))
    app = web.Application(middlewares=middlewares, client_max_size=config.max_upload_mb * 1024**2)
    app[STATE] = state
    for prefix in ("", "/api"):
        for method, path, handler in ROUTES:
            app.router.add_route(method, prefix + path, handler)
        app.router.add_get(prefix + "/ws", state.hub.handle)
    if config.frontend is not None:
        from app.server.frontend import add_frontend_routes, frontend_root

        add_frontend_routes(app, frontend_root(config.frontend or None), config.max_upload_mb)
    return app


class Server:
    """One server: its state, the worker thread, and the aiohttp site, started and stopped together."""

    def __init__(self, registry: NodeRegistry, executor: Executor, config: ServerConfig | None = None) -> None:
        from nodes.folders import input_dir, temp_dir

        self.config = config or ServerConfig()
        hub = Hub()
        queue = PromptQueue(on_change=hub.broadcast_status)
        hub.queue_remaining = queue.remaining
        self._recorder = RunRecorder(self.config.history_path) if self.config.record_history else None
        worker = PromptWorker(executor, queue, hub.send, hub.send_bytes, on_run=self._recorder)
        # The folders the nodes use, so an upload is what Load Image lists and a preview is viewable.
        folders = Folders(output=executor.output_dir, input=input_dir(), temp=temp_dir())
        self.state = ServerState(registry, queue, worker, hub, folders)
        self.app = create_app(self.state, self.config)
        self.port = self.config.port
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def _start(self) -> None:
        self.state.hub.bind(asyncio.get_running_loop())
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.state.worker.start()

    async def _stop(self) -> None:
        await self.state.hub.close_all()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        host = self.config.host if self.config.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    def start(self) -> Server:
        """Serve from a background thread; returns once the port is open (`self.port` is the real one)."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._stop())
            loop.close()

        self._thread = threading.Thread(target=main, name="sdgraph-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        self.state.worker.stop()
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if self._recorder is not None:
            self._recorder.close()

    def run(self, on_ready: object = None) -> None:
        """Serve on this thread until Ctrl+C."""

        async def main() -> None:
            await self._start()
            if callable(on_ready):
                on_ready(self)
            try:
                await asyncio.Event().wait()
            finally:
                await self._stop()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())
        self.state.worker.stop()
        if self._recorder is not None:
            self._recorder.close()
