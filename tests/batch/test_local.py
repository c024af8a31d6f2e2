"""The in-process batch path and the `sdgraph batch` command, on pure-Python test nodes (no torch):
files named by job, a manifest that re-runs skip, failures reported while the rest go on, Ctrl+C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from app.batch.dispatch import run_batch
from app.batch.jobs import expand, parse_sweep
from app.batch.local import LocalBackend
from app.batch.manifest import MANIFEST_NAME, Manifest
from app.batch.runner import JobRunner
from graph_engine import Graph
from graph_engine.serialization import graph_to_dict, save
from tests.batch import batch_nodes

ROOT = Path(__file__).parents[2]
REG = batch_nodes.registry()


def workflow(steps: int = 1, ms: int = 0) -> Graph:
    g = Graph()
    v = g.add_node("BatchValue", {"value": 1}, title="Seed").id
    s = g.add_node("BatchSlow", {"steps": steps, "ms": ms}).id
    w = g.add_node("BatchWrite", {"text": "v", "name": "result"}, title="Writer").id
    g.add_link(v, "INT", s, "x", "INT")
    g.add_link(s, "INT", w, "value", "INT")
    return g


def jobs_for(g: Graph, *sweeps: str) -> list:
    return expand([parse_sweep(g, REG, s) for s in sweeps], graph_to_dict(g))


def runner(g: Graph) -> JobRunner:
    return JobRunner(graph_to_dict(g), registry=REG)


def test_jobs_write_files_named_by_job_a_failure_is_reported_and_a_rerun_skips_what_is_done(tmp_path):
    g = workflow()
    jobs = jobs_for(g, "Seed.value=1..10")
    first = runner(g)
    report = run_batch(jobs, LocalBackend(first), tmp_path)
    assert first.executed == [j.id for j in jobs]
    assert len(report.done) == 9 and [o.job.label for o in report.failed] == ["value=7"]
    failure = report.failed[0].describe_error()
    assert failure.startswith(f"job {jobs[6].id} (value=7): node 3 (Writer): 7 is a multiple of seven")
    for job in jobs:
        value = job.overrides[0].value
        path = tmp_path / f"{job.id}.txt"
        assert path.exists() == (value != 7)
        if value != 7:
            assert path.read_text() == f"v={value}"
    records = Manifest(tmp_path).records()
    assert [r["job"] for r in records] == [j.id for j in jobs]
    assert records[6]["status"] == "failed" and records[6]["error"]["node"] == 3
    assert records[0]["files"][0]["name"] == f"{jobs[0].id}.txt" and records[0]["overrides"] == [[1, "value", 1]]

    again = runner(g)
    report = run_batch(jobs, LocalBackend(again), tmp_path)
    assert again.executed == [jobs[6].id]  # only the failed job runs again
    assert report.skipped == 9 and not report.done

    (tmp_path / f"{jobs[2].id}.txt").unlink()  # a file gone from the folder: its job is not done
    third = runner(g)
    run_batch(jobs, LocalBackend(third), tmp_path)
    assert third.executed == [jobs[2].id, jobs[6].id]
    assert (tmp_path / f"{jobs[2].id}.txt").read_text() == "v=3"


def test_a_job_run_twice_on_one_warm_runner_writes_its_files_again(tmp_path):
    """A retry lands on a runner whose cache has seen the job: the output node must still run."""
    g = workflow()
    job = jobs_for(g, "Seed.value=3")[0]
    r = runner(g)
    first, second = r.run(job), r.run(job)
    assert first.status == second.status == "done"
    assert [f.data for f in second.files] == [f.data for f in first.files] == [b"v=3"]


def test_stopping_keeps_what_finished_and_the_next_run_does_the_rest(tmp_path):
    g = workflow(steps=50, ms=10)
    jobs = jobs_for(g, "Seed.value=1..5")
    r = runner(g)
    backend = LocalBackend(r)
    stop = threading.Event()
    seen = []

    def on_outcome(outcome):
        seen.append(outcome.status)
        if len(seen) == 2:  # Ctrl+C during the third job: stop taking jobs, cancel the running one
            stop.set()
            threading.Timer(0.1, backend.cancel).start()

    report = run_batch(jobs, backend, tmp_path, stop=stop, on_outcome=on_outcome)
    assert seen == ["done", "done"] and len(report.done) == 2 and not report.finished
    assert r.executed == [j.id for j in jobs[:2]]
    # cancel while a job runs: that job ends "cancelled" at its next step and is not recorded
    r2 = runner(g)
    backend2 = LocalBackend(r2)
    threading.Timer(0.2, backend2.cancel).start()
    started = time.perf_counter()
    report2 = run_batch(jobs, backend2, tmp_path)
    assert time.perf_counter() - started < 0.45 and report2.cancelled == len(jobs) - 2 and not report2.done
    assert Manifest(tmp_path).done() == {j.id for j in jobs[:2]}
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == sorted(f"{j.id}.txt" for j in jobs[:2])
    last = run_batch(jobs, LocalBackend(runner(g)), tmp_path)
    assert last.finished and last.skipped == 2 and len(last.done) == 3


# ---- the command line ----------------------------------------------------------------------------


def sdgraph(*args: str, home: Path, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "SDGRAPH_HOME": str(home), "SDGRAPH_NODE_MODULES": "tests.batch.batch_nodes", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=120
    )


def test_cli_batch_runs_reports_and_reruns(tmp_path):
    path = tmp_path / "w.json"
    save(workflow(), path)
    out = tmp_path / "out"
    proc = sdgraph("batch", str(path), "--sweep", "Seed.value=5..8", "--sweep", "Writer.text=a,b", "--output-dir",
                   str(out), home=tmp_path)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "failed: job value=7_text=a-" in proc.stderr and "node 3 (Writer): 7 is a multiple of seven" in proc.stderr
    assert "6 done, 2 failed, 0 skipped" in proc.stderr
    written = proc.stdout.split()
    assert len(written) == 6 and all(Path(p).parent == out and Path(p).exists() for p in written)
    assert sorted(Path(p).read_text() for p in written) == sorted(f"{t}={v}" for v in (5, 6, 8) for t in "ab")

    rerun = sdgraph("batch", str(path), "--sweep", "Seed.value=5..8", "--sweep", "Writer.text=a,b", "--output-dir",
                    str(out), home=tmp_path)  # fmt: skip
    assert rerun.returncode == 1 and rerun.stdout == ""
    assert "6 of 8 jobs already done" in rerun.stderr and "0 done, 2 failed, 6 skipped" in rerun.stderr


def test_cli_batch_lists_every_problem_before_running(tmp_path):
    path = tmp_path / "w.json"
    save(workflow(), path)
    out = tmp_path / "out"
    proc = sdgraph("batch", str(path), "--sweep", "Nobody.value=1,2", "--sweep", "Seed.value=999..1001",
                   "--sweep", "Seed.colour=1", "--output-dir", str(out), home=tmp_path)  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and "no node with id or title 'Nobody'" in lines[0] and "'colour'" in lines[1]
    proc = sdgraph("batch", str(path), "--sweep", "Seed.value=999..1001", "--output-dir", str(out), home=tmp_path)
    assert proc.returncode == 2 and "value 1001" in proc.stderr and "maximum 1000" in proc.stderr
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a fox\nan owl\n")
    proc = sdgraph("batch", str(path), "--prompts", str(prompts), "--output-dir", str(out), home=tmp_path)
    assert proc.returncode == 2 and "--prompts FILE and --prompt-input NODE.INPUT go together" in proc.stderr
    assert not out.exists()  # nothing ran, nothing was made
    proc = sdgraph("batch", str(path), "--prompts", str(prompts), "--prompt-input", "Writer.text", "--sweep",
                   "Seed.value=1,2", "--dry-run", "--output-dir", str(out), home=tmp_path)  # fmt: skip
    assert proc.returncode == 0 and [line.split("\t")[1] for line in proc.stdout.splitlines()] == [
        "value=1 line00001", "value=1 line00002", "value=2 line00001", "value=2 line00002"
    ]  # fmt: skip


def test_cli_batch_ray_without_ray_installed_names_the_install_command(tmp_path):
    fake = tmp_path / "no_ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    path = tmp_path / "w.json"
    save(workflow(), path)
    env = {"PYTHONPATH": os.pathsep.join([str(fake.parent), str(ROOT)])}
    proc = sdgraph("batch", str(path), "--sweep", "Seed.value=1,2", "--ray", "--output-dir", str(tmp_path / "o"),
                   home=tmp_path, env=env)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "sdgraph: --ray needs Ray, which is not installed: pip install 'sdgraph[cluster]'  (or: pip install 'ray>=2.9')"
    )


def test_cli_batch_ctrl_c_keeps_what_finished(tmp_path):
    g = workflow(steps=40, ms=25)  # a second per job
    path = tmp_path / "w.json"
    save(g, path)
    out = tmp_path / "out"
    args = ["batch", str(path), "--sweep", "Seed.value=1..6", "--output-dir", str(out)]
    env = {**os.environ, "SDGRAPH_HOME": str(tmp_path), "SDGRAPH_NODE_MODULES": "tests.batch.batch_nodes"}
    proc = subprocess.Popen([sys.executable, "-m", "app", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    manifest = out / MANIFEST_NAME
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (manifest.exists() and manifest.read_text().count("\n") >= 1):
        time.sleep(0.05)
    time.sleep(0.3)  # into the next job
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "stopping: the running jobs end at their next step" in stderr
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert 1 <= len(records) < 6 and all(r["status"] == "done" for r in records)
    files = sorted(p.name for p in out.glob("*.txt"))
    assert files == sorted(r["files"][0]["name"] for r in records)  # every file recorded, every record's file there
    assert len(stdout.split()) == len(records)
    rest = sdgraph(*args, home=tmp_path)
    assert rest.returncode == 0 and f"{len(records)} of 6 jobs already done" in rest.stderr
    assert len(Manifest(out).done()) == 6 and len(list(out.glob("*.txt"))) == 6
