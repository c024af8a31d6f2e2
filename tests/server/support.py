"""Driving a real `sdgraph serve` the way ComfyUI clients do: aiohttp's HTTP client and WebSocket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

CKPT = "tiny_sd1.safetensors"


def txt2img(seed: int = 1, steps: int = 2, prefix: str = "srv", size: int = 64) -> dict[str, Any]:
    """ComfyUI's default graph in API format (its node ids), on the tiny SD1 checkpoint."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["8", 0]}},
    }


Message = dict[str, Any] | bytes


async def receive_until(
    ws: aiohttp.ClientWebSocketResponse, done: Callable[[Message], bool], timeout: float = 60.0
) -> list[Message]:
    """Every message until (and including) the first for which `done` is true."""
    seen: list[Message] = []
    deadline = time.monotonic() + timeout
    while True:
        msg = await asyncio.wait_for(ws.receive(), max(0.1, deadline - time.monotonic()))
        if msg.type == aiohttp.WSMsgType.TEXT:
            item: Message = json.loads(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            item = msg.data
        else:
            raise AssertionError(f"the socket ended: {msg.type} {msg.data!r}")
        seen.append(item)
        if done(item):
            return seen


def finished(prompt_id: str) -> Callable[[Message], bool]:
    """ComfyUI clients' "done": `executing` with `node: null` for the prompt."""
    return lambda m: (
        isinstance(m, dict)
        and m["type"] == "executing"
        and m["data"]["node"] is None
        and m["data"]["prompt_id"] == prompt_id
    )


def of_type(type_: str) -> Callable[[Message], bool]:
    return lambda m: isinstance(m, dict) and m["type"] == type_


def json_messages(messages: list[Message]) -> list[dict[str, Any]]:
    return [m for m in messages if isinstance(m, dict)]


def prompt_ids(messages: list[Message]) -> set[str]:
    return {m["data"]["prompt_id"] for m in json_messages(messages) if "prompt_id" in m["data"]}


async def post_prompt(session: aiohttp.ClientSession, url: str, prompt: Any, **fields: Any) -> tuple[int, Any]:
    async with session.post(f"{url}/prompt", json={"prompt": prompt, **fields}) as resp:
        return resp.status, await resp.json()


def write_png(path: Path, size: tuple[int, int] = (16, 16), colour: tuple[int, ...] = (200, 30, 30)) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()
