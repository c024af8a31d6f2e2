"""`sdgraph batch` on a local Ray cluster (2 CPUs, 2 actors): a 40-job seed sweep on the tiny SD1
checkpoint gives the same pixels as in-process, survives a worker killed mid-batch with every job done
exactly once, and a re-run executes nothing. One cluster for the module (starting one costs seconds)."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'sdgraph[cluster]'")

import nodes.folders  # noqa: E402
from app.batch.dispatch import run_batch  # noqa: E402
from app.batch.jobs import Job, expand, parse_sweep  # noqa: E402
from app.batch.local import LocalBackend  # noqa: E402
from app.batch.manifest import MANIFEST_NAME, Manifest  # noqa: E402
from app.batch.ray_runner import RayBackend  # noqa: E402
from app.batch.runner import JobRunner, WorkerConfig  # noqa: E402
from app.plugins import app_registry  # noqa: E402
from graph_engine.serialization import graph_to_dict, save  # noqa: E402
from nodes.diffusion.images import PNG_WORKFLOW_KEY  # noqa: E402
from tests.batch.test_local import workflow as toy_workflow  # noqa: E402
from tests.support.graphs import txt2img_graph  # noqa: E402
from tests.support.tiny_sd import make_tiny  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]


@dataclass
class Sweep:
    workflow: dict
    jobs: list[Job]
    config: WorkerConfig
    ksampler: int


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Ray cluster with 2 CPUs; the actors see a throwaway sdgraph home. Yields its address."""
    home = tmp_path_factory.mktemp("ray-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SDGRAPH_HOME", str(home))  # read by RayBackend.start() for the actors' environment
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield ray.get_runtime_context().gcs_address
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sweep]:
    root = tmp_path_factory.mktemp("ray-models")
    make_tiny("sd1", root / "checkpoints", name="tiny_sd1")
    nodes.folders.configure(extra_roots=[str(root)])
    try:
        g, ids = txt2img_graph("tiny_sd1.safetensors", size=64, steps=1, sampler_name="euler")
        registry = app_registry()
        jobs = expand([parse_sweep(g, registry, f"{ids['ks']}.seed=1..40")], graph_to_dict(g))
        config = WorkerConfig.current(device="cpu", precision="exact", compile=None, threads=1)
        yield Sweep(graph_to_dict(g), jobs, config, ids["ks"])
    finally:
        nodes.folders.configure()


@pytest.fixture(scope="module")
def backend(cluster: str, sweep: Sweep) -> Iterator[RayBackend]:
    with RayBackend(sweep.workflow, sweep.config, address=None, workers=2, threads_per_worker=1) as b:
        yield b


