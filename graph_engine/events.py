"""Events a run reports, in order: RunStarted, then per node Cached or Started/Progress*/Preview*/
Finished or Failed, then RunFinished. They are emitted on the thread that runs the graph; a UI hands
them over to its own thread."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunStarted:
    node_ids: tuple[int, ...]


@dataclass(frozen=True)
class NodeCached:
    node_id: int


@dataclass(frozen=True)
class NodeStarted:
    node_id: int


@dataclass(frozen=True)
class NodeProgress:
    node_id: int
    step: int
    total: int


@dataclass(frozen=True)
class NodePreview:
    node_id: int
    image: Any


@dataclass(frozen=True)
class NodeFinished:
    node_id: int
    seconds: float
    ui: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeFailed:
    node_id: int
    message: str


@dataclass(frozen=True)
class RunFinished:
    status: str  # "done" | "failed" | "cancelled"
    seconds: float


Event = RunStarted | NodeCached | NodeStarted | NodeProgress | NodePreview | NodeFinished | NodeFailed | RunFinished
