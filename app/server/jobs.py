"""`GET /jobs` and `/jobs/{id}`: the queue and the history as one list of jobs, as newer ComfyUI serves it.

ComfyUI's current front-end reads its queue and history panels from here rather than from `/queue` and
`/history`. Everything is derived from those two (nothing is stored twice): a waiting prompt is
`pending`, the running one `in_progress`, a finished one `completed`, `failed` or `cancelled` (an
interrupted prompt). Times are milliseconds since the epoch: `create_time` is stamped on the prompt
when it is queued (`extra_data.create_time`, as ComfyUI does), the start and end come from the status
messages the history keeps.
"""

from __future__ import annotations

from typing import Any

from app.server.queue import PromptQueue, QueuedPrompt

STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")


def _previews(outputs: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {**image, "nodeId": node, "mediaType": "images"}
        for node, output in outputs.items()
        for image in output.get("images", [])
        if isinstance(image, dict)
    ]


def _waiting(item: QueuedPrompt, status: str) -> dict[str, Any]:
    return {
        "id": item.prompt_id,
        "status": status,
        "priority": item.number,
        "create_time": item.extra_data.get("create_time", 0),
        "execution_start_time": None,
        "execution_end_time": None,
        "preview_output": None,
        "outputs_count": 0,
        "previewable_outputs_count": 0,
        "execution_error": None,
        "workflow_id": None,
    }


def _finished(prompt_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    messages = {name: data for name, data in entry["status"]["messages"]}
    if entry["status"]["status_str"] == "success":
        status = "completed"
    else:
        status = "cancelled" if "execution_interrupted" in messages else "failed"
    previews = _previews(entry["outputs"])
    number, _pid, _prompt, extra_data, _outputs = entry["prompt"]
    timestamps = [data.get("timestamp") for data in messages.values() if data.get("timestamp")]
    return {
        "id": prompt_id,
        "status": status,
        "priority": number,
        "create_time": extra_data.get("create_time", 0),
        "execution_start_time": messages.get("execution_start", {}).get("timestamp"),
        "execution_end_time": max(timestamps) if timestamps else None,
        "preview_output": previews[0] if previews else None,
        "outputs_count": len(previews),
        "previewable_outputs_count": len(previews),
        "execution_error": messages.get("execution_error"),
        "workflow_id": None,
    }


def list_jobs(queue: PromptQueue, statuses: set[str], limit: int | None, offset: int) -> dict[str, Any]:
    """Newest first, as the front-end pages through them."""
    running, pending = queue.snapshot()
    jobs = [_waiting(i, "pending") for i in reversed(pending)] + [_waiting(i, "in_progress") for i in running]
    history = queue.history()
    jobs += [_finished(pid, history[pid]) for pid in reversed(list(history))]
    jobs = [j for j in jobs if j["status"] in statuses]
    total = len(jobs)
    page = jobs[offset : offset + limit] if limit is not None else jobs[offset:]
    return {
        "jobs": page,
        "pagination": {
            "offset": offset,
            "limit": limit if limit is not None else total,
            "total": total,
            "has_more": offset + len(page) < total,
        },
    }


def job_detail(queue: PromptQueue, prompt_id: str) -> dict[str, Any] | None:
    """One job with its outputs and the front-end's workflow (for "run again"); None when unknown."""
    entry = queue.history_entry(prompt_id)
    if entry is not None:
        job = _finished(prompt_id, entry)
        extra_data = entry["prompt"][3]
        job["outputs"] = entry["outputs"]
    else:
        running, pending = queue.snapshot()
        found = [(i, "in_progress") for i in running] + [(i, "pending") for i in pending]
        match = [(i, s) for i, s in found if i.prompt_id == prompt_id]
        if not match:
            return None
        item, status = match[0]
        job, extra_data = _waiting(item, status), item.extra_data
        job["outputs"] = {}
    workflow = extra_data.get("extra_pnginfo", {}).get("workflow") if isinstance(extra_data, dict) else None
    if workflow is not None:
        job["workflow"] = {"extra_data": {"extra_pnginfo": {"workflow": workflow}}}
    return job
