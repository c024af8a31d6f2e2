"""An XY Sweep node's cells as batch jobs (`xy_sweep_jobs`, `sdgraph batch --xy-sweep`): on the tiny SD
checkpoint, each cell's file holds exactly the pixels of that cell in the node's own grid, the files are
named by the cell's values, a re-run does nothing, and the command line gives the same files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.batch.dispatch import run_batch
from app.batch.jobs import JobSpecError, xy_sweep_jobs
from app.batch.local import LocalBackend
from app.batch.manifest import Manifest
from app.batch.runner import JobRunner
from graph_engine import Executor
from graph_engine.serialization import graph_to_dict, save
from nodes import builtin_registry
from nodes.diffusion.grid import GridLayout
from tests.nodes.lab.lab_graphs import sd_base, wire_sampler

SWEEP = {
    "seed": 0,
    "steps": 1,
    "cfg": 7.0,
    "sampler_name": "euler",
    "scheduler": "normal",
    "denoise": 1.0,
    "x_input": "cfg",
    "x_values": "1, 7.5",
    "y_input": "seed",
    "y_values": "1, 2",
}


def sweep_graph():  # type: ignore[no-untyped-def]
    """Checkpoint, prompts, latent → XY Sweep (2×2) → SaveImage of the grid."""
    b = sd_base()
    sw = b.g.add_node("XYSweep", dict(SWEEP), title="Sweep").id
    wire_sampler(b, sw)
    b.g.add_link(b.ckpt, "VAE", sw, "vae", "VAE")
    grid_save = b.g.add_node("SaveImage", {"filename_prefix": "grid"}).id
    b.g.add_link(sw, "IMAGE", grid_save, "images", "IMAGE")
    return b, sw, grid_save


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_cells_as_jobs_equal_the_grid_cells_and_a_rerun_does_nothing(tiny_models: Path, tmp_path: Path) -> None:
    registry = builtin_registry()
    b, sw, grid_save = sweep_graph()
    result = Executor(registry, output_dir=tmp_path / "grid").run(b.g, targets=[sw])
    assert result.status == "done", result.error
    grid = (result.outputs[sw][0][0].numpy() * 255.0).round().astype(np.uint8)
    g = result.ui[sw]["grid"]
    lay = GridLayout(g["columns"], g["rows"], g["cell"][0], g["cell"][1], g["left"], g["top"], g["gap"], 0)
    assert (lay.columns, lay.rows, lay.cell_w, lay.cell_h) == (2, 2, 64, 64) and lay.top > 0 and lay.left > 0

    plain, jobs = xy_sweep_jobs(b.g, registry, "Sweep")
    assert sw not in plain.nodes and grid_save not in plain.nodes  # the sweep and its grid's SaveImage
    assert sorted(n.type for n in plain.nodes.values()).count("KSampler") == 1
    labels = ["cfg=1 seed=1", "cfg=7.5 seed=1", "cfg=1 seed=2", "cfg=7.5 seed=2"]  # row by row, as the grid
    assert [j.label for j in jobs] == labels
    assert [j.id.rsplit("-", 1)[0] for j in jobs] == [label.replace(" ", "_") for label in labels]

    out = tmp_path / "cells"
    runner = JobRunner(graph_to_dict(plain), registry=registry)
    report = run_batch(jobs, LocalBackend(runner), out)
    assert len(report.done) == 4 and not report.failed
    for index, job in enumerate(jobs):
        row, column = divmod(index, 2)
        x, y = lay.cell_origin(column, row)
        cell = pixels(out / f"{job.id}.png")
        assert np.array_equal(cell, grid[y : y + 64, x : x + 64]), job.label
    assert not np.array_equal(pixels(out / f"{jobs[0].id}.png"), pixels(out / f"{jobs[3].id}.png"))

    again = JobRunner(graph_to_dict(plain), registry=registry)
    rerun = run_batch(jobs, LocalBackend(again), out)
    assert rerun.skipped == 4 and not rerun.done and again.executed == []
    assert len(Manifest(out).records()) == 4
    runner.close()
    again.close()


def test_the_command_line_runs_the_same_cells(tiny_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from app.cli import main
    from app.settings import home_dir

    (home_dir() / "settings.json").write_text(json.dumps({"extra_model_roots": [str(tiny_models)]}))
    b, _sw, _ = sweep_graph()
    workflow = tmp_path / "sweep.json"
    save(b.g, workflow)
    _plain, jobs = xy_sweep_jobs(b.g, builtin_registry(), "XYSweep")
    out = tmp_path / "out"
    assert main(["batch", str(workflow), "--xy-sweep", "Sweep", "--output-dir", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{j.id}.png" for j in jobs)
    capsys.readouterr()
    assert main(["batch", str(workflow), "--xy-sweep", "Sweep", "--output-dir", str(out)]) == 0
    assert len(Manifest(out).records()) == 4  # nothing ran the second time

    assert main(["batch", str(workflow), "--xy-sweep", "Sweep", "--sweep", "3.text=a,b", "--output-dir", str(out)]) == 2
    assert "cannot be combined" in capsys.readouterr().err


def test_what_is_not_an_xy_sweep_is_refused(tiny_models: Path) -> None:
    registry = builtin_registry()
    b, sw, _ = sweep_graph()
    with pytest.raises(JobSpecError, match="is a CheckpointLoaderSimple, not an XY Sweep"):
        xy_sweep_jobs(b.g, registry, str(b.ckpt))
    b.g.set_value(sw, "x_values", "1, lots")
    with pytest.raises(JobSpecError, match="'lots' is not a number"):
        xy_sweep_jobs(b.g, registry, str(sw))
