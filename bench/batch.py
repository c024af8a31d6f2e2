"""Batch throughput: jobs per second in-process vs on 1 and 2 Ray workers, and what starting Ray costs.

    .venv/bin/python bench/batch.py [--jobs 40] [--size 64] [--steps 2] [--workers 1,2]
                                    [--threads-per-worker 1] [--in-process-threads N] [--json out.json]

The job is `sdgraph batch`'s: a seed sweep of the txt2img graph on a tiny SD1 checkpoint written to a
temp folder (tests/support/tiny_sd.py), so what is measured is the batch machinery and per-job
overhead (graph copy, plan, cache hits for the loader and prompts, sampler, decode, PNG encode, bytes
back to the driver, atomic write, manifest fsync), not a real UNet. Each backend runs the sweep twice
into fresh folders with different seeds: "cold" includes each worker's first model load, "warm" is
the steady state. Ray is started once (`ray.init(num_cpus=<cores>)`, timed); each worker count then
starts its own actors (timed: a new Python process that imports sdgraph and torch).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--workers", default="1,2", help="Ray worker counts to measure")
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument(
        "--in-process-threads", default=f"1,{os.cpu_count() or 1}", help="torch thread counts for the in-process rows"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="sdgraph-bench-batch-"))
    os.environ["SDGRAPH_HOME"] = str(home)
    import torch

    import nodes.folders
    from app.batch.dispatch import run_batch
    from app.batch.jobs import expand, parse_sweep
    from app.batch.local import LocalBackend
    from app.batch.runner import JobRunner, WorkerConfig
    from app.plugins import app_registry
    from graph_engine.serialization import graph_to_dict
    from tests.support.graphs import txt2img_graph
    from tests.support.tiny_sd import make_tiny

    make_tiny("sd1", home / "models" / "checkpoints", name="bench_tiny_sd1")
    nodes.folders.configure()
    graph, ids = txt2img_graph("bench_tiny_sd1.safetensors", size=args.size, steps=args.steps)
    registry = app_registry()
    workflow = graph_to_dict(graph)

    def sweep(first: int) -> list[Any]:
        axis = parse_sweep(graph, registry, f"{ids['ks']}.seed={first}..{first + args.jobs - 1}")
        return expand([axis], workflow)

    def timed_batch(backend: Any, first_seed: int) -> float:
        out = Path(tempfile.mkdtemp(dir=home))
        t0 = time.perf_counter()
        report = run_batch(sweep(first_seed), backend, out)
        seconds = time.perf_counter() - t0
        assert report.finished and not report.failed, report.failed[:1]
        return seconds

    rows: list[dict[str, Any]] = []

    def row(name: str, start: float | None, cold: float, warm: float) -> None:
        rows.append(
            {
                "backend": name,
                "startup_s": None if start is None else round(start, 2),
                "cold_s": round(cold, 2),
                "cold_jobs_per_s": round(args.jobs / cold, 2),
                "warm_s": round(warm, 2),
                "warm_jobs_per_s": round(args.jobs / warm, 2),
                "load": round(load_average(), 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    for threads in dict.fromkeys(int(t) for t in args.in_process_threads.split(",")):
        torch.set_num_threads(threads)
        runner = JobRunner(workflow, registry=registry)  # a fresh executor: the first job loads the model
        cold = timed_batch(LocalBackend(runner), 1_000 * threads)
        warm = timed_batch(LocalBackend(runner), 1_000 * threads + 500)
        row(f"in-process ({threads} torch thread{'s' * (threads != 1)})", None, cold, warm)
        runner.close()

    try:
        import ray
    except ImportError:
        print("ray is not installed: pip install 'sdgraph[cluster]'", file=sys.stderr)
        ray = None
    ray_init_s = None
    if ray is not None:
        from app.batch.ray_runner import RayBackend

        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        ray_init_s = time.perf_counter() - t0
        print(json.dumps({"ray_init_s": round(ray_init_s, 2)}), flush=True)
        config = WorkerConfig.current(device="cpu", precision="exact", compile=None, threads=args.threads_per_worker)
        for count in (int(c) for c in args.workers.split(",")):
            backend = RayBackend(
                workflow, config, address=None, workers=count, threads_per_worker=args.threads_per_worker
            )
            start = backend.start()
            cold = timed_batch(backend, 10_000 * count)
            warm = timed_batch(backend, 10_000 * count + 5_000)
            row(f"ray, {count} worker{'s' * (count != 1)} × {args.threads_per_worker} thread", start, cold, warm)
            backend.close()
        ray.shutdown()

    summary = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "jobs": args.jobs,
        "size": args.size,
        "steps": args.steps,
        "ray_init_s": None if ray_init_s is None else round(ray_init_s, 2),
        "rows": rows,
    }
    print(f"\nCPU: {summary['cpu']}, {summary['cores']} cores; {args.jobs} jobs, {args.size}px, {args.steps} steps")
    if ray_init_s is not None:
        print(f"ray.init (local cluster): {ray_init_s:.2f} s")
    print(f"{'backend':38} {'start s':>8} {'cold jobs/s':>12} {'warm jobs/s':>12} {'load':>6}")
    for r in rows:
        start = "-" if r["startup_s"] is None else f"{r['startup_s']:.2f}"
        print(
            f"{r['backend']:38} {start:>8} {r['cold_jobs_per_s']:>12.2f} "
            f"{r['warm_jobs_per_s']:>12.2f} {r['load']:>6.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
