"""The HTTP routes ComfyUI clients call, with ComfyUI's JSON shapes; each also answers under `/api`.

Handlers stay on the event loop only for bookkeeping: reading and checking a prompt (model folders
are listed), describing nodes, touching files and system stats run in the default thread pool, and
prompts run on the worker thread. Every refusal is JSON a ComfyUI client understands, never a
traceback: a prompt's as `{"error", "node_errors"}` (see `app.server.prompts`), others as `{"error":
{"type", "message"}}`.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from app.output_folder import output_folder_problem
from app.server.catalog import embeddings, model_folder, system_stats
from app.server.files import FileRefused, check_image, resolve, store_upload
from app.server.jobs import STATUSES, job_detail, list_jobs
from app.server.messages import now_ms
from app.server.object_info import object_info
from app.server.prompts import PromptRejected, check_prompt, comfy_error
from app.server.queue import QueuedPrompt
from app.server.state import STATE, ServerState
from app.server.websocket import valid_client_id
from nodes.folders import list_models

SENSITIVE_EXTRA_DATA = frozenset({"auth_token_comfy_org", "api_key_comfy_org"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _state(request: web.Request) -> ServerState:
    return request.app[STATE]


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def bad_request(type: str, message: str, details: str = "") -> web.Response:
    return web.json_response({"error": comfy_error(type, message, details), "node_errors": {}}, status=400)


async def json_body(request: web.Request, *, optional: bool = False) -> Any:
    """The request's JSON; a body that is not JSON raises `PromptRejected` (answered as a 400)."""
    text = await request.text()
    if optional and not text.strip():
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PromptRejected(comfy_error("invalid_prompt", "The request body is not valid JSON", str(exc))) from None


# ---- prompts and the queue ----------------------------------------------------------------------


