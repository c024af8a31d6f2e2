"""Running one batch job on a warm executor, wherever it runs: in the driver process or a Ray actor.

A `JobRunner` holds one `Executor` for the whole batch, so the checkpoint is loaded once and the nodes
a job does not change (the text encoders, the empty latent) are cache hits from the second job on.
Each job gets its own empty output folder; what its output nodes write there (SaveImage's PNGs with
the job's workflow embedded, exactly as `sdgraph run` writes them) is read back as bytes and the folder
removed. The bytes travel to the driver, which names the files by job id and writes them
(`write_job_files`); with a shared output folder the worker writes them itself.

A failed node is an outcome (job, node, message), never an exception: the batch goes on. `cancel()`
may be called from another thread (Ctrl+C in the driver, or a second concurrent call into a Ray
actor) and stops the job at the sampler's next step.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.batch.jobs import Job, job_graph
from graph_engine import CancelToken, Executor, InvalidGraph, NodeRegistry, make_plan
from graph_engine.serialization import atomic_write, graph_to_dict


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker builds its executor; plain data, so it travels to Ray actors on other machines."""

    device: str = "cpu"
    precision: str = "exact"
    compile: bool | None = None
    model_roots: tuple[str, ...] = ()
    comfyui_yaml: str = ""
    a1111: str = ""
    threads: int | None = None  # torch threads per worker (None: torch's default)

    @classmethod
    def current(cls, *, device: str, precision: str, compile: bool | None, threads: int | None) -> WorkerConfig:
        """This process's model folders, so a worker finds the same files the driver validated against."""
        from nodes.folders import configured

        roots, yaml, a1111 = configured()
        return cls(device, precision, compile, tuple(roots), yaml, a1111, threads)

    def apply(self) -> None:
        """In a fresh worker process: the model folders and the thread count the driver asked for."""
        from nodes.folders import configure

        configure(self.model_roots, self.comfyui_yaml, self.a1111)
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)


@dataclass(frozen=True)
class OutputFile:
    """One file a job wrote; `data` is None once it is on disk (shared output folder)."""

    name: str
    size: int
    sha256: str
    data: bytes | None = None

    def entry(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.size, "sha256": self.sha256}


