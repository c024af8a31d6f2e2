"""Small pure-Python nodes for engine tests. Each records its calls in `CALLS` so tests can ask
exactly which nodes ran."""

from __future__ import annotations

import random
import threading
from typing import Any

from graph_engine import (
    Combo,
    ExecutionContext,
    Float,
    InputError,
    Int,
    NodeOutput,
    NodeRegistry,
    Output,
    Socket,
    String,
    node,
)

CALLS: list[tuple[str, int]] = []
_lock = threading.Lock()


def _record(ctx: ExecutionContext, name: str) -> None:
    with _lock:
        CALLS.append((name, ctx.node_id))


@node("Number", category="math", inputs=[Int("value", 1, min=-1000, max=1000)], outputs=[Output("INT")])
def number(ctx: ExecutionContext, value: int) -> tuple[int]:
    _record(ctx, "Number")
    return (value,)


@node(
    "Add",
    category="math",
    inputs=[Socket("a", "INT"), Socket("b", "INT"), Int("bias", 0, min=-10, max=10)],
    outputs=[Output("INT")],
)
def add(ctx: ExecutionContext, a: int, b: int, bias: int) -> tuple[int]:
    _record(ctx, "Add")
    return (a + b + bias,)


@node(
    "Scale",
    category="math",
    inputs=[Socket("x", "INT"), Float("factor", 2.0, min=0, max=10)],
    outputs=[Output("FLOAT")],
)
def scale(ctx: ExecutionContext, x: int, factor: float) -> tuple[float]:
    _record(ctx, "Scale")
    return (x * factor,)


@node("Show", category="output", inputs=[Socket("value", "ANY")], output_node=True)
def show(ctx: ExecutionContext, value: Any) -> NodeOutput:
    _record(ctx, "Show")
    return NodeOutput((), {"text": [repr(value)]})


@node("Dice", category="math", inputs=[], outputs=[Output("INT")], nondeterministic=True)
def dice(ctx: ExecutionContext) -> tuple[int]:
    _record(ctx, "Dice")
    return (random.randint(1, 6),)


@node(
    "Blob",
    category="data",
    inputs=[Int("size", 1000, min=0, max=10**9), Int("tag", 0)],
    outputs=[Output("LATENT")],
)
def blob(ctx: ExecutionContext, size: int, tag: int) -> tuple[bytearray]:
    """A result whose memory the cache can count (bytearray has no nbytes, so wrap in memoryview)."""
    _record(ctx, "Blob")
    return (memoryview(bytearray(size)),)


@node("LatentSink", category="output", inputs=[Socket("latent", "LATENT")], output_node=True)
def latent_sink(ctx: ExecutionContext, latent: Any) -> tuple[()]:
    _record(ctx, "LatentSink")
    return ()


@node("ImageSink", category="output", inputs=[Socket("image", "IMAGE")], output_node=True)
def image_sink(ctx: ExecutionContext, image: Any) -> tuple[()]:
    _record(ctx, "ImageSink")
    return ()


@node(
    "Choose",
    category="misc",
    inputs=[Combo("mode", ["fast", "slow"]), String("label", "x"), Socket("maybe", "INT", optional=True)],
    outputs=[Output("STRING")],
)
def choose(ctx: ExecutionContext, mode: str, label: str, maybe: int | None = None) -> tuple[str]:
    _record(ctx, "Choose")
    return (f"{mode}:{label}:{maybe}",)


@node("Steps", category="misc", inputs=[Socket("x", "INT"), Int("steps", 5, min=1, max=1000)], outputs=[Output("INT")])
def steps(ctx: ExecutionContext, x: int, steps: int) -> tuple[int]:
    """Reports progress each step; tests cancel it midway."""
    _record(ctx, "Steps")
    for i in range(steps):
        ctx.progress(i + 1, steps)
    return (x + steps,)


@node("Fail", category="misc", inputs=[Socket("x", "INT"), Int("limit", 3)], outputs=[Output("INT")])
def fail(ctx: ExecutionContext, x: int, limit: int) -> tuple[int]:
    _record(ctx, "Fail")
    if x > limit:
        raise InputError("x", f"{x} is more than {limit}")
    raise ZeroDivisionError("division by zero")


ALL = [number, add, scale, show, dice, blob, latent_sink, image_sink, choose, steps, fail]


def registry() -> NodeRegistry:
    return NodeRegistry(ALL)


@node(
    "WriteText",
    category="output",
    inputs=[Socket("value", "ANY"), String("name", "out")],
    output_node=True,
)
def write_text(ctx: ExecutionContext, value: Any, name: str) -> NodeOutput:
    _record(ctx, "WriteText")
    path = ctx.output_dir / f"{name}.txt"
    path.write_text(repr(value))
    return NodeOutput((), {"images": [{"path": str(path), "filename": path.name, "type": "output"}]})


@node(
    "Sleepy", category="misc", inputs=[Socket("x", "INT"), Int("steps", 100, min=1, max=10000)], outputs=[Output("INT")]
)
def sleepy(ctx: ExecutionContext, x: int, steps: int) -> tuple[int]:
    import time

    for i in range(steps):
        time.sleep(0.05)
        ctx.progress(i + 1, steps)
    return (x,)


ALL += [write_text, sleepy]
NODES = ALL
