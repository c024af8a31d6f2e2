"""Step previews never hold up the node that makes them (graph_engine.previews)."""

from __future__ import annotations

import threading

from graph_engine import ExecutionContext, Executor, Graph, Int, NodeOutput, NodeRegistry, node
from graph_engine.events import Event, NodeFinished, NodePreview, NodeProgress
from graph_engine.previews import PreviewWorker

steps_done: list[int] = []


@node("Stepper", category="test", inputs=[Int("steps", 5, min=1, max=100)], output_node=True)
def stepper(ctx: ExecutionContext, steps: int) -> NodeOutput:
    """A sampler's shape: one preview (a render function, as KSampler passes) and one progress per step."""
    for i in range(steps):
        ctx.preview(lambda i=i: ("frame", i + 1))
        steps_done.append(i + 1)
        ctx.progress(i + 1, steps)
    return NodeOutput((), {"text": [str(steps)]})


def test_worker_keeps_only_the_newest_frame_and_never_blocks_the_submitter() -> None:
    gate = threading.Event()
    started = threading.Event()
    shown: list[int] = []

    def slow_consumer(frame: int) -> None:
        started.set()
        assert gate.wait(10)
        shown.append(frame)

    worker = PreviewWorker(slow_consumer)
    worker.submit(0)
    assert started.wait(10)  # frame 0 is being delivered, and blocks
    for i in range(1, 50):  # would deadlock here if submit waited for the consumer
        worker.submit(i)
    assert worker.dropped == 48  # frames 1..48 were replaced before anyone rendered them
    gate.set()
    worker.close()
    assert shown == [0, 49]


def test_render_functions_run_on_the_worker_thread() -> None:
    threads: list[str] = []
    worker = PreviewWorker(lambda frame: threads.append(frame))
    worker.submit(lambda: threading.current_thread().name)
    worker.close()
    assert threads and threads[0] != threading.current_thread().name


def test_a_failing_consumer_does_not_stop_later_frames() -> None:
    shown: list[int] = []

    def consumer(frame: int) -> None:
        if frame == 1:
            raise RuntimeError("broken preview")
        shown.append(frame)

    worker = PreviewWorker(consumer)
    worker.submit(1)
    worker.close()
    worker2 = PreviewWorker(consumer)
    worker2.submit(2)
    worker2.close()
    assert shown == [2]


def test_close_without_delivering_drops_the_pending_frame() -> None:
    gate = threading.Event()
    started = threading.Event()
    shown: list[int] = []

    def consumer(frame: int) -> None:
        started.set()
        gate.wait(10)
        shown.append(frame)

    worker = PreviewWorker(consumer)
    worker.submit(1)
    assert started.wait(10)
    worker.submit(2)
    gate.set()
    worker.close(deliver_pending=False)
    assert shown == [1]
    worker.submit(3)  # a closed worker ignores frames
    assert shown == [1]


def test_a_blocked_preview_consumer_does_not_slow_the_node_and_the_last_preview_is_the_last_step() -> None:
    """The consumer blocks on an Event from the first preview on; the node still finishes every step
    while it is blocked, and once released the last preview delivered is the last step's, before the
    node's Finished event."""
    steps_done.clear()
    steps = 20
    gate = threading.Event()
    all_steps_done = threading.Event()
    events: list[Event] = []

    def on_event(event: Event) -> None:
        if isinstance(event, NodePreview):
            assert gate.wait(30), "the node never finished its steps while the preview was blocked"
        elif isinstance(event, NodeProgress) and event.step == event.total:
            all_steps_done.set()
        events.append(event)

    g = Graph()
    nid = g.add_node("Stepper", {"steps": steps}).id
    executor = Executor(NodeRegistry([stepper]))
    runner = threading.Thread(target=lambda: executor.run(g, on_event=on_event))
    runner.start()
    assert all_steps_done.wait(30), "sampling waited for the blocked preview consumer"
    assert steps_done == list(range(1, steps + 1))
    assert not any(isinstance(e, NodeFinished) for e in events)  # the node waits for its last preview
    gate.set()
    runner.join(30)
    assert not runner.is_alive()
    previews = [e for e in events if isinstance(e, NodePreview)]
    assert previews[-1] == NodePreview(nid, ("frame", steps))
    assert len(previews) < steps  # stale frames were dropped, not queued
    finished = next(i for i, e in enumerate(events) if isinstance(e, NodeFinished))
    assert all(i < finished for i, e in enumerate(events) if isinstance(e, NodePreview))
