"""A note on the canvas: text for the reader of the workflow, never executed."""

from __future__ import annotations

from typing import Any

from graph_engine import String, node


@node(
    "Note",
    display_name="Note",
    category="utils",
    inputs=[String("text", "", multiline=True)],
    virtual=True,
)
def note(ctx: Any, text: str) -> tuple[()]:
    """Explains part of the workflow to whoever opens it."""
    return ()


NODES = [note]
