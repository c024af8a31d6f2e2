"""Live re-runs with toy nodes: debounced, limited to what depends on the live node, seeds untouched."""

from __future__ import annotations

import asyncio
import time

from graph_engine import Executor, Graph, NodeRegistry, Output, node
from graph_engine.node_spec import Int, Socket
from ui.canvas import apply_seed_control
from ui.run_controller import LIVE_DEBOUNCE_MS, RunController

RAN: list[str] = []


def _knob(ctx: object, value: int) -> tuple[int]:
    RAN.append("Knob")
    return (value,)


def _show(ctx: object, value: object) -> tuple[()]:
    RAN.append("Show")
    return ()


def _seeded(ctx: object, seed: int) -> tuple[()]:
    RAN.append("Seeded")
    return ()


def registry() -> NodeRegistry:
    return NodeRegistry(
        [
            node(
                "Knob", inputs=[Int("value", 0, min=0, max=100, display="slider")], outputs=[Output("INT")], live=True
            )(_knob),
            node("Show", inputs=[Socket("value", "INT")], output_node=True)(_show),
            node("Seeded", inputs=[Int("seed", 5, min=0, max=10**6, control_after_generate=True)], output_node=True)(
                _seeded
            ),
        ]
    )


def test_live_changes_rerun_only_their_outputs_once_and_keep_seeds(qloop, tmp_path):
    RAN.clear()
    reg = registry()
    g = Graph()
    knob = g.add_node("Knob", {"value": 1}).id
    show = g.add_node("Show").id
    g.add_link(knob, "INT", show, "value", "INT")
    seeded = g.add_node("Seeded", {"seed": 5}).id
    controller = RunController(g, reg, executor=Executor(reg, output_dir=tmp_path), seed_control=apply_seed_control)
    results = []
    controller.finished.connect(results.append)
    controller.set_live(True)

    async def scrub() -> None:
        for v in (2, 3, 4):  # faster than the debounce: one run for all three
            g.set_value(knob, "value", v)
            await asyncio.sleep(0.02)
        deadline = time.perf_counter() + 5
        while not results and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(LIVE_DEBOUNCE_MS / 1000 * 2)

    qloop.run_until_complete(scrub())
    controller.set_live(False)
    controller.shutdown()
    assert len(results) == 1
    assert RAN == ["Knob", "Show"]  # the unrelated output node did not run
    assert g.nodes[seeded].values["seed"] == 5  # and no seed control stepped it
    g.set_value(knob, "value", 9)  # live is off now: nothing happens
    assert len(results) == 1
