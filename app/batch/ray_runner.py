"""The Ray backend: one actor per GPU (or per N CPU threads), each a `JobRunner` with its models resident.

Ray is an optional extra (`pip install 'sdgraph[cluster]'`); nothing here imports it until a batch asks
for `--ray`, and without it that request is one message with the install command.

Dispatch is pull-based: every actor holds at most one job, and the next job goes to whichever actor
finished first (`ray.wait`), so a slow worker never holds a queue of jobs the others could run. A job's
outcome, with its PNG bytes, comes back to the driver, which writes it (`dispatch.run_batch`).

When an actor dies (its process killed, its node lost: `ray.exceptions.RayActorError`), the job it held
goes back to the front of the queue for whichever actor is free first, and a fresh actor takes the dead
one's place (getting jobs once it has started), up to `max_restarts` replacements over the batch; the
job is recorded only once, by whichever actor finishes it. Actors
run two calls at once (`max_concurrency=2`) only so that `cancel()` reaches a running job: Ray cannot
interrupt an actor's running task, but the job notices its cancel token at the sampler's next step.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.batch.jobs import Job
from app.batch.runner import JobOutcome, JobRunner, WorkerConfig

INSTALL_HINT = "pip install 'sdgraph[cluster]'  (or: pip install 'ray>=2.9')"
# Passed on to every worker process, so it sees the same user folder, node modules and offline mode.
FORWARDED_ENV = (
    "SDGRAPH_HOME",
    "SDGRAPH_NODE_MODULES",
    "SDGRAPH_NO_PLUGINS",
    "SDGRAPH_INPUT_DIR",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class RayUnavailable(Exception):
    """Ray is not installed, or the cluster cannot be reached; the message says what to do."""


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def worker_env(threads: int | None) -> dict[str, str]:
    """Environment for the actors: sdgraph's variables, this checkout on the path, the thread count."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    path = os.environ.get("PYTHONPATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), path) if p)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


class BatchWorker:
    """The actor: a `JobRunner` that lives as long as the batch (Ray wraps this class remotely)."""

    def __init__(self, workflow: Mapping[str, Any], config: WorkerConfig) -> None:
        config.apply()
        self.runner = JobRunner(workflow, config)

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "worker": self.runner.worker}

    def run(self, job: Job, write_to: str | None) -> JobOutcome:
        return self.runner.run(job, write_to=write_to)

    def cancel(self) -> None:
        self.runner.cancel()

    def resume(self) -> None:
        self.runner.resume()

    def executed(self) -> list[str]:
        """The ids of the jobs this actor ran (tests check that a re-run runs none)."""
        return list(self.runner.executed)


@dataclass
class _Slot:
    actor: Any
    index: int


