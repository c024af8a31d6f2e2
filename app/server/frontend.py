"""`sdgraph serve --frontend`: ComfyUI's own web front-end (the `comfyui-frontend-package` wheel) on `/`.

The real test of "compatible": the front-end ComfyUI ships builds its node library from `/object_info`,
queues prompts with `POST /prompt` and shows progress from `/ws`, all served here by sdgraph. Besides
the static files it asks for a handful of routes ComfyUI has for its own UI (users, settings, saved
workflows, extensions, feature flags, model folders); they are answered here in ComfyUI's shapes.
Settings and saved workflows are kept in memory for the life of the server: sdgraph's own documents
live in the editor, and this front-end is a way in, not a second home for them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from app.server.catalog import model_folder
from app.server.routes import json_body
from nodes.diffusion.model_paths import KINDS
from nodes.folders import list_models


def frontend_root(path: str | None = None) -> Path:
    """The static folder: `path`, or the installed `comfyui-frontend-package`'s."""
    if path:
        root = Path(path)
    else:
        try:
            import comfyui_frontend_package
        except ImportError:
            raise ValueError("--frontend needs the front-end: pip install comfyui-frontend-package") from None
        root = Path(comfyui_frontend_package.__file__).parent / "static"
    if not (root / "index.html").is_file():
        raise ValueError(f"{root} has no index.html (expected ComfyUI's front-end static folder)")
    return root


class FrontendData:
    """What ComfyUI's front-end stores on its server: settings and files under `userdata`."""

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}
        self.files: dict[str, tuple[bytes, float]] = {}

    async def get_users(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"storage": "server", "migrated": True})

    async def get_settings(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.settings)

    async def get_setting(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.settings.get(request.match_info["id"]))

    async def post_settings(self, request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        if isinstance(body, dict):
            self.settings.update(body)
        return web.json_response({})

    async def post_setting(self, request: web.Request) -> web.StreamResponse:
        self.settings[request.match_info["id"]] = await json_body(request)
        return web.json_response({})

    async def list_userdata(self, request: web.Request) -> web.StreamResponse:
        folder = request.query.get("dir", "").strip("/") + "/"
        names = sorted(name for name in self.files if name.startswith(folder))
        if request.query.get("full_info") == "true":
            return web.json_response(
                [{"path": n[len(folder) :], "size": len(self.files[n][0]), "modified": self.files[n][1]} for n in names]
            )
        return web.json_response([n[len(folder) :] for n in names])

    async def get_userdata(self, request: web.Request) -> web.StreamResponse:
        entry = self.files.get(request.match_info["file"])
        if entry is None:
            raise web.HTTPNotFound(reason="no such user file")
        return web.Response(body=entry[0], content_type="application/json")

    async def post_userdata(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        if ".." in name.split("/") or name.startswith("/"):
            raise web.HTTPBadRequest(reason="a user file name stays inside the user folder")
        if name in self.files and request.query.get("overwrite") == "false":
            raise web.HTTPConflict(reason="the file exists")
        data = await request.read()
        self.files[name] = (data, time.time())
        return web.json_response({"path": name, "size": len(data), "modified": self.files[name][1]})

    async def delete_userdata(self, request: web.Request) -> web.StreamResponse:
        self.files.pop(request.match_info["file"], None)
        return web.Response(status=204)


def add_frontend_routes(app: web.Application, root: Path, max_upload_mb: int) -> None:
    data = FrontendData()
    features = {"supports_preview_metadata": False, "max_upload_size": max_upload_mb * 1024**2}

    async def experiment_models(_request: web.Request) -> web.StreamResponse:
        return web.json_response([{"name": kind, "folders": []} for kind in KINDS])

    async def experiment_folder(request: web.Request) -> web.StreamResponse:
        kind = model_folder(request.match_info["folder"])
        if kind is None:
            raise web.HTTPNotFound(reason="no such model folder")
        return web.json_response([{"name": name, "pathIndex": 0} for name in list_models(kind)])

    async def index(_request: web.Request) -> web.StreamResponse:
        return web.FileResponse(root / "index.html", headers={"Cache-Control": "no-cache"})

    def static_json(value: Any) -> Any:
        body = json.dumps(value)

        async def handler(_request: web.Request) -> web.StreamResponse:
            return web.Response(text=body, content_type="application/json")

        return handler

    for prefix in ("", "/api"):
        r = app.router
        r.add_get(prefix + "/users", data.get_users)
        r.add_get(prefix + "/settings", data.get_settings)
        r.add_post(prefix + "/settings", data.post_settings)
        r.add_get(prefix + "/settings/{id}", data.get_setting)
        r.add_post(prefix + "/settings/{id}", data.post_setting)
        r.add_get(prefix + "/userdata", data.list_userdata)
        r.add_get(prefix + "/userdata/{file:.+}", data.get_userdata)
        r.add_post(prefix + "/userdata/{file:.+}", data.post_userdata)
        r.add_delete(prefix + "/userdata/{file:.+}", data.delete_userdata)
        r.add_get(prefix + "/extensions", static_json([]))
        r.add_get(prefix + "/features", static_json(features))
        r.add_get(prefix + "/i18n", static_json({}))
        r.add_get(prefix + "/workflow_templates", static_json({}))
        r.add_get(prefix + "/global_subgraphs", static_json({}))
        r.add_get(prefix + "/node_replacements", static_json({}))
        r.add_get(prefix + "/experiment/models", experiment_models)
        r.add_get(prefix + "/experiment/models/{folder}", experiment_folder)
    app.router.add_get("/", index)
    app.router.add_static("/", root, follow_symlinks=False)
