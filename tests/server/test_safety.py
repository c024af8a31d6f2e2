"""Safe by default: a token when asked for, no CORS unless asked, the output folder checked up front
(`sdgraph serve` refuses an unwritable one with exit 2, a prompt is refused when it became unwritable)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.server.conftest import start_server
from tests.server.support import post_prompt, txt2img

ROOT = Path(__file__).parents[2]
ORIGIN = "http://localhost:5173"


@pytest.fixture
def guarded(tiny_root, tmp_path):
    with start_server(tmp_path, token="s3cret", cors_origin=ORIGIN) as s:
        yield s


def test_token_is_required_everywhere(guarded):
    auth = {"Authorization": "Bearer s3cret"}

    async def main():
        async with aiohttp.ClientSession() as session:
            out = {}
            for name, headers in (("none", {}), ("wrong", {"Authorization": "Bearer nope"}), ("right", auth)):
                async with session.get(f"{guarded.url}/queue", headers=headers) as resp:
                    out[name] = (resp.status, await resp.json(), resp.headers.get("Access-Control-Allow-Origin"))
            try:
                async with session.ws_connect(f"{guarded.url}/ws?clientId=x"):
                    out["ws_without"] = 101
            except aiohttp.WSServerHandshakeError as exc:
                out["ws_without"] = exc.status
            async with session.ws_connect(f"{guarded.url}/ws?clientId=x", headers=auth) as ws:
                out["ws_with"] = (await ws.receive_json(timeout=10))["type"]
            async with session.ws_connect(f"{guarded.url}/api/ws?clientId=x&token=s3cret") as ws:
                out["ws_query"] = (await ws.receive_json(timeout=10))["type"]
            async with session.options(f"{guarded.url}/prompt", headers={"Origin": ORIGIN}) as resp:
                out["preflight"] = (resp.status, resp.headers.get("Access-Control-Allow-Origin"))
            return out

    out = asyncio.run(main())
    assert out["none"][0] == 401 and out["none"][1]["error"]["type"] == "unauthorized"
    assert out["wrong"][0] == 401
    assert out["right"][:2] == (200, {"queue_running": [], "queue_pending": []})
    assert out["right"][2] == ORIGIN  # CORS only because this server was started with an origin
    assert out["ws_without"] == 401 and out["ws_with"] == "status" and out["ws_query"] == "status"
    assert out["preflight"] == (200, ORIGIN)


def test_no_cors_and_loopback_by_default(served):
    async def main():
        origin = {"Origin": "http://evil.example"}
        async with aiohttp.ClientSession() as session, session.get(f"{served.url}/queue", headers=origin) as resp:
            return resp.status, resp.headers.get("Access-Control-Allow-Origin")

    assert asyncio.run(main()) == (200, None)
    assert served.server.config.host == "127.0.0.1"


def test_prompt_refused_when_the_output_folder_cannot_be_written(guarded):
    guarded.output.rmdir()
    guarded.output.write_text("a file where the output folder was")

    async def main():
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer s3cret"}) as session:
            status, body = await post_prompt(session, guarded.url, txt2img())
            async with session.get(f"{guarded.url}/queue") as resp:
                return status, body, await resp.json()

    status, body, queue = asyncio.run(main())
    assert status == 400 and body["error"]["type"] == "output_folder_not_writable"
    assert "is a file, not a folder" in body["error"]["details"]
    assert queue == {"queue_running": [], "queue_pending": []}


def test_serve_with_an_unwritable_output_dir_exits_2(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    env = {**os.environ, "SDGRAPH_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--port", "0", "--output-dir", str(blocker)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"sdgraph: the output folder {blocker} is a file, not a folder"]


def test_sdgraph_serve_starts_answers_and_stops_on_ctrl_c(tmp_path):
    import signal

    env = {**os.environ, "SDGRAPH_HOME": str(tmp_path), "SDGRAPH_NO_PRELOAD": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", "0", "--output-dir", str(tmp_path / "out")],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        assert "serving ComfyUI's API on http://127.0.0.1:" in line, line
        url = line.split(" on ")[1].split()[0]

        async def main():
            async with aiohttp.ClientSession() as session, session.get(f"{url}/object_info/KSampler") as resp:
                return resp.status, await resp.json()

        status, info = asyncio.run(main())
        assert status == 200 and "KSampler" in info
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert "Traceback" not in proc.stderr.read()


def test_serve_refuses_a_frontend_folder_without_index_html(tmp_path):
    env = {**os.environ, "SDGRAPH_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--port", "0", "--frontend", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"sdgraph: --frontend: {tmp_path} has no index.html (expected "
                                                "ComfyUI's front-end static folder)"]  # fmt: skip
