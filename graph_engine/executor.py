"""Running a plan: each node once, in order, reusing cached results, reporting as it goes.

Per node the executor computes the input signature (see `cache.py`); a hit reuses the stored outputs
and the node does not run. A miss runs `execute(ctx, **inputs)` and stores the result immediately,
so when a later node fails, everything before it is kept and the next run resumes at the failure.
Intermediate results are dropped from the run's working set after their last consumer has read them;
whether they survive to the next run is the cache's decision (budget 0: they do not).
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from graph_engine.cache import ResultCache, signature
from graph_engine.context import Cancelled, CancelToken, ExecutionContext, InputError
from graph_engine.events import (
    Event,
    NodeCached,
    NodeFailed,
    NodeFinished,
    NodePreview,
    NodeProgress,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from graph_engine.model import Graph
from graph_engine.node_spec import NodeOutput, NodeRegistry
from graph_engine.plan import Plan, PlannedNode, Ref, make_plan
from graph_engine.previews import PreviewWorker
from graph_engine.validation import Constant


@dataclass(frozen=True)
class NodeError:
    """A node's failure, described for the person running the graph."""

    node_id: int
    title: str
    type: str
    message: str
    input: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    traceback: str = ""

    def __str__(self) -> str:
        where = f"node {self.node_id} ({self.title})"
        if self.input:
            where += f", input '{self.input}'"
        return f"{where}: {self.message}"


