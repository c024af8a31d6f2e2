"""Run ×N handed to the batch machinery from the editor's run controller: the seeds the queue would
use, files named by job with a manifest, the window's warm executor, and a second ask skipping what is
done (the same `app.batch` code as `sdgraph batch`)."""

from __future__ import annotations

import asyncio
from typing import Any

from gui_toy_nodes import RAN, toy_registry

from app.batch.manifest import Manifest
from graph_engine import Executor, Graph
from ui.canvas.seed import apply_seed_control
from ui.run_controller import RunController


def controller_for(tmp_path: Any, mode: str) -> tuple[Graph, int, RunController]:
    graph = Graph()
    seed = graph.add_node("Seeded", {"seed": 5}, extra={"control_after_generate": mode})
    save = graph.add_node("SavePNG", {"prefix": "s"})
    graph.add_link(seed.id, "INT", save.id, "x", "INT")
    registry = toy_registry()
    executor = Executor(registry, output_dir=tmp_path / "window-out")
    return graph, seed.id, RunController(graph, registry, None, executor=executor, seed_control=apply_seed_control)


def test_run_many_as_batch_uses_the_queues_seeds_and_skips_what_is_done(
    qloop: asyncio.AbstractEventLoop, tmp_path: Any
) -> None:
    RAN.clear()
    graph, seed_id, controller = controller_for(tmp_path, "increment")
    out = tmp_path / "batch"
    edited: list[bool] = []
    controller.seedsChanged.connect(lambda: edited.append(True))

    report = qloop.run_until_complete(controller.run_many_as_batch(3, out))

    assert len(report.done) == 3 and not report.failed
    assert [n for name, n in RAN if name == "Seeded"] == [seed_id] * 3
    records = Manifest(out).records()
    assert [r["overrides"] for r in records] == [[[seed_id, "seed", v]] for v in (5, 6, 7)]
    assert sorted(p.name for p in out.glob("*.png")) == sorted(r["files"][0]["name"] for r in records)
    assert all(r["job"].startswith(f"seed={v}-") for r, v in zip(records, (5, 6, 7), strict=True))
    assert graph.nodes[seed_id].values["seed"] == 8 and edited == [True]  # the live seed moved on, as Run ×N
    assert controller.executor.output_dir == tmp_path / "window-out"  # the window's folder is left as it was
    assert not (tmp_path / "window-out").exists()

    graph.set_value(seed_id, "seed", 6)  # asking again for seeds 6, 7, 8: two are done already
    RAN.clear()
    again = qloop.run_until_complete(controller.run_many_as_batch(3, out))
    assert again.skipped == 2 and len(again.done) == 1 and [n for name, n in RAN if name == "Seeded"] == [seed_id]


def test_fixed_seeds_make_one_job_unless_asked_to_vary(qloop: asyncio.AbstractEventLoop, tmp_path: Any) -> None:
    graph, seed_id, controller = controller_for(tmp_path, "fixed")
    one = qloop.run_until_complete(controller.run_many_as_batch(4, tmp_path / "fixed"))
    assert one.total == 1 and len(one.done) == 1 and graph.nodes[seed_id].values["seed"] == 5
    varied = qloop.run_until_complete(controller.run_many_as_batch(4, tmp_path / "varied", vary_seeds=True))
    assert len(varied.done) == 4 and graph.nodes[seed_id].values["seed"] == 9
