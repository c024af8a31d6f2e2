"""Running a batch: skip what the manifest says is done, run the rest on a backend, record each result.

The backends (`LocalBackend` in this process, `RayBackend` on a Ray cluster) only run jobs and hand
back `JobOutcome`s, in whatever order they finish. Everything that touches the output folder happens
here, on the driver, one outcome at a time: the job's files are written (temp file, rename, fsync)
and only then its manifest line appended. So whichever way a batch ends (done, a worker killed,
Ctrl+C, a crash of the driver) the manifest never names a file that is not there, and the next run
of the same command does exactly the jobs that are missing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from app.batch.jobs import Job
from app.batch.manifest import Manifest
from app.batch.runner import JobOutcome, write_job_files


class Backend(Protocol):
    """Runs jobs and reports each outcome as it finishes; stops taking new jobs once `stop` is set."""

    name: str

    def run(
        self,
        jobs: Sequence[Job],
        on_outcome: Callable[[JobOutcome], None],
        stop: threading.Event,
        write_to: Path | None = None,
    ) -> None: ...

    def cancel(self) -> None: ...


@dataclass
class BatchReport:
    total: int
    skipped: int
    done: list[str] = field(default_factory=list)
    failed: list[JobOutcome] = field(default_factory=list)
    cancelled: int = 0
    files: list[Path] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Every job is done (now or before)."""
        return self.skipped + len(self.done) == self.total


def pending_jobs(jobs: Sequence[Job], output_dir: Path | str) -> tuple[list[Job], int]:
    """The jobs the manifest does not show as done (with their files present), and how many it does."""
    done = Manifest(output_dir).done(j.id for j in jobs)
    unique = list({j.id: j for j in jobs}.values())
    return [j for j in unique if j.id not in done], len(unique) - len([j for j in unique if j.id not in done])


def run_batch(
    jobs: Sequence[Job],
    backend: Backend,
    output_dir: Path | str,
    *,
    shared_output: bool = False,
    stop: threading.Event | None = None,
    on_outcome: Callable[[JobOutcome], None] | None = None,
) -> BatchReport:
    """Run the jobs not yet done into `output_dir`; `shared_output`: the workers write the files there."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(output_dir)
    todo, skipped = pending_jobs(jobs, output_dir)
    report = BatchReport(total=len({j.id for j in jobs}), skipped=skipped)
    lock = threading.Lock()

    def handle(outcome: JobOutcome) -> None:
        with lock:
            if outcome.status == "done":
                if any(f.data is not None for f in outcome.files):
                    outcome.files = write_job_files(output_dir, outcome.files)
                manifest.append(outcome.record())
                report.done.append(outcome.job.id)
                report.files.extend(output_dir / f.name for f in outcome.files)
            elif outcome.status == "failed":
                manifest.append(outcome.record())
                report.failed.append(outcome)
            else:
                report.cancelled += 1
        if on_outcome is not None:
            on_outcome(outcome)

    backend.run(todo, handle, stop or threading.Event(), output_dir if shared_output else None)
    return report
