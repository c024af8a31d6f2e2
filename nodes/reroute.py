"""Reroute: a dot on a wire that lets a long wire go around other nodes (ComfyUI's `Reroute`).

It never runs; the engine looks through it (`graph_engine.reroute`), so its output has the type of
whatever feeds it and a link through it is checked against the real source.
"""

from __future__ import annotations

from typing import Any

from graph_engine import Input, Output, node
from graph_engine.reroute import REROUTE, REROUTE_INPUT, REROUTE_OUTPUT
from graph_engine.types import ANY


@node(
    REROUTE,
    display_name="Reroute",
    category="utils",
    inputs=[Input(REROUTE_INPUT, ANY, label="")],
    outputs=[Output(ANY, REROUTE_OUTPUT, label="")],
    virtual=True,
)
def reroute(ctx: Any, **_: Any) -> tuple[()]:
    """Passes a wire through unchanged, so it can be routed around other nodes."""
    return ()


NODES = [reroute]
