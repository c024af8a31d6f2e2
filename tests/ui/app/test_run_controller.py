"""The run controller against a recording stand-in for the canvas: what each node is shown as, in
what order, and that the window's event loop never stalls while the worker runs."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from gui_toy_nodes import RAN, chain, toy_registry
from PySide6.QtCore import QTimer
from PySide6.QtGui import QImage

from graph_engine import Executor, Graph
from graph_engine.events import NodeFinished, NodePreview, NodeProgress, NodeStarted
from graph_engine.serialization import graph_to_dict
from ui.run_controller import EventPump, RunController


class RecordingView:
    """Implements the four canvas methods the controller calls, and remembers every call."""

    def __init__(self) -> None:
        self.states: list[tuple[int, str, dict[str, Any]]] = []
        self.images: dict[int, list[QImage]] = {}
        self.problems: list[list[Any]] = []
        self.clears = 0

    def set_node_state(self, node_id: int, state: str, **kw: Any) -> None:
        self.states.append((node_id, state, kw))

    def set_node_images(self, node_id: int, images: list[QImage]) -> None:
        self.images[node_id] = images

    def set_problems(self, problems: list[Any]) -> None:
        self.problems.append(list(problems))

    def clear_run_state(self) -> None:
        self.clears += 1

    def states_of(self, node_id: int) -> list[str]:
        out: list[str] = []
        for nid, state, _ in self.states:
            if nid == node_id and (not out or out[-1] != state):
                out.append(state)
        return out


@pytest.fixture(autouse=True)
def _clear_ran() -> None:
    RAN.clear()


def make(tmp_path: Any, **chain_kw: Any) -> tuple[Graph, dict[str, int], RecordingView, RunController]:
    graph = Graph()
    ids = chain(graph, **chain_kw)
    view = RecordingView()
    registry = toy_registry()
    controller = RunController(graph, registry, view, executor=Executor(registry, output_dir=tmp_path / "out"))
    return graph, ids, view, controller


def test_event_pump_keeps_newest_progress_and_order() -> None:
    pump = EventPump()
    pump.put(NodeStarted(1))
    for i in range(1, 50):
        pump.put(NodeProgress(1, i, 50))
        pump.put(NodePreview(1, i))
    pump.put(NodeFinished(1, 0.5))
    pump.put(NodeProgress(2, 1, 3))
    events = pump.take()
    assert events == [
        NodeStarted(1),
        NodeProgress(1, 49, 50),
        NodePreview(1, 49),
        NodeFinished(1, 0.5),
        NodeProgress(2, 1, 3),
    ]
    assert pump.take() == []


def test_run_shows_each_state_then_images(qloop: asyncio.AbstractEventLoop, tmp_path: Any) -> None:
    _graph, ids, view, controller = make(tmp_path, slow_steps=6, delay=0.03)
    previews: list[int] = []
    controller.previewChanged.connect(lambda nid, img: previews.append(nid))

    result = qloop.run_until_complete(controller.run())

    assert result is not None and result.status == "done"
    assert view.states_of(ids["slow"]) == ["queued", "running", "done"]
    assert view.states_of(ids["save"]) == ["queued", "running", "done"]
    progress = [kw.get("progress") for nid, st, kw in view.states if nid == ids["slow"] and kw.get("progress")]
    assert progress[-1] == (6, 6)
    assert [p[0] for p in progress] == sorted(p[0] for p in progress)
    done_kw = next(kw for nid, st, kw in view.states if nid == ids["slow"] and st == "done")
    assert done_kw["elapsed"] >= 6 * 0.03
    (image,) = view.images[ids["save"]]
    assert (image.width(), image.height()) == (32, 24)
    assert previews and set(previews) == {ids["slow"]}
    assert view.problems == [[]]  # validated (and cleared) before running

    # A second run reuses the executor's cache: nothing runs, yet the output node still shows its image.
    view.images.clear()
    RAN.clear()
    again = qloop.run_until_complete(controller.run())
    assert again is not None and again.status == "done" and RAN == []
    assert view.states_of(ids["slow"])[-1] == "cached"
    assert ids["save"] in view.images


def test_event_loop_keeps_ticking_and_edits_do_not_reach_the_run(
    qloop: asyncio.AbstractEventLoop, tmp_path: Any
) -> None:
    graph, ids, _view, controller = make(tmp_path, slow_steps=20, delay=0.05)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))

    async def run_and_edit() -> Any:
        task = asyncio.ensure_future(controller.run())
        await asyncio.sleep(0.2)
        graph.set_value(ids["const"], "value", 100)  # the user keeps editing during the run
        return await task

    timer.start()
    result = qloop.run_until_complete(run_and_edit())
    timer.stop()

    assert result is not None and result.status == "done" and result.seconds >= 1.0
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) > 40
    assert max(gaps) < 0.1, f"the event loop stalled for {max(gaps) * 1000:.0f} ms"
    # The run used the graph as it was when Run was pressed (value 3 → Slow adds 1 → 4).
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"t_{ids['save']}_4.png"]
    assert graph.nodes[ids["const"]].values["value"] == 100


def test_cancel_stops_at_the_next_step(qloop: asyncio.AbstractEventLoop, tmp_path: Any) -> None:
    _graph, ids, view, controller = make(tmp_path, slow_steps=200, delay=0.02)

    async def run_then_cancel() -> Any:
        task = asyncio.ensure_future(controller.run())
        while not any(nid == ids["slow"] and kw.get("progress") for nid, _, kw in view.states):
            await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        controller.cancel()
        result = await task
        return result, time.perf_counter() - t0

    result, stop_delay = qloop.run_until_complete(run_then_cancel())

    assert result is not None and result.status == "cancelled"
    assert stop_delay < 0.5
    assert ("SavePNG", ids["save"]) not in RAN
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert view.states_of(ids["slow"])[-1] == ""
    assert view.states_of(ids["save"])[-1] == ""  # was queued, never ran
    assert not controller.running


def test_cancel_drops_queued_runs(qloop: asyncio.AbstractEventLoop, tmp_path: Any) -> None:
    _graph, ids, _view, controller = make(tmp_path, slow_steps=100, delay=0.02)

    async def many_then_cancel() -> Any:
        task = asyncio.ensure_future(controller.run_many(3))
        await asyncio.sleep(0.2)
        controller.cancel()
        return await task

    results = qloop.run_until_complete(many_then_cancel())
    assert [r.status for r in results] == ["cancelled"]
    assert RAN.count(("Slow", ids["slow"])) == 1


def test_failing_node_is_marked_with_its_message(qloop: asyncio.AbstractEventLoop, tmp_path: Any) -> None:
    graph, ids, view, controller = make(tmp_path, slow_steps=2, delay=0.01, fail=True)
    before = graph_to_dict(graph)
    log: list[tuple[str, str, Any]] = []
    controller.logMessage.connect(lambda level, text, nid: log.append((level, text, nid)))

    result = qloop.run_until_complete(controller.run())

    assert result is not None and result.status == "failed"
    assert result.error is not None and result.error.node_id == ids["fail"]
    errors = [kw for nid, st, kw in view.states if nid == ids["fail"] and st == "error"]
    assert errors and "the value is not acceptable" in errors[-1]["message"]
    assert "Traceback" not in errors[-1]["message"]
    assert ("error", str(result.error), ids["fail"]) in log
    assert view.states_of(ids["save"])[-1] == ""
    assert graph_to_dict(graph) == before
    graph.add_node("Const", {"value": 9})  # still an ordinary, editable graph
    assert len(graph.nodes) == 5


def test_invalid_graph_does_not_start(qloop: asyncio.AbstractEventLoop, tmp_path: Any) -> None:
    graph = Graph()
    save = graph.add_node("SavePNG", {}, pos=(0, 0))
    view = RecordingView()
    registry = toy_registry()
    controller = RunController(graph, registry, view, executor=Executor(registry, output_dir=tmp_path))
    found: list[list[Any]] = []
    controller.problemsFound.connect(found.append)

    result = qloop.run_until_complete(controller.run())

    assert result is None
    assert RAN == []
    assert view.problems and view.problems[-1][0].node_id == save.id
    assert view.problems[-1][0].input == "x"
    assert found == view.problems[-1:]
    assert view.states == []


def test_run_many_steps_the_seed_between_runs(qloop: asyncio.AbstractEventLoop, tmp_path: Any) -> None:
    from ui.canvas.seed import apply_seed_control

    graph = Graph()
    seed = graph.add_node("Seeded", {"seed": 5}, extra={"control_after_generate": "increment"})
    save = graph.add_node("SavePNG", {"prefix": "s"})
    graph.add_link(seed.id, "INT", save.id, "x", "INT")
    registry = toy_registry()
    controller = RunController(
        graph,
        registry,
        RecordingView(),
        executor=Executor(registry, output_dir=tmp_path / "out"),
        seed_control=apply_seed_control,
    )
    edited: list[bool] = []
    controller.seedsChanged.connect(lambda: edited.append(True))

    results = qloop.run_until_complete(controller.run_many(3))

    assert [r.status for r in results] == ["done"] * 3
    assert [n for name, n in RAN if name == "Seeded"] == [seed.id] * 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"s_{save.id}_{v}.png" for v in (5, 6, 7)]
    assert graph.nodes[seed.id].values["seed"] == 8
    assert len(edited) == 3


def test_cancel_queued_drops_one_chosen_run_and_cancel_current_keeps_the_queue(
    qloop: asyncio.AbstractEventLoop, tmp_path: Any
) -> None:
    _graph, ids, view, controller = make(tmp_path, slow_steps=30, delay=0.01)
    log: list[str] = []
    controller.logMessage.connect(lambda _level, text, _nid: log.append(text))

    async def queue_four() -> Any:
        first = asyncio.ensure_future(controller.run())
        rest = asyncio.ensure_future(controller.run_many(3))
        while not any(nid == ids["slow"] and kw.get("progress") for nid, _, kw in view.states):
            await asyncio.sleep(0.01)
        assert controller.queued_runs() == ["run 1 of 3", "run 2 of 3", "run 3 of 3"]
        dropped = controller.cancel_queued(1)
        assert controller.queued_runs() == ["run 1 of 3", "run 3 of 3"]
        missing = controller.cancel_queued(5)
        current = controller.cancel_current()
        return dropped, missing, current, await first, await rest

    dropped, missing, current, first, rest = qloop.run_until_complete(queue_four())

    assert dropped == "Dropped queued run 2 of 3; 2 queued runs still pending"
    assert missing == "There is no queued run #6"
    assert current == "Cancelled the running run; 2 queued runs still pending"
    assert [t for t in log if t in (dropped, missing, current)] == [dropped, missing, current]
    assert first is not None and first.status == "cancelled"
    assert [r.status for r in rest] == ["done", "done"]
    assert controller.queued == 0 and not controller.running


def test_the_first_run_waits_for_the_model_stack_preload(
    qloop: asyncio.AbstractEventLoop, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window imports diffusers and transformers on a preload thread (app.preload) so the first
    run does not; their lazy modules must not be entered from two threads at once, so a run pressed
    while those imports are still going waits for them on its worker, never on the Qt thread."""
    import threading

    from app import preload

    monkeypatch.delenv(preload.NO_PRELOAD_ENV, raising=False)
    monkeypatch.setattr(preload, "_preloading", None)
    release = threading.Event()
    imported: list[str] = []

    def slow_imports() -> None:
        release.wait(10)
        imported.append("model stack")

    preload.start_preloading(slow_imports)
    _graph, ids, _view, controller = make(tmp_path)
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    QTimer.singleShot(300, release.set)

    async def run_while_importing() -> tuple[list[str], Any]:
        seen_by_worker = await controller.call_in_worker(lambda: list(imported))
        return seen_by_worker, await controller.run()

    started = time.perf_counter()
    seen_by_worker, result = qloop.run_until_complete(run_while_importing())
    timer.stop()

    assert seen_by_worker == ["model stack"]  # the worker's first task ran after the imports
    assert result is not None and result.status == "done"
    assert RAN[-1] == ("SavePNG", ids["save"])
    assert time.perf_counter() - started >= 0.3
    waiting = [t for t in ticks if t < started + 0.3]
    assert len(waiting) >= 10, "the Qt thread stopped while the worker waited for the imports"