@dataclass
class JobOutcome:
    job: Job
    status: str  # "done" | "failed" | "cancelled"
    files: list[OutputFile] = field(default_factory=list)
    error: dict[str, Any] | None = None
    seconds: float = 0.0
    worker: str = ""

    def record(self) -> dict[str, Any]:
        """The manifest line for this job."""
        record: dict[str, Any] = {
            "job": self.job.id,
            "status": self.status,
            "label": self.job.label,
            "overrides": self.job.to_record(),
            "files": [f.entry() for f in self.files],
            "seconds": round(self.seconds, 3),
            "worker": self.worker,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if self.error is not None:
            record["error"] = self.error
        return record

    def describe_error(self) -> str:
        """`job ID: node N (Title): message`, the line a failed job gets on stderr."""
        error = self.error or {}
        where = f"node {error['node']} ({error.get('title', '')})" if error.get("node") is not None else "workflow"
        return f"job {self.job.id} ({self.job.label}): {where}: {error.get('message', 'failed')}"


def output_name(job_id: str, index: int, count: int, suffix: str) -> str:
    """`<job>.png` for a job's only file; `<job>_01.png`, ... when it wrote several."""
    return f"{job_id}{suffix}" if count == 1 else f"{job_id}_{index + 1:02}{suffix}"


def write_job_files(folder: Path | str, files: list[OutputFile]) -> list[OutputFile]:
    """Write a job's files atomically (temp file + rename + fsync); returns them without their bytes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for f in files:
        assert f.data is not None, "a file that is already on disk has nothing to write"
        atomic_write(folder / f.name, f.data)
        written.append(OutputFile(f.name, f.size, f.sha256))
    return written


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def make_executor(registry: NodeRegistry, config: WorkerConfig, output_dir: Path) -> Executor:
    """An executor as `sdgraph run` builds it (device, precision, the user's settings for budgets)."""
    from app.settings import Settings

    settings = Settings.load()
    flags: dict[str, Any] = {} if config.compile is None else {"compile": bool(config.compile)}
    return Executor(
        registry,
        device=config.device or settings.device,
        output_dir=output_dir,
        settings={"precision": config.precision or settings.precision, "settings": settings, **flags},
    )


class JobRunner:
    """Runs jobs of one workflow one after another on one executor (models resident, cache warm)."""

    def __init__(
        self,
        workflow: Mapping[str, Any],
        config: WorkerConfig | None = None,
        *,
        registry: NodeRegistry | None = None,
        executor: Executor | None = None,
    ) -> None:
        if registry is None:
            from app.plugins import app_registry

            registry = app_registry()
        self.workflow = dict(workflow)
        self.registry = registry
        self.scratch = Path(tempfile.mkdtemp(prefix="sdgraph-batch-"))
        self.executor = executor or make_executor(registry, config or WorkerConfig(), self.scratch)
        self.worker = worker_name()
        self.executed: list[str] = []  # ids of the jobs this runner ran, in order (tests count them)
        self._token = CancelToken()

    def cancel(self) -> None:
        """Stop the running job at its next step; every later `run` returns "cancelled" at once."""
        self._token.cancel()

    def resume(self) -> None:
        """Take jobs again after a `cancel()` (a new batch on the same warm runner)."""
        self._token = CancelToken()

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def run(self, job: Job, *, write_to: Path | str | None = None) -> JobOutcome:
        """One job; its files come back as bytes, or are written into `write_to` (a shared folder)."""
        if self._token.cancelled:
            return JobOutcome(job, "cancelled", worker=self.worker)
        started = time.perf_counter()
        graph = job_graph(self.workflow, job)
        try:
            plan = make_plan(graph, self.registry)
        except InvalidGraph as exc:
            first = exc.problems[0]
            error = {"node": first.node_id, "title": first.title, "message": "; ".join(str(p) for p in exc.problems)}
            return JobOutcome(job, "failed", error=error, worker=self.worker)
        # An output node whose inputs were seen before (a retry on this worker) would be a cache hit
        # and write nothing; it must run again to write this job's files.
        signatures = self.executor.signatures(plan)
        for p in plan.order:
            if p.spec.output_node:
                self.executor.cache.discard(signatures[p.id])
        folder = Path(tempfile.mkdtemp(dir=self.scratch))
        previous_dir = self.executor.output_dir
        self.executor.output_dir = folder
        try:
            result = self.executor.execute(plan, cancel=self._token, workflow=graph_to_dict(graph))
            files = _collect(folder, job.id)
        finally:
            self.executor.output_dir = previous_dir
            shutil.rmtree(folder, ignore_errors=True)
        seconds = time.perf_counter() - started
        self.executed.append(job.id)
        if result.status != "done":
            failure: dict[str, Any] | None = None
            if result.error is not None:
                e = result.error
                failure = {"node": e.node_id, "title": e.title, "type": e.type, "message": e.message, "input": e.input}
            return JobOutcome(job, result.status, error=failure, seconds=seconds, worker=self.worker)
        if write_to is not None:
            try:
                files = write_job_files(write_to, files)
            except OSError as exc:  # a full or unreachable shared folder fails this job, not the worker
                error = {
                    "node": None,
                    "message": f"{exc.filename or write_to} could not be written: {exc.strerror or exc}",
                }
                return JobOutcome(job, "failed", error=error, seconds=seconds, worker=self.worker)
        return JobOutcome(job, "done", files, seconds=seconds, worker=self.worker)


def _collect(folder: Path, job_id: str) -> list[OutputFile]:
    """The files the job's output nodes wrote, in path order, renamed after the job."""
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))  # "." : temps
    files = []
    for i, path in enumerate(paths):
        data = path.read_bytes()
        name = output_name(job_id, i, len(paths), path.suffix)
        files.append(OutputFile(name, len(data), hashlib.sha256(data).hexdigest(), data))
    return files