@pytest.fixture(scope="module")
def in_process(sweep: Sweep, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same 40 jobs on one executor in this process (one torch thread, as on each actor)."""
    import torch

    out = tmp_path_factory.mktemp("in-process")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = run_batch(sweep.jobs, LocalBackend(JobRunner(sweep.workflow, registry=app_registry())), out)
    finally:
        torch.set_num_threads(threads)
    assert report.finished and not report.failed
    return out


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def assert_done_once_and_equal(out: Path, sweep: Sweep, reference: Path) -> list[dict]:
    records = Manifest(out).records()
    counts = collections.Counter(r["job"] for r in records)
    assert set(counts) == {j.id for j in sweep.jobs} and set(counts.values()) == {1}
    assert all(r["status"] == "done" for r in records)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{j.id}.png" for j in sweep.jobs)
    for job in sweep.jobs:
        a, b = pixels(out / f"{job.id}.png"), pixels(reference / f"{job.id}.png")
        assert np.array_equal(a, b), job.id
        with Image.open(out / f"{job.id}.png") as im:  # each image carries its own job's workflow
            embedded = json.loads(im.text[PNG_WORKFLOW_KEY])
        seed = next(n["inputs"]["seed"] for n in embedded["nodes"] if n["id"] == sweep.ksampler)
        assert seed == job.overrides[0].value
    assert len({pixels(out / f"{j.id}.png").tobytes() for j in sweep.jobs[:4]}) == 4  # seeds really differ
    return records


def test_cli_batch_on_a_ray_cluster_stops_on_ctrl_c_and_a_rerun_finishes(cluster, tmp_path):
    """`sdgraph batch --ray auto` joins the cluster in RAY_ADDRESS (runs before the shared actors exist).
    Ctrl+C reaches the job running on the actor, which stops at its next step; what finished is kept."""
    path = tmp_path / "w.json"
    save(toy_workflow(steps=20, ms=25), path)  # half a second per job
    out = tmp_path / "out"
    env = {**os.environ, "SDGRAPH_HOME": str(tmp_path), "SDGRAPH_NODE_MODULES": "tests.batch.batch_nodes"}
    env["RAY_ADDRESS"] = cluster
    args = [sys.executable, "-m", "app", "batch", str(path), "--sweep", "Seed.value=1..6", "--ray", "auto"]
    args += ["--workers", "1", "--output-dir", str(out)]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = out / MANIFEST_NAME
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (manifest.exists() and manifest.read_text().count("\n") >= 1):
        time.sleep(0.05)
    time.sleep(0.2)  # into the next job
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - started < 10  # not after the remaining jobs
    assert "1 Ray worker ready" in stderr
    records = Manifest(out).records()
    assert 1 <= len(records) < 6 and sorted(p.name for p in out.glob("*.txt")) == sorted(
        r["files"][0]["name"] for r in records
    )
    assert len(stdout.split()) == len(records)

    rerun = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(records)} of 6 jobs already done" in rerun.stderr
    assert sorted(p.read_text() for p in out.glob("*.txt")) == [f"v={v}" for v in range(1, 7)]
    assert len({r["worker"] for r in Manifest(out).records()}) == 2  # each run had its own actor


def test_ray_sweep_equals_in_process_and_a_rerun_executes_nothing(backend, sweep, in_process, tmp_path):
    report = run_batch(sweep.jobs, backend, tmp_path)
    assert report.finished and len(report.done) == 40 and not report.failed
    records = assert_done_once_and_equal(tmp_path, sweep, in_process)
    assert len({r["worker"] for r in records}) == 2  # both actors took jobs

    ran_before = sum(len(ray.get(a.executed.remote())) for a in backend.actors)
    again = run_batch(sweep.jobs, backend, tmp_path)
    assert again.skipped == 40 and not again.done
    assert sum(len(ray.get(a.executed.remote())) for a in backend.actors) == ran_before
    assert len(Manifest(tmp_path).records()) == 40


def test_a_worker_killed_mid_batch_has_its_job_done_elsewhere_exactly_once(backend, sweep, in_process, tmp_path):
    killed: list[str] = []

    def kill_a_busy_worker(outcome) -> None:
        if len(killed) == 0 and sum(1 for _ in Manifest(tmp_path).records()) >= 10 and backend.in_flight:
            index, job_id = next(iter(backend.in_flight.items()))
            ray.kill(backend.slots[index].actor)
            killed.append(job_id)

    restarts = backend.restarts
    report = run_batch(sweep.jobs, backend, tmp_path, on_outcome=kill_a_busy_worker)
    assert killed, "no worker was busy when the test meant to kill one"
    assert backend.restarts == restarts + 1 and len(backend.retried) == 1
    assert report.finished and len(report.done) == 40
    assert_done_once_and_equal(tmp_path, sweep, in_process)


def test_shared_output_workers_write_the_files_and_send_back_no_bytes(backend, sweep, in_process, tmp_path):
    jobs = sweep.jobs[:6]
    backend.cancel()  # a stop requested during an earlier batch does not carry over to the next
    outcomes: list = []
    backend.run(jobs, outcomes.append, threading.Event(), tmp_path / "direct")
    assert sorted(o.job.id for o in outcomes) == sorted(j.id for j in jobs)
    assert [(o.status, o.error) for o in outcomes] == [("done", None)] * 6
    assert all(o.files and o.files[0].data is None for o in outcomes)  # no bytes sent
    assert sorted(p.name for p in (tmp_path / "direct").iterdir()) == sorted(f"{j.id}.png" for j in jobs)

    report = run_batch(jobs, backend, tmp_path / "batch", shared_output=True)
    assert report.finished and len(report.done) == 6
    records = Manifest(tmp_path / "batch").records()
    assert sorted(r["files"][0]["name"] for r in records) == sorted(f"{j.id}.png" for j in jobs)
    for job in jobs:
        assert np.array_equal(pixels(tmp_path / "batch" / f"{job.id}.png"), pixels(in_process / f"{job.id}.png"))


def test_cuda_workers_on_a_cluster_without_gpus_are_refused_at_once(cluster, sweep):
    from app.batch.ray_runner import RayUnavailable

    backend = RayBackend(sweep.workflow, WorkerConfig(device="cuda"), address=None, workers=1)
    with pytest.raises(RayUnavailable, match="--device cuda: the Ray cluster has no GPUs"):
        backend.start()
    assert backend.slots == []
