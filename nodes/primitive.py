"""Primitive: one value wired into several widget inputs (ComfyUI's PrimitiveNode, same name and role).

A shared workflow uses it to set, say, the step count of a base and a refiner sampler in one place. It
never runs; the engine gives its value to each input it feeds (`graph_engine.value_sources`), and the
editor draws it as the widget it feeds (a seed with its control, a prompt box, a sampler list).
"""

from __future__ import annotations

from typing import Any

from graph_engine import Output, node
from graph_engine.types import ANY


@node(
    "PrimitiveNode",
    display_name="Primitive",
    category="utils",
    outputs=[Output(ANY, "value", label="connect to widget input")],
    value_source=True,
)
def primitive(ctx: Any) -> tuple[()]:
    """A value typed once and used by every widget input it is wired to."""
    return ()


NODES = [primitive]
