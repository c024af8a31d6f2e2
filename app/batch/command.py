"""`sdgraph batch WORKFLOW --sweep NODE.INPUT=VALUES … [--prompts FILE --prompt-input NODE.INPUT] --output-dir DIR`.

Everything is checked before the first job runs (exit 2, every problem listed): the workflow, each
sweep value and prompt through graph validation, the output folder, `--device`, and whether Ray is
installed when `--ray` is given. Then the jobs not yet in the folder's manifest run: in this process
on one executor, or with `--ray` on Ray actors. A rich progress bar on stderr counts jobs; each
failed job gets one line (job, node, message) and the others go on; the written files' paths go to
stdout. Exit codes as `sdgraph run`: 0 every job done, 1 some failed, 130 interrupted (Ctrl+C: the
running jobs stop at their next step, what finished is kept; a second Ctrl+C quits at once).

`--xy-sweep NODE` takes the jobs from an XY Sweep node instead (`jobs.xy_sweep_jobs`): one job per
cell, run on the workflow with that node replaced by a plain sampler, decode and save. Only when asked
for: a workflow whose output is a grid may be meant to make grids.

Importing this module costs nothing: `sdgraph --help` builds its parser.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "batch",
        help="run one workflow many times (sweeps, prompt lists), in-process or on a Ray cluster",
        description="Run the jobs of sweeps and prompt lists; a re-run skips the jobs already in --output-dir.",
    )
    p.add_argument("workflow", help="a workflow .json (sdgraph or ComfyUI) or a .png with one embedded")
    p.add_argument(
        "--sweep",
        dest="sweeps",
        action="append",
        default=[],
        metavar="NODE.INPUT=VALUES",
        help="values for one input: a range A..B or A..B:STEP (ends included) or a list a,b,c; several "
        "--sweep give every combination. NODE is a node id or title",
    )
    p.add_argument(
        "--xy-sweep",
        metavar="NODE",
        help="run an XY Sweep node's cells as jobs (one image per cell, named by its values) instead of "
        "one grid; NODE is its id or title",
    )
    p.add_argument("--prompts", type=Path, metavar="FILE", help="one prompt per line, one job per line")
    p.add_argument("--prompt-input", metavar="NODE.INPUT", help="where --prompts lines go (e.g. 6.text)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.INPUT=VALUE")
    p.add_argument("--model-alias", dest="aliases", action="append", default=[], metavar="OLD=NEW")
    p.add_argument("--output-dir", type=Path, required=True, help="where images and the manifest go")
    p.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        metavar="auto|ADDRESS",
        help="run on Ray actors: 'auto' (RAY_ADDRESS, else a local cluster) or a cluster address",
    )
    p.add_argument("--workers", type=int, metavar="N", help="Ray actors (default: one per GPU, else per thread group)")
    p.add_argument("--threads-per-worker", type=int, default=1, metavar="N", help="CPU threads per Ray actor")
    p.add_argument(
        "--shared-output",
        action="store_true",
        help="Ray workers write images into --output-dir themselves (a folder every node of the cluster sees)",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="where to run (default: settings)")
    p.add_argument("--precision", choices=["exact", "fast"], help="exact (fp32 on CPU) or fast (bf16/fp16)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the UNet")
    p.add_argument("--dry-run", action="store_true", help="check everything and list the jobs, run nothing")


def build_jobs(args: argparse.Namespace, graph: Any, registry: Any) -> list[Any]:
    """The jobs the arguments ask for, every value checked; `UsageError` lists every problem."""
    from app.batch.jobs import JobSpecError, check_axes, expand, parse_sweep, prompt_axis, xy_sweep_jobs
    from app.cli import UsageError
    from graph_engine.serialization import graph_to_dict

    if args.xy_sweep:
        if args.sweeps or args.prompts is not None or args.prompt_input:
            raise UsageError("--xy-sweep takes its values from the XY Sweep node; it cannot be combined with "
                             "--sweep or --prompts")  # fmt: skip
        try:
            plain, jobs = xy_sweep_jobs(graph, registry, args.xy_sweep)
        except JobSpecError as exc:
            raise UsageError(*exc.messages) from None
        graph.replace_with(plain)  # the jobs run on the graph with the sweep node replaced by its cell's nodes
        return jobs
    axes, problems = [], []
    for text in args.sweeps:
        try:
            axes.append(parse_sweep(graph, registry, text))
        except JobSpecError as exc:
            problems.extend(exc.messages)
    if args.prompts is not None or args.prompt_input:
        if args.prompts is None or not args.prompt_input:
            problems.append("--prompts FILE and --prompt-input NODE.INPUT go together")
        else:
            try:
                lines = args.prompts.read_text(encoding="utf-8").splitlines()
                axes.append(prompt_axis(graph, registry, args.prompt_input, lines, f"--prompts {args.prompts}"))
            except OSError as exc:
                problems.append(f"--prompts {args.prompts}: {exc.strerror or exc}")
            except JobSpecError as exc:
                problems.extend(exc.messages)
    if problems:
        raise UsageError(*problems)
    try:
        check_axes(graph, registry, axes)
        return expand(axes, graph_to_dict(graph))
    except JobSpecError as exc:
        raise UsageError(*exc.messages) from None


def cmd_batch(args: argparse.Namespace) -> int:
    from app.batch.runner import WorkerConfig
    from app.cli import (
        EXIT_OK,
        UsageError,
        _open,
        _registry,
        apply_aliases,
        apply_sets,
        check_device,
        check_output_dir,
    )
    from graph_engine.serialization import graph_to_dict

    if args.ray is None:  # Ray workers may have a GPU this machine lacks: the backend checks the cluster
        check_device(args.device)
    else:
        from app.batch.ray_runner import RayUnavailable, require_ray

        try:
            require_ray()
        except RayUnavailable as exc:
            raise UsageError(str(exc)) from None
    if (args.workers is not None and args.workers < 1) or args.threads_per_worker < 1:
        raise UsageError("--workers and --threads-per-worker must be at least 1")
    if args.shared_output and args.ray is None:
        raise UsageError("--shared-output is for --ray workers; without --ray the images are written here anyway")
    registry = _registry()
    graph = _open(args.workflow).graph
    apply_aliases(graph, registry, args.aliases)
    apply_sets(graph, registry, args.sets)
    jobs = build_jobs(args, graph, registry)
    if args.dry_run:
        for job in jobs:
            print(f"{job.id}\t{job.label}")
        return EXIT_OK
    check_output_dir(args.output_dir)

    from app.settings import Settings

    settings = Settings.load()
    config = WorkerConfig.current(
        device=args.device or settings.device,
        precision=args.precision or settings.precision,
        compile=args.compile,
        threads=args.threads_per_worker if args.ray is not None else None,
    )
    workflow = graph_to_dict(graph)
    backend = _backend(args, workflow, config, registry)
    try:
        return _run(args, jobs, backend)
    finally:
        backend.close()


def _backend(args: argparse.Namespace, workflow: dict[str, Any], config: Any, registry: Any) -> Any:
    if args.ray is None:
        from app.batch.local import LocalBackend
        from app.batch.runner import JobRunner

        return LocalBackend(JobRunner(workflow, config, registry=registry))
    from app.batch.ray_runner import RayBackend, RayUnavailable
    from app.cli import UsageError

    backend = RayBackend(
        workflow, config, address=args.ray, workers=args.workers, threads_per_worker=args.threads_per_worker
    )
    print(f"sdgraph: starting Ray workers ({args.ray})", file=sys.stderr)
    try:
        seconds = backend.start()
    except RayUnavailable as exc:
        backend.close()
        raise UsageError(str(exc)) from None
    count = len(backend.slots)
    print(f"sdgraph: {count} Ray worker{'s' * (count != 1)} ready in {seconds:.1f}s", file=sys.stderr)
    return backend


def _run(args: argparse.Namespace, jobs: list[Any], backend: Any) -> int:
    """The jobs with a progress bar and Ctrl+C handling; each finished job's files are printed as it lands."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from app.batch.dispatch import pending_jobs, run_batch
    from app.batch.ray_runner import RayUnavailable
    from app.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
    from app.cli import _err as err

    stop = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl+C: stop now
            raise KeyboardInterrupt
        err("stopping: the running jobs end at their next step (Ctrl+C again to quit now)")
        stop.set()
        backend.cancel()

    todo, skipped = pending_jobs(jobs, args.output_dir)
    console = Console(file=sys.stderr)
    if skipped:
        console.print(f"{skipped} of {skipped + len(todo)} jobs already done in {args.output_dir}", highlight=False)
    progress = Progress(
        TextColumn("jobs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with progress:
            task = progress.add_task("jobs", total=skipped + len(todo), completed=skipped)

            def on_outcome(outcome: Any) -> None:
                if outcome.status == "failed":
                    progress.console.print(f"failed: {outcome.describe_error()}", highlight=False, soft_wrap=True)
                if outcome.status != "cancelled":
                    progress.advance(task)
                if outcome.status == "done":
                    for f in outcome.files:
                        print(Path(args.output_dir) / f.name, flush=True)

            report = run_batch(
                jobs, backend, args.output_dir, shared_output=args.shared_output, stop=stop, on_outcome=on_outcome
            )
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    except RayUnavailable as exc:
        err(str(exc))
        return EXIT_FAILED
    except OSError as exc:
        err(f"{exc.filename or args.output_dir} could not be written: {exc.strerror or exc}")
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGINT, previous)
    summary = f"{len(report.done)} done, {len(report.failed)} failed, {report.skipped} skipped (already done)"
    err(summary)
    if stop.is_set() and not report.finished:
        err("interrupted")
        return EXIT_INTERRUPTED
    return EXIT_FAILED if report.failed else EXIT_OK