@dataclass
class RunResult:
    status: str  # "done" | "failed" | "cancelled"
    outputs: dict[int, tuple[Any, ...]]
    ui: dict[int, dict[str, Any]]
    executed: list[int]
    cached: list[int]
    seconds: float
    error: NodeError | None = None
    records: dict[int, dict[str, Any]] = field(default_factory=dict)


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__}{tuple(shape)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Executor:
    """Runs graphs for one workflow; keeps that workflow's result cache between runs."""

    def __init__(
        self,
        registry: NodeRegistry,
        *,
        cache: ResultCache | None = None,
        device: str = "cpu",
        output_dir: Path | str = "output",
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.registry = registry
        self.cache = cache if cache is not None else ResultCache()
        self.device = device
        self.output_dir = Path(output_dir)
        self.settings = dict(settings or {})
        # Device and plain-valued settings (precision, compile, ...) shape what nodes produce, so they
        # are part of every cache key: switching precision re-runs the graph instead of reusing old results.
        self._salt = repr(
            (device, sorted((k, v) for k, v in self.settings.items() if isinstance(v, str | int | float | bool)))
        )

    def run(
        self,
        graph: Graph,
        *,
        targets: list[int] | None = None,
        on_event: Callable[[Event], None] | None = None,
        cancel: CancelToken | None = None,
        workflow: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Validate, plan and execute. Raises `InvalidGraph` (before anything runs) if the graph has problems."""
        plan = make_plan(graph, self.registry, targets)
        return self.execute(plan, on_event=on_event, cancel=cancel, workflow=workflow)

    def signatures(self, plan: Plan, nonce: str = "") -> dict[int, bytes]:
        """Every planned node's cache key; nondeterministic nodes mix in `nonce` so they never hit."""
        sigs: dict[int, bytes] = {}
        for p in plan.order:
            consts = []
            upstream = []
            for input_id, src in sorted(p.inputs.items()):
                if isinstance(src, Ref):
                    upstream.append((input_id, sigs[src.node_id], src.output_id))
                else:
                    consts.append((input_id, src.value))
            fp: object = None
            if p.spec.fingerprint is not None:
                try:
                    fp = p.spec.fingerprint({k: c.value for k, c in consts_map(p).items()})
                except Exception:  # a fingerprint that cannot be read means "assume it changed"
                    fp = uuid.uuid4().hex
            salt = nonce if p.spec.nondeterministic else ""
            sigs[p.id] = signature((p.spec.type, p.spec.version, consts, fp, upstream, salt, self._salt))
        return sigs

    def execute(
        self,
        plan: Plan,
        *,
        on_event: Callable[[Event], None] | None = None,
        cancel: CancelToken | None = None,
        workflow: Mapping[str, Any] | None = None,
    ) -> RunResult:
        emit = on_event or (lambda _e: None)
        token = cancel or CancelToken()
        started = time.perf_counter()
        sigs = self.signatures(plan, nonce=uuid.uuid4().hex)
        results: dict[int, tuple[Any, ...]] = {}
        remaining = dict(plan.consumers)
        targets = set(plan.targets)
        result = RunResult("done", {}, {}, [], [], 0.0)
        emit(RunStarted(tuple(plan.node_ids)))

        for p in plan.order:
            entry = self.cache.get(sigs[p.id])
            if entry is not None:
                results[p.id] = entry.outputs
                if entry.ui:
                    result.ui[p.id] = entry.ui
                result.cached.append(p.id)
                emit(NodeCached(p.id))
            else:
                if token.cancelled:
                    result.status = "cancelled"
                    break
                kwargs = {
                    input_id: results[src.node_id][src.index] if isinstance(src, Ref) else src.value
                    for input_id, src in p.inputs.items()
                }
                # Previews are rendered and emitted on their own thread, newest only (graph_engine.previews).
                previews = PreviewWorker(partial(_preview, emit, p.id), name=f"preview-{p.id}")
                ctx = ExecutionContext(
                    node_id=p.id,
                    title=p.title,
                    device=self.device,
                    output_dir=self.output_dir,
                    workflow=workflow,
                    settings=self.settings,
                    cancel_token=token,
                    on_progress=partial(_progress, emit, p.id),
                    on_preview=previews,
                )
                emit(NodeStarted(p.id))
                t0 = time.perf_counter()
                try:
                    outputs, ui = self._call(p, ctx, kwargs)
                except Cancelled:
                    previews.close(deliver_pending=False)
                    result.status = "cancelled"
                    emit(NodeFailed(p.id, "cancelled"))
                    break
                except Exception as exc:  # a node's failure is reported, never propagated
                    previews.close(deliver_pending=False)
                    result.status = "failed"
                    result.error = self._error(p, kwargs, exc)
                    emit(NodeFailed(p.id, str(result.error)))
                    break
                previews.close()  # the last step's preview arrives before the node's Finished event
                results[p.id] = outputs
                self.cache.put(sigs[p.id], outputs, ui)
                if ui:
                    result.ui[p.id] = ui
                if ctx.records:
                    result.records[p.id] = ctx.records
                result.executed.append(p.id)
                emit(NodeFinished(p.id, time.perf_counter() - t0, ui))
            # Drop what no later node reads, so memory follows the graph's width, not its length.
            for src in p.inputs.values():
                if isinstance(src, Ref):
                    remaining[src.node_id] -= 1
                    if remaining[src.node_id] == 0 and src.node_id not in targets:
                        results.pop(src.node_id, None)

        result.outputs = {nid: results[nid] for nid in plan.targets if nid in results}
        result.seconds = time.perf_counter() - started
        emit(RunFinished(result.status, result.seconds))
        return result

    @staticmethod
    def _call(p: PlannedNode, ctx: ExecutionContext, kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        ctx.check_cancelled()
        out = p.spec.execute(ctx, **kwargs)
        ui: dict[str, Any] = {}
        if isinstance(out, NodeOutput):
            ui = out.ui
            out = out.values
        if out is None:
            out = ()
        elif not isinstance(out, tuple):
            out = (out,) if len(p.spec.outputs) == 1 else tuple(out)
        if len(out) != len(p.spec.outputs):
            raise RuntimeError(
                f"{p.spec.type} returned {len(out)} values for {len(p.spec.outputs)} outputs (a bug in the node)"
            )
        return out, ui

    @staticmethod
    def _error(p: PlannedNode, kwargs: dict[str, Any], exc: Exception) -> NodeError:
        if isinstance(exc, InputError):
            message, input_id = exc.message, exc.input_id
        else:
            message, input_id = (str(exc) or type(exc).__name__), None
            if not getattr(exc, "user_facing", False):
                message = f"{type(exc).__name__}: {message}"
        return NodeError(
            node_id=p.id,
            title=p.title,
            type=p.spec.type,
            message=message,
            input=input_id,
            inputs={k: _describe(v) for k, v in kwargs.items()},
            traceback="".join(traceback.format_exception(exc)),
        )


def _progress(emit: Callable[[Event], None], node_id: int, step: int, total: int) -> None:
    emit(NodeProgress(node_id, step, total))


def _preview(emit: Callable[[Event], None], node_id: int, image: Any) -> None:
    emit(NodePreview(node_id, image))


def consts_map(p: PlannedNode) -> dict[str, Constant]:
    return {k: v for k, v in p.inputs.items() if isinstance(v, Constant)}