async def post_prompt(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    body = await json_body(request)
    if not isinstance(body, dict) or "prompt" not in body:
        return bad_request("no_prompt", "No prompt provided", "the body must be an object with a 'prompt'")
    client_id = body.get("client_id")
    if client_id is not None and not valid_client_id(client_id):
        return bad_request("invalid_prompt", "client_id must be a short printable string", repr(client_id)[:80])
    extra_data = body.get("extra_data", {})
    if not isinstance(extra_data, dict):
        return bad_request("invalid_prompt", "extra_data must be an object")
    prompt_id = body.get("prompt_id")
    if prompt_id is None:
        prompt_id = str(uuid.uuid4())
    elif not isinstance(prompt_id, str) or not valid_client_id(prompt_id):
        return bad_request("invalid_prompt", "prompt_id must be a short printable string", repr(prompt_id)[:80])
    number = body.get("number")
    if not isinstance(number, int | float) or isinstance(number, bool) or not math.isfinite(number):
        number = state.queue.next_number(front=bool(body.get("front")))

    checked = await _in_thread(check_prompt, body["prompt"], state.registry, body.get("partial_execution_targets"))
    problem = await _in_thread(output_folder_problem, state.worker.executor.output_dir)
    if problem is not None:  # refused now, not after the sampler (as `sdgraph run` and the editor do)
        return bad_request("output_folder_not_writable", "The output folder cannot be written", problem)
    # Credentials for paid API nodes never reach /queue or /history, which every client can read.
    extra_data = {k: v for k, v in extra_data.items() if k not in SENSITIVE_EXTRA_DATA}
    extra_data["create_time"] = now_ms()  # for /jobs, as ComfyUI stamps it
    if client_id is not None:
        extra_data = {**extra_data, "client_id": client_id}
    state.queue.put(
        QueuedPrompt(
            number=number,
            prompt_id=prompt_id,
            prompt=body["prompt"],
            extra_data=extra_data,
            outputs=checked.outputs,
            graph=checked.graph,
            targets=checked.targets,
            client_id=client_id,
            node_errors=checked.node_errors,
        )
    )
    return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": checked.node_errors})


async def get_prompt(request: web.Request) -> web.StreamResponse:
    return web.json_response({"exec_info": {"queue_remaining": _state(request).queue.remaining()}})


async def get_queue(request: web.Request) -> web.StreamResponse:
    running, pending = _state(request).queue.snapshot()
    return web.json_response(
        {"queue_running": [i.as_list() for i in running], "queue_pending": [i.as_list() for i in pending]}
    )


async def post_queue(request: web.Request) -> web.StreamResponse:
    queue = _state(request).queue
    body = await json_body(request, optional=True)
    if not isinstance(body, dict):
        return bad_request("invalid_request", 'expected {"clear": true} or {"delete": [prompt ids]}')
    if body.get("clear"):
        queue.clear()
    delete = body.get("delete")
    if isinstance(delete, list):
        queue.delete([str(pid) for pid in delete])
    return web.json_response({})


async def post_interrupt(request: web.Request) -> web.StreamResponse:
    body = await json_body(request, optional=True)
    prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
    _state(request).worker.interrupt(str(prompt_id) if prompt_id is not None else None)
    return web.json_response({})


async def get_jobs(request: web.Request) -> web.StreamResponse:
    wanted = {s for s in request.query.get("status", "").split(",") if s in STATUSES} or set(STATUSES)
    limit = _int_query(request, "limit")
    return web.json_response(list_jobs(_state(request).queue, wanted, limit, _int_query(request, "offset") or 0))


async def get_job(request: web.Request) -> web.StreamResponse:
    job = job_detail(_state(request).queue, request.match_info["job_id"])
    if job is None:
        raise FileRefused(404, "no such job")
    return web.json_response(job)


# ---- history -------------------------------------------------------------------------------------


def _int_query(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return max(0, int(raw))
    except ValueError:
        raise FileRefused(400, f"{name} must be a whole number (got {raw[:40]!r})") from None


async def get_history(request: web.Request) -> web.StreamResponse:
    queue = _state(request).queue
    history = queue.history(_int_query(request, "max_items"), _int_query(request, "offset") or 0)
    return web.json_response(history)


async def get_history_entry(request: web.Request) -> web.StreamResponse:
    prompt_id = request.match_info["prompt_id"]
    entry = _state(request).queue.history_entry(prompt_id)
    return web.json_response({prompt_id: entry} if entry is not None else {})


async def post_history(request: web.Request) -> web.StreamResponse:
    queue = _state(request).queue
    body = await json_body(request, optional=True)
    if isinstance(body, dict):
        if body.get("clear"):
            queue.delete_history()
        if isinstance(body.get("delete"), list):
            queue.delete_history([str(pid) for pid in body["delete"]])
    return web.json_response({})


# ---- files -----------------------------------------------------------------------------------------


async def get_view(request: web.Request) -> web.StreamResponse:
    folders = _state(request).folders
    q = request.query
    root = folders.root(q.get("type") or "output")
    path = await _in_thread(resolve, root, q.get("subfolder", ""), q.get("filename", ""))
    return web.FileResponse(path, headers={"Content-Disposition": f'filename="{path.name}"'})


async def _upload(request: web.Request, *, mask: bool) -> web.StreamResponse:
    folders = _state(request).folders
    try:
        form = await request.post()
    except (ValueError, HttpProcessingError) as exc:  # not multipart, or a broken one
        raise FileRefused(400, f"expected a multipart form with a file field 'image' ({type(exc).__name__})") from None
    image = form.get("image")
    if not isinstance(image, web.FileField):
        raise FileRefused(400, "the form has no file field 'image'")
    data = image.file.read()
    filename = image.filename or ""
    subfolder = str(form.get("subfolder", ""))
    kind = str(form.get("type", "input") or "input")
    overwrite = str(form.get("overwrite", "")).lower() in ("true", "1")
    root = folders.root(kind)
    await _in_thread(check_image, data, filename)
    if mask:
        data = await _in_thread(_apply_mask, folders, str(form.get("original_ref", "")), data)
    name = await _in_thread(lambda: store_upload(root, subfolder, filename, data, overwrite=overwrite))
    return web.json_response({"name": name, "subfolder": subfolder, "type": kind})


def _apply_mask(folders: Any, original_ref: str, mask_bytes: bytes) -> bytes:
    """ComfyUI's mask upload: the original image with the uploaded mask's alpha as its transparency."""
    from PIL import Image

    try:
        ref = json.loads(original_ref)
        if not isinstance(ref, dict):
            raise ValueError
    except ValueError:
        raise FileRefused(400, "original_ref must be JSON {filename, subfolder, type}") from None
    original = resolve(folders.root(str(ref.get("type") or "input")), str(ref.get("subfolder", "")),
                       str(ref.get("filename", "")))  # fmt: skip
    with Image.open(original) as img, Image.open(io.BytesIO(mask_bytes)) as mask_img:
        result = img.convert("RGBA")
        alpha = mask_img.convert("RGBA").getchannel("A").resize(result.size)
        result.putalpha(alpha)
        buffer = io.BytesIO()
        result.save(buffer, format="PNG")
    return buffer.getvalue()


async def post_upload_image(request: web.Request) -> web.StreamResponse:
    return await _upload(request, mask=False)


async def post_upload_mask(request: web.Request) -> web.StreamResponse:
    return await _upload(request, mask=True)


# ---- nodes, models, the machine -------------------------------------------------------------------


async def get_object_info(request: web.Request) -> web.StreamResponse:
    node_class = request.match_info.get("node_class")
    return web.json_response(await _in_thread(object_info, _state(request).registry, node_class))


async def get_models(request: web.Request) -> web.StreamResponse:
    from nodes.diffusion.model_paths import KINDS

    return web.json_response(list(KINDS))


async def get_model_folder(request: web.Request) -> web.StreamResponse:
    kind = model_folder(request.match_info["folder"])
    if kind is None:
        raise FileRefused(404, f"no model folder {request.match_info['folder'][:60]!r}")
    return web.json_response(await _in_thread(list_models, kind))


async def get_embeddings(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _in_thread(embeddings))


async def get_system_stats(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _in_thread(system_stats, _state(request).worker.executor.device))


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/prompt", post_prompt),
    ("GET", "/prompt", get_prompt),
    ("GET", "/queue", get_queue),
    ("POST", "/queue", post_queue),
    ("POST", "/interrupt", post_interrupt),
    ("GET", "/jobs", get_jobs),
    ("GET", "/jobs/{job_id}", get_job),
    ("GET", "/history", get_history),
    ("GET", "/history/{prompt_id}", get_history_entry),
    ("POST", "/history", post_history),
    ("GET", "/view", get_view),
    ("POST", "/upload/image", post_upload_image),
    ("POST", "/upload/mask", post_upload_mask),
    ("GET", "/object_info", get_object_info),
    ("GET", "/object_info/{node_class}", get_object_info),
    ("GET", "/models", get_models),
    ("GET", "/models/{folder}", get_model_folder),
    ("GET", "/embeddings", get_embeddings),
    ("GET", "/system_stats", get_system_stats),
]
