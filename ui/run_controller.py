"""Running the open document from the window without ever freezing it.

The run goes through the same `Executor` as `sdgraph run`, on one worker thread (a single-thread
`ThreadPoolExecutor` awaited through qasync's `run_in_executor`), so the Qt event loop keeps painting
and taking input while a sampler works for minutes.

What runs is a snapshot: the graph is copied (through its JSON form, which is also the workflow that
SaveImage embeds) and validated on the Qt thread before anything starts. The user may keep editing
the live graph during the run; the worker never reads it. An invalid graph never starts: its problems
go to the canvas (`set_problems`) and the log instead.

Events arrive on the worker thread. They are put in a small mailbox (`EventPump`) that keeps only the
newest progress and preview per node, and the Qt thread empties it on a 50 ms timer, so the canvas
sees at most ~20 updates a second however fast a sampler reports, and previews (converted to QImage
on the Qt thread) at most ~10 a second. Order is kept for everything else, so a node's last progress
always lands before its Finished/Failed.

A failure never escapes as an exception: a node's error is shown on that node (its `NodeError`
string, never a traceback), an unexpected error in the engine is logged, and the graph is untouched.
Runs wait in an explicit queue (`QueuedRun`s, run in queue order), so the window can say how many are
pending and drop any of them. Cancelling the current run (Esc) sets its `CancelToken`; the engine
notices at the next `ctx.progress()` (the next sampler step), the run ends with status "cancelled",
and the next queued run starts. Dropping queued runs is separate: one (`cancel_queued`) or all,
together with the current run (`cancel_all`, Shift+Esc). Each says in words what it did.

A queued run keeps the document as it was when it was queued (its `workflow`), like ComfyUI's queue: edit
the prompt, press Run, edit it again, press Run, and the two runs differ. Seeds whose control is not
"fixed" are the exception: they are taken from the live document when the run starts, because the runs
ahead step them (so Run ×3 makes three seeds). Waiting runs can be reordered (`move_queued`) and the
queue paused (`set_paused`): the running run finishes, the rest wait until it is resumed.

Live nodes (`NodeSpec.live`, e.g. Add Noise) re-run by themselves: with `live` on, a value change on
such a node (re)starts a short debounce timer, and the graph runs again once the value rests, or at
the latest `LIVE_MAX_WAIT_MS` after the first change, so a slider that keeps moving still updates as it
goes. While a run is going, further changes only mark one follow-up run, so scrubbing never queues a
backlog; the engine's cache makes each of those runs re-execute just the changed node and what follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QImage

from app.output_folder import output_folder_problem
from app.preload import wait_for_preloading
from graph_engine import (
    CancelToken,
    Executor,
    Graph,
    GraphEvent,
    InvalidGraph,
    NodeRegistry,
    Problem,
    ResultCache,
    RunResult,
)
from graph_engine.events import (
    Event,
    NodeCached,
    NodeFailed,
    NodeFinished,
    NodePreview,
    NodeProgress,
    NodeStarted,
    RunStarted,
)
from graph_engine.model import EVENT_VALUE_CHANGED
from graph_engine.serialization import graph_from_dict, graph_to_dict
from graph_engine.validation import validate
from graph_engine.value_sources import effective_spec
from ui.images import load_ui_images, qimage_from_array
from ui.mask_previews import mask_preview_images

PUMP_INTERVAL_MS = 50  # ~20 canvas updates a second
PREVIEW_MIN_INTERVAL_S = 0.1  # live previews at most ~10 a second
T = TypeVar("T")
LIVE_DEBOUNCE_MS = 120  # a live node's value must rest this long before the graph re-runs ...
LIVE_MAX_WAIT_MS = 250  # ... or a drag has gone on this long since the first change


class SeedControl(Protocol):
    """`ui.canvas.apply_seed_control(graph, node_id, registry)`: steps a node's seed inputs after a run;
    `fixed_as="increment"` makes "fixed" seeds step too (Run ×N asked to vary them)."""

    def __call__(
        self, graph: Graph, node_id: int, registry: NodeRegistry, /, *, fixed_as: str | None = None
    ) -> Any: ...


class RunView(Protocol):
    """What the controller needs from the canvas (`ui.canvas.GraphView` provides it)."""

    def set_node_state(
        self,
        node_id: int,
        state: str,
        *,
        progress: tuple[int, int] | None = None,
        elapsed: float | None = None,
        message: str | None = None,
    ) -> None: ...

    def set_node_images(self, node_id: int, images: list[QImage]) -> None: ...

    def set_problems(self, problems: list[Problem]) -> None: ...

    def clear_run_state(self) -> None: ...


class EventPump:
    """A thread-safe mailbox from the worker to the Qt thread that coalesces the chatty events.

    Progress and previews only matter as "the newest one per node", so a new one replaces the pending
    one in place; everything else is kept, in order. `take()` empties the box.
    """

    _COALESCED = (NodeProgress, NodePreview)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event | None] = []
        self._slot: dict[tuple[type, int], int] = {}

    def put(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, self._COALESCED):
                key = (type(event), event.node_id)
                index = self._slot.get(key)
                if index is not None:
                    self._events[index] = event
                    return
                self._slot[key] = len(self._events)
            elif isinstance(event, NodeFinished | NodeFailed):
                # Later progress for this node would be stale; earlier pending progress stays before us.
                self._slot.pop((NodeProgress, event.node_id), None)
                self._slot.pop((NodePreview, event.node_id), None)
            self._events.append(event)

    def take(self) -> list[Event]:
        with self._lock:
            events, self._events, self._slot = self._events, [], {}
        return [e for e in events if e is not None]


def executor_from_settings(registry: NodeRegistry, settings: Any | None) -> Executor:
    """The window's Executor, configured the way `sdgraph run` configures its own from `Settings`.

    The device string is passed on as written ("auto" included): deciding what "auto" means needs
    torch, which the UI must not import; the nodes resolve it when they first touch the device.
    """
    if settings is None:
        return Executor(registry)
    output_dir = settings.output_path
    with contextlib.suppress(OSError):  # an unwritable folder is reported by the node that writes there
        output_dir.mkdir(parents=True, exist_ok=True)
    return Executor(
        registry,
        cache=ResultCache(max(0, int(settings.cache_budget_mb)) * 1024**2),
        device=settings.device,
        output_dir=output_dir,
        settings={"precision": settings.precision, "settings": settings},
    )


def snapshot(graph: Graph) -> tuple[Graph, dict[str, Any]]:
    """An independent copy of the graph for the worker, plus its workflow document (for embedding)."""
    workflow = json.loads(json.dumps(graph_to_dict(graph)))
    return graph_from_dict(json.loads(json.dumps(workflow))), workflow


@dataclass(eq=False)
class QueuedRun:
    """One run waiting in the queue; `turn` resolves True when it may start, False when dropped."""

    targets: list[int] | None
    label: str
    batch: object | None  # the Run ×N it belongs to: a failed run there drops the rest of its batch
    turn: asyncio.Future[bool]
    workflow: dict[str, Any]  # the document when it was queued (JSON data; never mutated)
    stepped: tuple[tuple[int, str, str], ...] = ()  # seeds taken from the live document when it starts
    dropped: bool = False
    vary_seeds: bool = False  # after this run, "fixed" seeds step as if set to increment


@dataclass(frozen=True)
class QueueEntry:
    """What a panel may know of a run: its label and the workflow it runs (or will run, seeds aside)."""

    label: str
    workflow: dict[str, Any]
    # (node id, input, seed control) of the seeds that take the live value when the run starts: the
    # workflow's value for them is not what will run.
    stepped: tuple[tuple[int, str, str], ...] = ()


def _runs(count: int) -> str:
    return f"{count} queued run" + ("" if count == 1 else "s")


@dataclass
class CompletedRun:
    """A run that finished: the workflow it ran (as embedded in its images), when, and the images the
    nodes that ran wrote, already loaded (node id, file, picture). Cached nodes' images are left out:
    they belong to the earlier run that made them."""

    workflow: dict[str, Any]
    started: float  # unix time
    finished: float
    images: list[tuple[int, Path, QImage]] = field(default_factory=list)


class RunController(QObject):
    """Runs one document's graph on a worker thread and shows the run on its canvas.

    `await run()` returns the `RunResult` (or None when the graph was invalid, or the run was
    dropped from the queue); `finished` carries the same value for code that prefers signals.
    One controller, and so one Executor with its result cache, per open document: a re-run after a
    small edit only re-executes what changed.
    """

    started = Signal()
    finished = Signal(object)  # RunResult | None
    # No bool payloads: PySide6 6.12 on Python 3.11 drops a reference to True/False on every Python-side
    # emit of a bool, and after a few hundred emits the interpreter aborts (bool_dealloc). Read `running`.
    runningChanged = Signal()
    queueChanged = Signal(int)  # runs waiting behind the current one (also sent on reorder)
    pausedChanged = Signal()  # read `paused` (no bool payloads, see runningChanged)
    problemsFound = Signal(list)  # list[Problem]: the run did not start
    previewChanged = Signal(int, QImage)  # node id, live preview
    imagesReady = Signal(int, list)  # node id, list[tuple[Path, QImage]]: an output node's final images
    logMessage = Signal(str, str, object)  # level ("info" | "warning" | "error"), text, node id or None
    nodeStateChanged = Signal(int, str)  # node id, state: for panels; the canvas is driven directly
    nodeProgress = Signal(int, int, int)  # node id, step, total: a sampler's steps, for the overall progress
    seedsChanged = Signal()  # seed controls edited the live graph (not an undo step, and not an unsaved edit)
    textReady = Signal(int, list)  # node id, the lines of text its run reported (`ui["text"]`)
    # A finished (status "done") run the user started, with the images its output nodes wrote: for
    # the run history. Live re-runs (a slider being scrubbed) are not runs anyone wants to keep.
    runCompleted = Signal(object)  # CompletedRun
    # A batch to a folder (`run_many_as_batch`): jobs finished (now or before, done or failed) of how many.
    batchProgress = Signal(int, int)
    batchFinished = Signal(object)  # BatchReport, or None when the batch could not start

    def __init__(
        self,
        graph: Graph,
        registry: NodeRegistry,
        view: RunView | None = None,
        *,
        executor: Executor | None = None,
        settings: Any | None = None,
        seed_control: SeedControl | None = None,
        before_run: Callable[[], None] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.graph = graph
        self.registry = registry
        self.view = view
        self.executor = executor or executor_from_settings(registry, settings)
        # Runs with the settings' output folder check it first (an explicit executor's folder is the caller's).
        self.check_output_folder = settings is not None
        self._seed_control = seed_control
        self._before_run = before_run
        # Its thread starts by waiting for the model stack the window began importing (app.preload):
        # two threads must not enter diffusers' lazy modules at once.
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sdgraph-run", initializer=wait_for_preloading
        )
        self._lock = asyncio.Lock()
        self._token: CancelToken | None = None
        self._queue: list[QueuedRun] = []  # runs waiting for their turn, in the order they will run
        self._busy = False  # a run has its turn (it may still be validating or waiting for the worker)
        self._paused = False  # queued runs wait; the running one finishes
        self._current: QueueEntry | None = None  # the run going now, as it runs (seeds drawn)
        self.last_workflow: dict[str, Any] | None = None  # what the most recent run ran
        self._running = False
        self._pump: EventPump | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(PUMP_INTERVAL_MS)
        self._timer.timeout.connect(self._drain)
        self._running_since: dict[int, float] = {}
        self._progress: dict[int, tuple[int, int]] = {}
        self._pending_preview: NodePreview | None = None
        self._last_preview = 0.0
        self._new_images: list[tuple[int, Path, QImage]] = []  # written by nodes that ran in this run
        self.last_result: RunResult | None = None
        self._live = False
        self._live_pending = False
        self._live_nodes: set[int] = set()
        self._live_run = False  # the run in progress was started by a live change: no seed controls
        self._vary_seeds = False  # the run in progress steps "fixed" seeds too (Run ×N, vary the seed)
        self._batch: tuple[Any, threading.Event] | None = None  # the batch going: its backend, its stop flag
        self._batch_finished = 0
        self._live_timer = QTimer(self)
        self._live_timer.setSingleShot(True)
        self._live_timer.setInterval(LIVE_DEBOUNCE_MS)
        self._live_timer.timeout.connect(self._live_fire)
        self._live_deadline = QTimer(self)
        self._live_deadline.setSingleShot(True)
        self._live_deadline.setInterval(LIVE_MAX_WAIT_MS)
        self._live_deadline.timeout.connect(self._live_fire)

    # ---- public -----------------------------------------------------------------------------------

    def apply_settings(self, settings: Any) -> None:
        """New preferences for later runs: a fresh executor (device, precision, output folder, cache
        budget) that keeps the cached results, so an unchanged graph does not run again for nothing."""
        fresh = executor_from_settings(self.registry, settings)
        fresh.cache = self.executor.cache
        fresh.cache.budget_bytes = max(0, int(settings.cache_budget_mb)) * 1024**2
        self.executor = fresh
        self.check_output_folder = True

    @property
    def running(self) -> bool:
        return self._running

    @property
    def queued(self) -> int:
        """Runs waiting behind the current one."""
        return len(self._queue)

    @property
    def idle(self) -> bool:
        """No run is going, about to start (it has its turn) or waiting in the queue."""
        return not self._busy and not self._queue

    def check(self) -> list[Problem]:
        """Validate the live graph and show the problems on the canvas (an empty list clears them)."""
        problems = validate(self.graph, self.registry)
        if self.view is not None:
            self.view.set_problems(problems)
        return problems

    def run(self, targets: list[int] | None = None) -> Coroutine[Any, Any, RunResult | None]:
        """Run once (after any run already going). None: invalid graph, or dropped from the queue.

        The document is copied now, when the run is asked for, not when the returned coroutine first
        runs: `ensure_future(run())` twice with an edit between queues two different runs.
        """
        return self._run_queued(targets, snapshot(self.graph)[1])

    async def _run_queued(self, targets: list[int] | None, workflow: dict[str, Any]) -> RunResult | None:
        ticket = self._enqueue(targets, None, "run", workflow)[0]
        return await self._take_turn(ticket)

    def run_many(
        self, count: int, targets: list[int] | None = None, *, vary_seeds: bool = False
    ) -> Coroutine[Any, Any, list[RunResult]]:
        """Run ×N: one after another, applying seed controls between runs; stops at the first failure.

        All N runs join the queue at once, so the window can say how many are pending and the user
        can drop some of them; a run that was cancelled while going does not stop the ones after it.
        `vary_seeds`: "fixed" seeds step too (increment), so N runs make N different images.
        """
        return self._run_many(count, targets, snapshot(self.graph)[1], vary_seeds)

    async def _run_many(
        self, count: int, targets: list[int] | None, workflow: dict[str, Any], vary_seeds: bool = False
    ) -> list[RunResult]:
        results: list[RunResult] = []
        count = max(0, count)
        tickets = self._enqueue(targets, object(), "run", workflow, count, vary_seeds)
        for ticket in tickets:
            result = await self._take_turn(ticket)
            if result is None:
                if ticket.dropped:
                    continue  # this one was taken out of the queue; the rest may still run
                break
            results.append(result)
        return results

    async def run_many_as_batch(
        self,
        count: int,
        output_dir: Path,
        *,
        vary_seeds: bool = False,
        backend: Any = None,
        advance_seeds: bool = True,
    ) -> Any:
        """Run ×N handed to the batch machinery (`app.batch`, as `sdgraph batch`): the N runs become jobs
        with the seeds the queue would give them, files named by job with a manifest in `output_dir`, so
        asking again skips what is done. By default the jobs run on this window's executor and worker
        thread (models loaded, cache warm); `backend` may be another, e.g. a started `RayBackend`. The
        live seeds step N times, as after Run ×N, unless `advance_seeds` is False (Run ▸ Batch to Folder:
        asking again for the same folder then finishes what a cancel left and otherwise runs nothing).
        While it goes, `running` is True, `batchProgress` counts jobs, a failed job is logged by name,
        and `cancel_current`/`cancel_all` (Esc) stop it at the running job's next step, keeping what
        finished. Returns the `BatchReport`; `JobSpecError` when the graph has no seed to vary."""
        from app.batch.jobs import run_many_jobs

        control = self._seed_control
        if control is None:
            raise RuntimeError("a batch of runs needs the seed control to step the seeds")
        fixed_as = "increment" if vary_seeds else None
        jobs = run_many_jobs(
            self.graph, self.registry, count, lambda g, nid: control(g, nid, self.registry, fixed_as=fixed_as)
        )
        workflow = snapshot(self.graph)[1]
        if advance_seeds:
            for _ in range(count):
                for nid in list(self.graph.nodes):
                    control(self.graph, nid, self.registry, fixed_as=fixed_as)
            self.seedsChanged.emit()
        return await self.run_jobs_as_batch(jobs, workflow, output_dir, backend=backend)

    async def run_jobs_as_batch(
        self, jobs: list[Any], workflow: dict[str, Any], output_dir: Path, *, backend: Any = None
    ) -> Any:
        """Batch jobs of `workflow` (e.g. an XY Sweep's cells, `app.batch.jobs.xy_sweep_jobs`) into
        `output_dir`, as `run_many_as_batch` runs its own: on this window's executor and worker thread
        unless `backend` is given, with `batchProgress`, failed jobs logged, Esc stopping it, and the jobs
        the folder's manifest shows as done skipped. Returns the `BatchReport`."""
        from app.batch.dispatch import pending_jobs, run_batch
        from app.batch.local import LocalBackend
        from app.batch.runner import JobRunner

        async with self._lock:
            todo, skipped = pending_jobs(jobs, output_dir)  # for the progress; run_batch skips the same ones
            total = skipped + len(todo)
            runner = (
                None if backend is not None else JobRunner(workflow, registry=self.registry, executor=self.executor)
            )
            chosen = backend or LocalBackend(runner)  # type: ignore[arg-type]
            loop = asyncio.get_running_loop()
            stop = threading.Event()
            self._batch, self._batch_finished = (chosen, stop), skipped
            self._set_running(True)
            self.batchProgress.emit(skipped, total)

            def outcome(o: Any) -> None:  # on the worker thread: hand it to the Qt thread
                loop.call_soon_threadsafe(self._batch_outcome, o, total)

            report = None
            try:
                report = await loop.run_in_executor(
                    self._pool, lambda: run_batch(jobs, chosen, output_dir, stop=stop, on_outcome=outcome)
                )
                return report
            finally:
                self._batch = None
                if runner is not None:
                    runner.close()
                self._set_running(False)
                self.batchFinished.emit(report)

    def _batch_outcome(self, outcome: Any, total: int) -> None:
        """One job of the batch ended (on the Qt thread): count it, and name it in the log if it failed."""
        if outcome.status == "cancelled":
            return
        self._batch_finished += 1
        if outcome.status == "failed":
            node = (outcome.error or {}).get("node")
            self.logMessage.emit("error", outcome.describe_error(), node)
        self.batchProgress.emit(self._batch_finished, total)

    def _cancel_batch(self) -> bool:
        """Stop the batch going, if one is: no new job starts and the running one stops at its next step."""
        if self._batch is None or self._batch[1].is_set():
            return False
        backend, stop = self._batch
        stop.set()
        backend.cancel()
        return True

    def queued_runs(self) -> list[str]:
        """What waits behind the current run, in order (labels such as "run 2 of 3")."""
        return [t.label for t in self._queue]

    def queued_entries(self) -> list[QueueEntry]:
        """The waiting runs with the workflows they were queued with, in the order they will run."""
        return [QueueEntry(t.label, t.workflow, t.stepped) for t in self._queue]

    @property
    def current(self) -> QueueEntry | None:
        """The run going now (None between runs)."""
        return self._current

    @property
    def paused(self) -> bool:
        return self._paused

    def set_paused(self, paused: bool) -> str:
        """Hold the queue (the running run finishes; the rest wait) or let it go on."""
        if paused == self._paused:
            return "The queue is already " + ("paused" if paused else "running")
        self._paused = paused
        self.pausedChanged.emit()
        if paused:
            text = "Paused the queue" + (f"; {_runs(len(self._queue))} wait" if self._queue else "")
        else:
            text = "Resumed the queue" + (f"; {_runs(len(self._queue))} to go" if self._queue else "")
            self._dispatch()
        self.logMessage.emit("info", text, None)
        return text

    def move_queued(self, index: int, new_index: int) -> str:
        """Move a waiting run to another place in the queue (0: next to run)."""
        if not 0 <= index < len(self._queue):
            text = f"There is no queued run #{index + 1}" if self._queue else "No runs are queued"
        else:
            new_index = max(0, min(new_index, len(self._queue) - 1))
            ticket = self._queue.pop(index)
            self._queue.insert(new_index, ticket)
            text = f"Moved queued {ticket.label} to #{new_index + 1}"
            if new_index != index:
                self.queueChanged.emit(len(self._queue))
        self.logMessage.emit("info", text, None)
        return text

    def _enqueue(
        self,
        targets: list[int] | None,
        batch: object | None,
        label: str,
        workflow: dict[str, Any],
        count: int = 1,
        vary_seeds: bool = False,
    ) -> list[QueuedRun]:
        """Queue `count` runs of `workflow` (the document as queued; shared by a batch, never mutated).
        `vary_seeds`: "fixed" seeds step between these runs too, so they are taken live like the others."""
        tickets = []
        stepped = tuple(self._stepped_seeds(graph_from_dict(json.loads(json.dumps(workflow))), vary_seeds))
        for i in range(count):
            name = f"{label} {i + 1} of {count}" if count > 1 else label
            turn = asyncio.get_running_loop().create_future()
            tickets.append(QueuedRun(targets, name, batch, turn, workflow, stepped, vary_seeds=vary_seeds))
        self._queue.extend(tickets)
        self.queueChanged.emit(len(self._queue))
        self._dispatch()
        return tickets

    def _dispatch(self) -> None:
        """Give the next queued run its turn when nothing is going; the queue's order is the run order."""
        if self._busy or self._paused or not self._queue:
            return
        ticket = self._queue.pop(0)
        self._busy = True
        ticket.turn.set_result(True)
        self.queueChanged.emit(len(self._queue))

    def _drop(self, tickets: list[QueuedRun]) -> int:
        """Take these runs out of the queue; their awaiting `run()` returns None."""
        dropped = 0
        for ticket in tickets:
            if ticket in self._queue:
                self._queue.remove(ticket)
                ticket.dropped = True
                if not ticket.turn.done():
                    ticket.turn.set_result(False)
                dropped += 1
        if dropped:
            self.queueChanged.emit(len(self._queue))
        return dropped

    async def _take_turn(self, ticket: QueuedRun) -> RunResult | None:
        try:
            granted = await ticket.turn
        except asyncio.CancelledError:  # the awaiting task went away: never leave the queue stuck on it
            if ticket.turn.done() and not ticket.turn.cancelled() and ticket.turn.result():
                self._busy = False
                self._dispatch()
            else:
                self._drop([ticket])
            raise
        if not granted:
            return None
        result: RunResult | None = None
        try:
            async with self._lock:  # a timeline decode (`call_in_worker`) may hold the worker a moment
                self._vary_seeds = ticket.vary_seeds
                result = await self._run_once(ticket)
        finally:
            if ticket.batch is not None and self._batch_should_stop(result):
                self._drop([t for t in self._queue if t.batch is ticket.batch])
            self._busy = False
            self._dispatch()
        return result

    @staticmethod
    def _batch_should_stop(result: RunResult | None) -> bool:
        """Run ×N stops at an invalid graph or a failed node; a cancelled run lets the rest go on."""
        return result is None or result.status == "failed"

    async def call_in_worker(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the run's worker thread once no run is going (e.g. decoding one timeline step
        with the VAE): one thread for all model work, so it never races a run for the models."""
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    @property
    def live(self) -> bool:
        return self._live

    def set_live(self, enabled: bool) -> None:
        """Re-run automatically (debounced) when a value of a `live` node changes, e.g. a t slider."""
        if enabled == self._live:
            return
        self._live = enabled
        if enabled:
            self.graph.changed.connect(self._on_graph_changed)
        else:
            self.graph.changed.disconnect(self._on_graph_changed)
            self._live_timer.stop()
            self._live_deadline.stop()
            self._live_pending = False

    def _on_graph_changed(self, event: GraphEvent) -> None:
        if event.kind != EVENT_VALUE_CHANGED or not event.ids:
            return
        node = self.graph.nodes.get(event.ids[0])
        spec = None if node is None else self.registry.get(node.type)
        if spec is not None and spec.live:
            self._live_nodes.add(event.ids[0])
            self._live_timer.start()  # (re)start: the run waits until the value rests ...
            if not self._live_deadline.isActive():
                self._live_deadline.start()  # ... but not longer than this while it keeps changing

    def _live_fire(self) -> None:
        self._live_timer.stop()
        self._live_deadline.stop()
        if self._busy or self._queue:
            self._live_pending = True  # one follow-up run after the current one, however many changes
            return
        self._live_pending = False
        targets = self._live_targets()
        self._live_nodes.clear()
        self._live_run = True  # the next run is this one: nothing else is running or waiting
        task = asyncio.ensure_future(self.run(targets))
        task.add_done_callback(self._live_done)

    def _live_targets(self) -> list[int] | None:
        """The output nodes downstream of the changed live nodes: a live run refreshes what depends on
        the slider, and leaves the rest of the graph (another sampler, a SaveImage) alone."""
        reached = {nid for nid in self._live_nodes if nid in self.graph.nodes}
        frontier = list(reached)
        while frontier:
            nid = frontier.pop()
            for link in self.graph.links.values():
                if link.src_node == nid and link.dst_node not in reached:
                    reached.add(link.dst_node)
                    frontier.append(link.dst_node)
        outputs = []
        for nid in sorted(reached):
            spec = self.registry.get(self.graph.nodes[nid].type)
            if spec is not None and spec.output_node:
                outputs.append(nid)
        return outputs or sorted(reached) or None

    def _live_done(self, task: asyncio.Future[RunResult | None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.logMessage.emit("error", f"live run failed: {task.exception()}", None)
        if self._live and self._live_pending:
            self._live_timer.start()

    def cancel_current(self) -> str:
        """Stop the current run at its next step; what is queued behind it still runs (Esc).

        Returns what happened, in words, for the status bar; the same sentence goes to the log.
        """
        if self._cancel_batch():
            text = "Cancelled the batch; the jobs that finished are kept in its folder"
        elif self._token is None or self._token.cancelled:
            text = "No run is going" + (f"; {_runs(len(self._queue))} still pending" if self._queue else "")
        else:
            self._token.cancel()
            pending = f"{_runs(len(self._queue))} still pending" if self._queue else "nothing else queued"
            text = f"Cancelled the running run; {pending}"
        self.logMessage.emit("info", text, None)
        return text

    def cancel_queued(self, index: int = 0) -> str:
        """Drop one waiting run (0: the next one); the current run and the others go on."""
        if not 0 <= index < len(self._queue):
            text = f"There is no queued run #{index + 1}" if self._queue else "No runs are queued"
        else:
            label = self._queue[index].label
            self._drop([self._queue[index]])
            left = f"{_runs(len(self._queue))} still pending" if self._queue else "none left in the queue"
            text = f"Dropped queued {label}; {left}"
        self.logMessage.emit("info", text, None)
        return text

    def cancel_all(self) -> str:
        """Stop the current run and drop every queued one (Shift+Esc)."""
        going, dropped = self._stop_everything()
        if going:
            text = f"Cancelled the run and dropped {_runs(dropped)}"
        elif dropped:
            text = f"Dropped {_runs(dropped)}"
        else:
            text = "No run is going and none are queued"
        self.logMessage.emit("info", text, None)
        return text

    def _stop_everything(self) -> tuple[bool, int]:
        """Drop the queue, then cancel the current run: (whether one was going, how many were dropped)."""
        dropped = self._drop(list(self._queue))
        token = self._token
        going = self._cancel_batch() or (token is not None and not token.cancelled)
        if token is not None:
            token.cancel()
        return going, dropped

    def cancel(self) -> None:
        """Stop everything: the current run at its next step, and every queued one (`cancel_all`)."""
        self.cancel_all()

    def shutdown(self) -> None:
        """The document is closing: stop the run and let the worker thread end on its own.

        The canvas may be deleted right after this, so the controller lets go of it: a run still
        winding down (until its node reaches the next step) finishes without touching any view.
        """
        self._stop_everything()
        self.view = None
        self.set_live(False)
        self._timer.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- one run ----------------------------------------------------------------------------------

    def _prepare(self, queued: dict[str, Any], vary_seeds: bool = False) -> tuple[Graph, dict[str, Any]]:
        """The graph a queued run runs: the document as queued, with seeds that are stepped between runs
        (any control but "fixed", or every one when the batch varies them) taken from the live document,
        where the runs before moved them."""
        copy = graph_from_dict(json.loads(json.dumps(queued)))
        for node_id, input_id, _mode in self._stepped_seeds(copy, vary_seeds):
            live = self.graph.nodes.get(node_id)
            if live is not None and live.type == copy.nodes[node_id].type and input_id in live.values:
                copy.nodes[node_id].values[input_id] = live.values[input_id]
        return copy, json.loads(json.dumps(graph_to_dict(copy)))

    def _stepped_seeds(self, graph: Graph, include_fixed: bool = False) -> list[tuple[int, str, str]]:
        """(node, input, control) of the seeds in `graph` that runs step: a seed control other than
        "fixed" (no control set means ComfyUI's "randomize"), or any with `include_fixed`, on an input
        no wire feeds."""
        if self._seed_control is None:
            return []
        found = []
        for node_id, node in graph.nodes.items():
            spec = self.registry.get(node.type)
            mode = str(node.extra.get("control_after_generate", "randomize"))
            if spec is None or (mode == "fixed" and not include_fixed):
                continue
            linked = graph.inputs_of(node_id)
            found += [(node_id, i.id, mode) for i in spec.inputs if i.control_after_generate and i.id not in linked]
        return found

    async def _run_once(self, ticket: QueuedRun) -> RunResult | None:
        live_run, self._live_run = self._live_run, False
        targets = ticket.targets
        copy, workflow = self._prepare(ticket.workflow, ticket.vary_seeds)
        problems = validate(copy, self.registry, targets)
        if self.view is not None:
            self.view.set_problems(problems)
        if problems:
            for p in problems:
                self.logMessage.emit("error", str(p), p.node_id)
            self.problemsFound.emit(problems)
            self.finished.emit(None)
            return None
        folder_problem = output_folder_problem(self.executor.output_dir) if self.check_output_folder else None
        if folder_problem is not None:  # found now, not after minutes of sampling by Save Image
            self.logMessage.emit("error", f"the run did not start: {folder_problem}", None)
            self.problemsFound.emit([Problem("output_folder", folder_problem)])
            self.finished.emit(None)
            return None
        if self._before_run is not None:
            self._before_run()

        token = CancelToken()
        pump = EventPump()
        self._token, self._pump = token, pump
        self._running_since.clear()
        self._progress.clear()
        self._pending_preview = None
        self._new_images = []
        started_at = time.time()
        if self.view is not None:
            self.view.clear_run_state()
        self._current = QueueEntry(ticket.label, workflow)  # set before runningChanged: panels read it
        self.last_workflow = workflow
        self._set_running(True)
        self.started.emit()
        self._timer.start()
        loop = asyncio.get_running_loop()
        result: RunResult | None = None
        engine_error: str | None = None
        try:
            result, engine_error = await loop.run_in_executor(
                self._pool, self._work, copy, targets, pump, token, workflow
            )
        finally:
            self._timer.stop()
            self._drain()
            self._token = self._pump = None
            self._current = None
            self._set_running(False)
        self._finish(result, engine_error, live_run)
        self.last_result = result
        if result is not None and result.status == "done" and engine_error is None and not live_run:
            self.runCompleted.emit(CompletedRun(workflow, started_at, time.time(), list(self._new_images)))
        self._new_images = []
        self.finished.emit(result)
        return result

    def _work(
        self, graph: Graph, targets: list[int] | None, pump: EventPump, token: CancelToken, workflow: dict[str, Any]
    ) -> tuple[RunResult, str | None]:
        """The worker thread's whole job. Never raises: the awaiting side always gets a RunResult,
        plus a message when the engine itself (not a node) failed."""
        started = time.perf_counter()
        try:
            result = self.executor.run(graph, targets=targets, on_event=pump.put, cancel=token, workflow=workflow)
            return result, None
        except InvalidGraph as exc:  # the graph changed meaning between check and run (a model file vanished)
            message = "the graph cannot run:\n" + str(exc)
        except Exception as exc:  # a bug in the engine: report it, keep the window and the graph
            message = f"the run stopped unexpectedly: {type(exc).__name__}: {exc}"
        return RunResult("failed", {}, {}, [], [], time.perf_counter() - started), message

    def _set_running(self, running: bool) -> None:
        if self._running != running:
            self._running = running
            self.runningChanged.emit()

    # ---- events on the Qt thread ------------------------------------------------------------------

    def _state(self, node_id: int, state: str, **kw: Any) -> None:
        if node_id not in self.graph.nodes:  # deleted during the run
            return
        if self.view is not None:
            self.view.set_node_state(node_id, state, **kw)
        self.nodeStateChanged.emit(node_id, state)
        if kw.get("progress") is not None:
            self.nodeProgress.emit(node_id, *kw["progress"])

    def _drain(self) -> None:
        pump = self._pump
        if pump is not None:
            for event in pump.take():
                self._apply(event)
        now = time.perf_counter()
        if self._pending_preview is not None and now - self._last_preview >= PREVIEW_MIN_INTERVAL_S:
            self._show_preview(self._pending_preview)
        for node_id, since in self._running_since.items():  # the elapsed clock ticks without events too
            self._state(node_id, "running", progress=self._progress.get(node_id), elapsed=now - since)

    def _apply(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            for node_id in event.node_ids:
                self._state(node_id, "queued")
        elif isinstance(event, NodeCached):
            self._state(event.node_id, "cached")
        elif isinstance(event, NodeStarted):
            self._running_since[event.node_id] = time.perf_counter()
            self._state(event.node_id, "running", elapsed=0.0)
        elif isinstance(event, NodeProgress):
            self._progress[event.node_id] = (event.step, event.total)
            since = self._running_since.get(event.node_id, time.perf_counter())
            self._state(
                event.node_id, "running", progress=(event.step, event.total), elapsed=time.perf_counter() - since
            )
        elif isinstance(event, NodePreview):
            self._pending_preview = event
        elif isinstance(event, NodeFinished):
            self._running_since.pop(event.node_id, None)
            progress = self._progress.pop(event.node_id, None)
            self._state(event.node_id, "done", progress=progress, elapsed=event.seconds)
            if event.ui:
                loaded = self._show_images(event.node_id, event.ui)
                self._new_images += [(event.node_id, path, image) for path, image in loaded]
                self._show_text(event.node_id, event.ui)
                self._show_mask(event.node_id, event.ui)
        elif isinstance(event, NodeFailed):
            self._running_since.pop(event.node_id, None)
            self._progress.pop(event.node_id, None)
            if event.message == "cancelled":
                self._state(event.node_id, "", message="cancelled")
            else:
                self._state(event.node_id, "error", message=event.message)
                self.logMessage.emit("error", event.message, event.node_id)

    def _show_preview(self, event: NodePreview) -> None:
        self._pending_preview = None
        self._last_preview = time.perf_counter()
        try:
            image = qimage_from_array(event.image)
        except (ValueError, TypeError) as exc:
            self.logMessage.emit("warning", f"preview could not be shown: {exc}", event.node_id)
            return
        self.previewChanged.emit(event.node_id, image)

    def _show_images(self, node_id: int, ui: dict[str, Any]) -> list[tuple[Path, QImage]]:
        loaded = load_ui_images(ui)
        if not loaded:
            return loaded
        if node_id in self.graph.nodes and self.view is not None:
            self.view.set_node_images(node_id, [img for _, img in loaded])
        self.imagesReady.emit(node_id, loaded)
        return loaded

    def _show_mask(self, node_id: int, ui: dict[str, Any]) -> None:
        """A MASK output's grey pictures in its node and the preview panel (never in the run's images)."""
        images = mask_preview_images(ui)
        if not images:
            return
        if node_id in self.graph.nodes and self.view is not None:
            self.view.set_node_images(node_id, images)
        self.previewChanged.emit(node_id, images[0])

    def _show_text(self, node_id: int, ui: dict[str, Any]) -> None:
        """A node's reported text lines, drawn on the node when the canvas can (GraphView items can)."""
        text = ui.get("text")
        if not isinstance(text, list | tuple):
            return
        lines = [str(line) for line in text]
        if node_id in self.graph.nodes and self.view is not None:
            item_of = getattr(self.view, "node_item", None)
            try:
                item = item_of(node_id) if callable(item_of) else None
            except KeyError:
                item = None
            if item is not None and hasattr(item, "set_ui_text"):
                item.set_ui_text(lines)
        self.textReady.emit(node_id, lines)

    def _finish(self, result: RunResult | None, engine_error: str | None = None, live_run: bool = False) -> None:
        """After the last event: settle leftover states, show cached outputs' images, apply seed controls."""
        self._pending_preview = None
        for node_id in list(self._running_since):
            self._state(node_id, "")
        self._running_since.clear()
        if result is None:
            return
        ran = set(result.executed) | set(result.cached)
        for node_id, ui in result.ui.items():
            if node_id in result.cached:  # NodeCached carries no ui; the result does
                self._show_images(node_id, ui)
                self._show_text(node_id, ui)
                self._show_mask(node_id, ui)
        if self.view is not None and result.status != "done":
            # Nodes still "queued" never ran; clear them so the canvas shows where the run stopped.
            for node_id in self.graph.nodes:
                if node_id not in ran and (result.error is None or node_id != result.error.node_id):
                    self.view.set_node_state(node_id, "")
        if engine_error is not None:
            self.logMessage.emit("error", engine_error, None)
        elif result.status == "done":
            self.logMessage.emit(
                "info",
                f"done in {result.seconds:.2f} s ({len(result.executed)} ran, {len(result.cached)} cached)",
                None,
            )
            if not live_run:  # scrubbing a slider must not step every seed in the graph
                self._apply_seed_controls()
        elif result.status == "cancelled":
            self.logMessage.emit("info", f"cancelled after {result.seconds:.2f} s", None)

    def _apply_seed_controls(self) -> None:
        """fixed / increment / decrement / randomize, applied to the live graph after a finished run."""
        if self._seed_control is None:
            return
        changed = False
        fixed_as = "increment" if self._vary_seeds else None
        for node_id, node in list(self.graph.nodes.items()):
            spec = effective_spec(self.graph, self.registry, node)  # a Primitive feeding a seed steps too
            if spec is not None and any(i.control_after_generate for i in spec.inputs):
                changed |= bool(self._seed_control(self.graph, node_id, self.registry, fixed_as=fixed_as))
        if changed:
            self.seedsChanged.emit()


def default_seed_control() -> SeedControl | None:
    """The canvas's `apply_seed_control`, or None while the canvas does not provide it."""
    try:
        from ui.canvas import apply_seed_control
    except ImportError:
        return None
    return apply_seed_control


__all__ = [
    "CompletedRun",
    "EventPump",
    "QueueEntry",
    "RunController",
    "RunView",
    "SeedControl",
    "default_seed_control",
    "executor_from_settings",
    "snapshot",
]
