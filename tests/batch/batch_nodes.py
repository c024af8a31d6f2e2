"""Pure-Python nodes for the batch tests: a value, a slow step, and an output node that writes a file
(and refuses multiples of seven, so a batch has jobs that fail for a reason it can name)."""

from __future__ import annotations

import time

from graph_engine import ExecutionContext, InputError, Int, NodeOutput, NodeRegistry, Output, Socket, String, node


@node("BatchValue", category="test", inputs=[Int("value", 1, min=0, max=1000)], outputs=[Output("INT")])
def batch_value(ctx: ExecutionContext, value: int) -> tuple[int]:
    return (value,)


@node(
    "BatchSlow",
    category="test",
    inputs=[Socket("x", "INT"), Int("steps", 5, min=1, max=1000), Int("ms", 20, min=0, max=10000)],
    outputs=[Output("INT")],
)
def batch_slow(ctx: ExecutionContext, x: int, steps: int, ms: int) -> tuple[int]:
    """Reports a step every `ms`; a cancel request stops it at the next step."""
    for i in range(steps):
        time.sleep(ms / 1000)
        ctx.progress(i + 1, steps)
    return (x,)


@node(
    "BatchWrite",
    category="test",
    inputs=[Socket("value", "INT"), String("text", "v"), String("name", "out")],
    output_node=True,
)
def batch_write(ctx: ExecutionContext, value: int, text: str, name: str) -> NodeOutput:
    if value % 7 == 0:
        raise InputError("value", f"{value} is a multiple of seven")
    path = ctx.output_dir / f"{name}.txt"
    path.write_text(f"{text}={value}")
    return NodeOutput((), {"images": [{"path": str(path), "filename": path.name, "type": "output"}]})


NODES = [batch_value, batch_slow, batch_write]


def registry() -> NodeRegistry:
    return NodeRegistry(NODES)
