"""The in-process backend: every job on one `JobRunner` in this process, one after another.

The default of `sdgraph batch` (no `--ray`) and what a caller inside the editor uses: the models stay
loaded and the cache warm across the jobs, exactly as on one Ray actor, without a cluster.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from app.batch.jobs import Job
from app.batch.runner import JobOutcome, JobRunner


class LocalBackend:
    name = "in-process"

    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner

    def run(
        self,
        jobs: Sequence[Job],
        on_outcome: Callable[[JobOutcome], None],
        stop: threading.Event,
        write_to: Path | None = None,
    ) -> None:
        self.runner.resume()
        for job in jobs:
            if stop.is_set():
                return
            on_outcome(self.runner.run(job, write_to=write_to))

    def cancel(self) -> None:
        """Stop the job that is running at its next step (called from the Ctrl+C handler)."""
        self.runner.cancel()

    def close(self) -> None:
        self.runner.close()
