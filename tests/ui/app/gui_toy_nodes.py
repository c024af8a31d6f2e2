"""Pure-Python nodes for the window tests: slow ones that report progress and previews, one that
fails, one that writes real PNGs like SaveImage does. `RAN` records which ran, in order."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from graph_engine import (
    ExecutionContext,
    Float,
    Int,
    NodeOutput,
    NodeRegistry,
    Output,
    Socket,
    String,
    node,
)

RAN: list[tuple[str, int]] = []
_lock = threading.Lock()


def _ran(ctx: ExecutionContext, name: str) -> None:
    with _lock:
        RAN.append((name, ctx.node_id))


@node("Const", category="test", inputs=[Int("value", 1, min=-1000, max=1000)], outputs=[Output("INT")])
def const(ctx: ExecutionContext, value: int) -> tuple[int]:
    _ran(ctx, "Const")
    return (value,)


@node(
    "Seeded",
    category="test",
    inputs=[Int("seed", 5, min=0, max=1000, control_after_generate=True)],
    outputs=[Output("INT")],
)
def seeded(ctx: ExecutionContext, seed: int) -> tuple[int]:
    _ran(ctx, "Seeded")
    return (seed,)


@node(
    "Slow",
    category="test",
    inputs=[Socket("x", "INT"), Int("steps", 20, min=1, max=1000), Float("delay", 0.05, min=0, max=1)],
    outputs=[Output("INT")],
)
def slow(ctx: ExecutionContext, x: int, steps: int, delay: float) -> tuple[int]:
    """Sleeps in small steps, reporting progress and a preview each step, like a sampler."""
    _ran(ctx, "Slow")
    for i in range(steps):
        time.sleep(delay)
        ctx.progress(i + 1, steps)
        ctx.preview(np.full((16, 16, 3), (i * 10) % 256, dtype=np.uint8))
    return (x + 1,)


@node("Fail", category="test", inputs=[Socket("x", "INT")], outputs=[Output("INT")])
def fail(ctx: ExecutionContext, x: int) -> tuple[int]:
    _ran(ctx, "Fail")
    raise ValueError("the value is not acceptable")


@node(
    "SavePNG",
    category="test",
    inputs=[Socket("x", "INT"), String("prefix", "test")],
    output_node=True,
)
def save_png(ctx: ExecutionContext, x: int, prefix: str) -> NodeOutput:
    """Writes one small PNG whose colour encodes `x`, and reports it the way SaveImage does."""
    from PIL import Image

    _ran(ctx, "SavePNG")
    out = Path(ctx.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{prefix}_{ctx.node_id}_{x}.png"
    Image.new("RGB", (32, 24), ((x * 40) % 256, 100, 200)).save(path)
    return NodeOutput((), {"images": [{"path": str(path), "filename": path.name, "type": "output"}]})


def toy_registry() -> NodeRegistry:
    return NodeRegistry([const, seeded, slow, fail, save_png])


def chain(graph, *, slow_steps: int = 20, delay: float = 0.05, fail: bool = False) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Const → Slow → (Fail →) SavePNG; returns the node ids by role."""
    c = graph.add_node("Const", {"value": 3}, pos=(0, 0))
    s = graph.add_node("Slow", {"steps": slow_steps, "delay": delay}, pos=(250, 0))
    graph.add_link(c.id, "INT", s.id, "x", "INT")
    last = s
    ids = {"const": c.id, "slow": s.id}
    if fail:
        f = graph.add_node("Fail", {}, pos=(500, 0))
        graph.add_link(s.id, "INT", f.id, "x", "INT")
        ids["fail"] = f.id
        last = f
    out = graph.add_node("SavePNG", {"prefix": "t"}, pos=(750, 0))
    graph.add_link(last.id, "INT", out.id, "x", "INT")
    ids["save"] = out.id
    return ids
