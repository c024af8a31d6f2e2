"""A model-free image source, so Save Image can be run (and killed, and starved of disk) in tests."""

from __future__ import annotations

from typing import Any

from graph_engine import ExecutionContext, Int, Output, node


@node(
    "SolidImage",
    category="testing",
    inputs=[Int("shade", 128, min=0, max=255), Int("size", 32, min=8, max=512)],
    outputs=[Output("IMAGE")],
)
def solid_image(ctx: ExecutionContext, shade: int, size: int) -> tuple[Any]:
    """One size x size image of a single grey: a real IMAGE tensor as the diffusion nodes make."""
    import torch

    return (torch.full((1, size, size, 3), shade / 255.0),)


NODES = [solid_image]
