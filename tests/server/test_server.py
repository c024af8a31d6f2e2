"""`sdgraph serve` driven as ComfyUI clients drive ComfyUI: HTTP with aiohttp, progress over `/ws`."""

from __future__ import annotations

import asyncio
import io
import struct
from pathlib import Path

import aiohttp
from PIL import Image

from app.history import HistoryStore
from tests.server.support import (
    CKPT,
    finished,
    json_messages,
    of_type,
    post_prompt,
    prompt_ids,
    receive_until,
    txt2img,
)


def test_txt2img_progress_view_and_history(served):
    async def main():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{served.url}/ws?clientId=alice") as ws:
                hello = await ws.receive_json(timeout=10)
                assert hello["type"] == "status" and hello["data"]["sid"] == "alice"
                status, body = await post_prompt(session, served.url, txt2img(seed=1), client_id="alice")
                assert status == 200, body
                assert set(body) == {"prompt_id", "number", "node_errors"} and body["node_errors"] == {}
                pid = body["prompt_id"]
                messages = await receive_until(ws, finished(pid))
            async with session.get(f"{served.url}/history/{pid}") as resp:
                history = await resp.json()
            image_ref = history[pid]["outputs"]["9"]["images"][0]
            async with session.get(f"{served.url}/view", params=image_ref) as resp:
                assert resp.status == 200
                png = await resp.read()
            async with session.get(f"{served.url}/api/history/{pid}") as resp:
                assert await resp.json() == history
            # The newer front-end's view of the same: /jobs (as ComfyUI's current UI asks for it).
            async with session.get(
                f"{served.url}/api/jobs?status=completed,failed,cancelled&limit=64&offset=0"
            ) as resp:
                jobs = await resp.json()
            async with session.get(f"{served.url}/api/jobs/{pid}") as resp:
                job = await resp.json()
        return pid, messages, history, png, jobs, job

    pid, messages, history, png, jobs, job = asyncio.run(main())
    (listed,) = [j for j in jobs["jobs"] if j["id"] == pid]
    assert listed["status"] == "completed" and listed["outputs_count"] == 1 and listed["create_time"] > 0
    assert listed["preview_output"]["filename"] == history[pid]["outputs"]["9"]["images"][0]["filename"]
    assert listed["execution_start_time"] <= listed["execution_end_time"]
    assert jobs["pagination"]["total"] >= 1 and job["outputs"] == history[pid]["outputs"]
    kinds = [m["type"] for m in json_messages(messages) if m["type"] != "status"]
    assert kinds[0] == "execution_start" and kinds[1] == "execution_cached"
    assert kinds[-2:] == ["execution_success", "executing"]
    executing = [m["data"]["node"] for m in json_messages(messages) if m["type"] == "executing"]
    assert executing[-1] is None and "3" in executing and executing.index("4") < executing.index("3")
    progress = [m["data"] for m in json_messages(messages) if m["type"] == "progress"]
    assert progress[-1] == {"value": 2, "max": 2, "prompt_id": pid, "node": "3"}
    frames = [m for m in messages if isinstance(m, bytes)]
    assert frames and struct.unpack(">II", frames[0][:8]) == (1, 1) and frames[0][8:10] == b"\xff\xd8"  # JPEG
    executed = [m["data"] for m in json_messages(messages) if m["type"] == "executed"]
    assert executed == [{"node": "9", "display_node": "9", "output": history[pid]["outputs"]["9"], "prompt_id": pid}]
    image = history[pid]["outputs"]["9"]["images"][0]
    assert image["type"] == "output" and image["subfolder"] == "" and image["filename"].startswith("srv")
    assert "path" not in image  # clients fetch by name, never learn server paths
    assert history[pid]["status"]["status_str"] == "success" and history[pid]["status"]["completed"]
    assert history[pid]["prompt"][1] == pid and history[pid]["prompt"][4] == ["9"]
    assert Image.open(io.BytesIO(png)).size == (64, 64)
    assert (served.output / image["filename"]).read_bytes() == png
    # The run is in the editor's History too, with its graph and a thumbnail.
    with HistoryStore(served.history_db) as store:
        runs = [r for r in store.list() if any(Path(i.path).name == image["filename"] for i in r.images)]
        assert len(runs) == 1 and runs[0].models == (CKPT,) and "a red fox" in runs[0].prompt
        assert store.thumbnail(runs[0].images[0].id) and store.workflow(runs[0].id)["nodes"]


async def _wait_running(session, url, ws, pid):
    """Until the prompt reports sampler progress, so it is surely running; the messages so far."""
    return await receive_until(ws, lambda m: of_type("progress")(m) and m["data"]["prompt_id"] == pid)


