"""Small pieces every ComfyUI reader and writer shares: the import result, value checks, constants.

ComfyUI files come from many frontend versions and hand edits, so every value read from one is checked
here before it reaches the graph. A value that cannot be used raises one `WorkflowFormatError` that
names where in the file it sits ("nodes[3] (id 7, KSampler).pos: ..."), never a traceback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from graph_engine.model import Graph
from graph_engine.serialization import WorkflowFormatError

# Frontend-only node types: they shape the canvas but never reach the server.
REROUTE = "Reroute"
PRIMITIVE = "PrimitiveNode"
NOTE_TYPES = ("Note", "MarkdownNote")
VIRTUAL_TYPES = frozenset({REROUTE, PRIMITIVE, *NOTE_TYPES})

# Our note node type; ComfyUI's Note and MarkdownNote both become one.
OUR_NOTE = "Note"

# The key under node/graph/group `extra` that holds ComfyUI data we carry but do not interpret.
COMFY_KEY = "comfy"

# Our own node/graph extras travel in a ComfyUI file under this key (written by `to_ui`, read on import).
SDGRAPH_EXTRA_KEY = "sdgraph_extra"

# Largest id we accept: beyond it JSON numbers stop being exact in JavaScript (and in our own files).
MAX_ID = 2**53


@dataclass
class ComfyImport:
    """A ComfyUI (or A1111) workflow turned into our graph, plus what the user should hear about once."""

    graph: Graph
    format: str  # "comfyui-ui" | "comfyui-api" | "a1111"
    notices: list[str] = field(default_factory=list)
    # Node types the file uses that this install does not have, in the order they first appear.
    missing_types: list[str] = field(default_factory=list)


def fail(where: str, message: str) -> WorkflowFormatError:
    """The one error type of every reader; `where` is a path into the file a person can follow."""
    return WorkflowFormatError(f"{where}: {message}" if where else message)


def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def check_id(value: Any, where: str) -> int:
    if not is_int(value) or value < 0 or value > MAX_ID:
        raise fail(where, f"expected a non-negative whole-number id, got {short(value)}")
    return int(value)


def check_slot(value: Any, where: str) -> int:
    if not is_int(value) or value < 0 or value > 10_000:
        raise fail(where, f"expected a slot number (0, 1, ...), got {short(value)}")
    return int(value)


def check_numbers(value: Any, n: int, where: str) -> tuple[float, ...]:
    """Positions and sizes: a list of n numbers, or the `{"0": w, "1": h}` objects older files use."""
    if isinstance(value, dict) and all(str(i) in value for i in range(n)):
        value = [value[str(i)] for i in range(n)]
    if (
        not isinstance(value, list | tuple)
        or len(value) != n
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) and abs(v) < 1e12 for v in value)
    ):
        raise fail(where, f"expected {n} finite numbers, got {short(value)}")
    return tuple(float(v) for v in value)


def check_text(value: Any, where: str, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise fail(where, f"expected text, got {short(value)}")
    return value


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def missing_types_notice(types: list[str]) -> str:
    """Told once per file: which node types are missing, and that the rest still runs."""
    verb = "is" if len(types) == 1 else "are"
    return (
        f"{plural(len(types), 'node type')} {verb} not installed: {', '.join(types)}. "
        "They are kept as placeholders; outputs that do not need them still run."
    )