class RayBackend:
    """Jobs on Ray actors. `start()` connects (or starts a local cluster) and waits for the actors."""

    name = "ray"

    def __init__(
        self,
        workflow: Mapping[str, Any],
        config: WorkerConfig,
        *,
        address: str | None = "auto",
        workers: int | None = None,
        threads_per_worker: int = 1,
        gpus_per_worker: float | None = None,
        max_restarts: int = 3,
        init_options: Mapping[str, Any] | None = None,
        start_timeout: float = 600.0,
    ) -> None:
        self.ray = require_ray()
        self.workflow = dict(workflow)
        self.config = config
        self.address = address
        self.workers = workers
        self.threads = max(1, threads_per_worker)
        self.gpus = gpus_per_worker
        self.max_restarts = max_restarts
        self.init_options = dict(init_options or {})
        self.start_timeout = start_timeout
        self.slots: list[_Slot] = []
        self.restarts = 0
        self.retried: list[str] = []  # job ids that went back to the queue after their worker died
        self.startup_seconds = 0.0
        self.in_flight: dict[int, str] = {}  # slot index -> the job id it is running now
        self._cancelling: list[Any] = []  # cancel calls not yet known to have arrived
        self._started_ray = False
        self._actor_class: Any = None

    # ---- life cycle ---------------------------------------------------------------------------

    def start(self) -> float:
        """Connect, create the actors and wait until each has loaded sdgraph; returns the seconds it took."""
        ray = self.ray
        t0 = time.perf_counter()
        if not ray.is_initialized():
            options = {"include_dashboard": False, "log_to_driver": False, **self.init_options}
            # "auto": the cluster in RAY_ADDRESS if set, else a local one on this machine.
            address = None if self.address in (None, "auto", "local") else self.address
            try:
                ray.init(address=address, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayUnavailable(f"--ray {self.address}: cannot reach the Ray cluster: {exc}") from None
            self._started_ray = True
        resources = ray.cluster_resources()
        gpus = self.gpus
        if gpus is None:
            gpus = 1.0 if self.config.device in ("cuda", "auto") and resources.get("GPU", 0) >= 1 else 0.0
        count = self.workers
        if count is None:
            count = int(resources.get("GPU", 0)) if gpus else int(resources.get("CPU", 1) // self.threads)
        count = max(1, count)
        self._check_fits(resources, count, gpus)
        self._actor_class = ray.remote(BatchWorker).options(
            num_cpus=self.threads,
            num_gpus=gpus,
            max_concurrency=2,
            runtime_env={"env_vars": worker_env(self.threads)},
        )
        self.slots = [_Slot(self._new_actor(), i) for i in range(count)]
        try:
            ray.get([s.actor.info.remote() for s in self.slots], timeout=self.start_timeout)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise RayUnavailable(
                f"{count} Ray workers did not start within {self.start_timeout:.0f}s "
                f"(the cluster has {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs)"
            ) from None
        self.startup_seconds = time.perf_counter() - t0
        return self.startup_seconds

    def _check_fits(self, resources: Mapping[str, float], count: int, gpus: float) -> None:
        """Refuse what the cluster can never hold (on a cluster Ray started here, which cannot grow), and
        `--device cuda` on a cluster without GPUs, instead of waiting forever for the actors."""
        if self.config.device == "cuda" and not resources.get("GPU"):
            raise RayUnavailable("--device cuda: the Ray cluster has no GPUs")
        if not self._started_ray:
            return  # a cluster with an autoscaler may add nodes for the actors
        need_cpu, have_cpu = count * self.threads, resources.get("CPU", 0)
        need_gpu, have_gpu = count * gpus, resources.get("GPU", 0)
        if need_cpu > have_cpu or need_gpu > have_gpu:
            raise RayUnavailable(
                f"{count} workers × {self.threads} threads{f' × {gpus:g} GPU' if gpus else ''} do not fit the "
                f"local Ray cluster ({have_cpu:g} CPUs, {have_gpu:g} GPUs): lower --workers or --threads-per-worker"
            )

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self.workflow, self.config)

    @property
    def actors(self) -> list[Any]:
        return [s.actor for s in self.slots]

    def close(self) -> None:
        for slot in self.slots:
            with contextlib.suppress(Exception):  # already gone
                self.ray.kill(slot.actor)
        self.slots = []
        if self._started_ray:
            self.ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> RayBackend:
        if not self.slots:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- dispatch -----------------------------------------------------------------------------

    def cancel(self) -> None:
        """Ask every actor to stop its running job (they then refuse new ones)."""
        for slot in self.slots:
            with contextlib.suppress(Exception):
                self._cancelling.append(slot.actor.cancel.remote())

    def run(
        self,
        jobs: Sequence[Job],
        on_outcome: Callable[[JobOutcome], None],
        stop: threading.Event,
        write_to: Path | None = None,
    ) -> None:
        ray = self.ray
        from ray.exceptions import RayActorError, RayTaskError

        if not self.slots:
            self.start()
        # A cancelled earlier batch does not stop this one. Two calls into an actor may run in either
        # order (max_concurrency=2), so the cancels must have landed before the resumes are sent.
        with contextlib.suppress(Exception):
            ray.get(self._cancelling)
        self._cancelling = []
        ray.get([s.actor.resume.remote() for s in self.slots])
        queue = collections.deque(jobs)
        free = list(self.slots)
        running: dict[Any, tuple[_Slot, Job]] = {}
        starting: dict[Any, _Slot] = {}  # replacements of dead actors, given jobs once they are up
        target = None if write_to is None else str(write_to)
        while queue or running:
            while queue and free and not stop.is_set():
                slot, job = free.pop(0), queue.popleft()
                running[slot.actor.run.remote(job, target)] = (slot, job)
                self.in_flight[slot.index] = job.id
            if not running and (stop.is_set() or not starting):
                break  # stopped with jobs left over: they stay undone (and unrecorded)
            ready, _ = ray.wait([*running, *starting], num_returns=1, timeout=0.2)
            for ref in ready:
                if ref in starting:
                    slot = starting.pop(ref)
                    try:
                        ray.get(ref)
                        free.append(slot)
                    except RayActorError as exc:
                        starting[self._replace(slot, exc)] = slot
                    continue
                slot, job = running.pop(ref)
                self.in_flight.pop(slot.index, None)
                try:
                    outcome = ray.get(ref)
                except RayActorError as exc:
                    # The job goes back to the front of the queue, for whichever worker is free first;
                    # the replacement joins once it has started, so no job waits on a cold actor.
                    starting[self._replace(slot, exc)] = slot
                    self.retried.append(job.id)
                    queue.appendleft(job)
                    continue
                except RayTaskError as exc:  # a bug outside the executor's own error handling
                    outcome = JobOutcome(job, "failed", error={"node": None, "message": str(exc).splitlines()[0]})
                free.append(slot)
                on_outcome(outcome)

    def _replace(self, slot: _Slot, exc: Exception) -> Any:
        """A fresh actor in a dead one's place, unless the batch has used up its restarts; returns the
        reference that resolves once it has started."""
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise RayUnavailable(
                f"batch workers died {self.restarts} times (last: {str(exc).splitlines()[0]}); stopping"
            ) from exc
        with contextlib.suppress(Exception):
            self.ray.kill(slot.actor)
        slot.actor = self._new_actor()
        return slot.actor.info.remote()