def test_interrupt_stops_the_running_prompt(served):
    async def main():
        async with aiohttp.ClientSession() as session, session.ws_connect(f"{served.url}/ws?clientId=ivan") as ws:
            _status, body = await post_prompt(session, served.url, txt2img(seed=2, steps=5000), client_id="ivan")
            pid = body["prompt_id"]
            early = await _wait_running(session, served.url, ws, pid)
            async with session.post(f"{served.url}/interrupt", json={"prompt_id": "not-this-one"}) as resp:
                assert resp.status == 200
            async with session.post(f"{served.url}/api/interrupt") as resp:
                assert resp.status == 200
            messages = await receive_until(ws, finished(pid), timeout=30)
            async with session.get(f"{served.url}/history/{pid}") as resp:
                return pid, early + messages, (await resp.json())[pid]

    _pid, messages, entry = asyncio.run(main())
    interrupted = [m["data"] for m in json_messages(messages) if m["type"] == "execution_interrupted"]
    assert len(interrupted) == 1 and interrupted[0]["node_id"] == "3" and interrupted[0]["node_type"] == "KSampler"
    cached = [n for m in json_messages(messages) if m["type"] == "execution_cached" for n in m["data"]["nodes"]]
    assert "4" in interrupted[0]["executed"] + cached and "3" not in interrupted[0]["executed"]
    assert not any(m["type"] in ("execution_success", "executed") for m in json_messages(messages))
    assert entry["status"]["status_str"] == "error" and entry["outputs"] == {}


def test_queue_while_running(served):
    async def main():
        async with aiohttp.ClientSession() as session, session.ws_connect(f"{served.url}/ws?clientId=quinn") as ws:
            _s, long = await post_prompt(session, served.url, txt2img(seed=3, steps=5000), client_id="quinn")
            early = await _wait_running(session, served.url, ws, long["prompt_id"])
            _s, second = await post_prompt(session, served.url, txt2img(seed=4), client_id="quinn")
            _s, third = await post_prompt(session, served.url, txt2img(seed=5), client_id="quinn", front=True)
            async with session.get(f"{served.url}/queue") as resp:
                queue = await resp.json()
            async with session.get(f"{served.url}/prompt") as resp:
                remaining = (await resp.json())["exec_info"]["queue_remaining"]
            async with session.get(f"{served.url}/api/jobs?status=in_progress,pending") as resp:
                jobs = [(j["id"], j["status"]) for j in (await resp.json())["jobs"]]
            assert jobs == [
                (second["prompt_id"], "pending"),
                (third["prompt_id"], "pending"),
                (long["prompt_id"], "in_progress"),
            ]
            async with session.post(f"{served.url}/queue", json={"delete": [third["prompt_id"]]}) as resp:
                assert resp.status == 200
            async with session.get(f"{served.url}/api/queue") as resp:
                after_delete = await resp.json()
            async with session.post(f"{served.url}/interrupt") as resp:
                assert resp.status == 200
            messages = early + await receive_until(ws, finished(second["prompt_id"]), timeout=60)
        return long, second, third, queue, remaining, after_delete, messages

    long, second, third, queue, remaining, after_delete, messages = asyncio.run(main())
    assert [item[1] for item in queue["queue_running"]] == [long["prompt_id"]]
    # `front` jumps ahead of what was queued before it, as in ComfyUI.
    assert [item[1] for item in queue["queue_pending"]] == [third["prompt_id"], second["prompt_id"]]
    assert queue["queue_pending"][1][2] == txt2img(seed=4) and queue["queue_pending"][1][4] == ["9"]
    assert remaining == 3
    assert [item[1] for item in after_delete["queue_pending"]] == [second["prompt_id"]]
    ran = prompt_ids([m for m in messages if isinstance(m, dict) and m["type"] == "execution_start"])
    assert ran == {long["prompt_id"], second["prompt_id"]}  # the deleted one never started
    statuses = [m["data"]["status"]["exec_info"] for m in json_messages(messages) if m["type"] == "status"]
    assert statuses[-1] == {"queue_remaining": 0}
    successes = [m["data"]["prompt_id"] for m in json_messages(messages) if m["type"] == "execution_success"]
    assert successes == [second["prompt_id"]]


def test_two_clients_each_hear_only_their_own_prompt(served):
    async def client(session, name, seed):
        async with session.ws_connect(f"{served.url}/ws?clientId={name}") as ws:
            await ws.receive_json(timeout=10)
            _s, body = await post_prompt(session, served.url, txt2img(seed=seed, prefix=name), client_id=name)
            pid = body["prompt_id"]
            messages = await receive_until(ws, finished(pid))
            # The other client's prompt may still be running: listen until it is surely done too.
            other_done = await _drain_until_idle(session, served.url, ws)
            return pid, messages + other_done

    async def main():
        async with aiohttp.ClientSession() as session:
            return await asyncio.gather(client(session, "ann", 10), client(session, "bob", 11))

    (pid_a, seen_a), (pid_b, seen_b) = asyncio.run(main())
    assert prompt_ids(seen_a) == {pid_a} and prompt_ids(seen_b) == {pid_b}
    executed_a = [m for m in json_messages(seen_a) if m["type"] == "executed"]
    assert executed_a and all(i["filename"].startswith("ann") for i in executed_a[0]["data"]["output"]["images"])
    # Both hear the queue's status: two prompts were waiting or running at some point.
    for seen in (seen_a, seen_b):
        assert any(m["type"] == "status" for m in json_messages(seen))


async def _drain_until_idle(session, url, ws):
    extra = []
    for _ in range(600):
        async with session.get(f"{url}/prompt") as resp:
            if (await resp.json())["exec_info"]["queue_remaining"] == 0:
                break
        try:
            msg = await ws.receive(timeout=0.1)
            extra.append(msg.json() if msg.type == aiohttp.WSMsgType.TEXT else msg.data)
        except TimeoutError:
            pass
    while True:  # whatever was already on its way
        try:
            msg = await ws.receive(timeout=0.3)
        except TimeoutError:
            return extra
        extra.append(msg.json() if msg.type == aiohttp.WSMsgType.TEXT else msg.data)
