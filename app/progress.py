"""Progress of a headless run on stderr: one line per node, a bar for nodes that report steps."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from graph_engine.events import Event, NodeCached, NodeFailed, NodeFinished, NodeProgress, NodeStarted


class ProgressReporter:
    def __init__(self, graph: Any, plan: Any) -> None:
        self.console = Console(file=sys.stderr)
        self.titles = {p.id: p.title for p in plan.order}
        self.total = len(plan.order)
        self.done = 0
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.task: Any = None

    def __enter__(self) -> ProgressReporter:
        self.progress.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.__exit__(exc_type, exc, tb)

    def _label(self, node_id: int) -> str:
        return f"[{self.done + 1}/{self.total}] {self.titles.get(node_id, node_id)}"

    def on_event(self, event: Event) -> None:
        if isinstance(event, NodeCached):
            self.console.print(f"{self._label(event.node_id)}: cached", highlight=False)
            self.done += 1
        elif isinstance(event, NodeStarted):
            self.task = self.progress.add_task(self._label(event.node_id), total=None)
        elif isinstance(event, NodeProgress) and self.task is not None:
            self.progress.update(self.task, completed=event.step, total=event.total)
        elif isinstance(event, NodeFinished | NodeFailed):
            if self.task is not None:
                self.progress.remove_task(self.task)
                self.task = None
            if isinstance(event, NodeFinished):
                self.console.print(f"{self._label(event.node_id)}: done in {event.seconds:.2f}s", highlight=False)
                self.done += 1
