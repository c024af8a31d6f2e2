"""`sdgraph`: the window with no arguments, and run / validate / nodes for scripts and servers.

Exit codes: 0 done; 1 a node failed (named on stderr); 2 the workflow or the arguments are invalid
(every problem listed, no traceback); 130 interrupted. Progress goes to stderr and the paths of
written files to stdout, so `sdgraph run w.json | xargs open` works.

Nothing heavy is imported at module level: `sdgraph --help` and the window must not wait for torch.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad arguments or an unusable workflow: exit 2 with these messages."""

    def __init__(self, *messages: str) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(messages))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdgraph",
        description="A node-graph studio for diffusion image generation. With no command, opens the window.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gui = sub.add_parser("gui", help="open the window, optionally with a workflow or a PNG")
    gui.add_argument("file", nargs="?", help="a workflow .json or a .png with an embedded workflow")

    run = sub.add_parser("run", help="run a workflow headless")
    run.add_argument(
        "workflow",
        help="a workflow .json (sdgraph or ComfyUI), a .png with one embedded, or a template name (txt2img, sdxl, …)",
    )
    run.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="NODE.INPUT=VALUE",
        help="override an input; NODE is a node id or title (repeatable)",
    )
    run.add_argument(
        "--model-alias",
        dest="aliases",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="use model file NEW wherever the workflow names OLD (repeatable)",
    )
    run.add_argument("--output-dir", type=Path, help="where output images go (default: the settings' folder)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="where to run (default: settings)")
    run.add_argument("--precision", choices=["exact", "fast"], help="exact (fp32 on CPU) or fast (bf16/fp16)")
    run.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the UNet (about a minute per image size, then faster; default: settings)",
    )
    run.add_argument("--dry-run", action="store_true", help="validate and print the plan without running")

    val = sub.add_parser("validate", help="check a workflow and list every problem")
    val.add_argument("workflow")
    val.add_argument("--model-alias", dest="aliases", action="append", default=[], metavar="OLD=NEW")
    val.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="refused when not on this machine")

    nodes = sub.add_parser("nodes", help="list every node type and its inputs")
    nodes.add_argument("--json", action="store_true", help="machine-readable output")
    _add_export_parser(sub)
    _add_serve_parser(sub)
    from app.batch.command import add_parser as add_batch_parser

    add_batch_parser(sub)
    return parser


def _add_export_parser(sub: Any) -> None:
    exp = sub.add_parser("export", help="write a workflow in ComfyUI's UI or API format")
    exp.add_argument("workflow", help="any workflow sdgraph opens (.json or .png)")
    exp.add_argument("--format", required=True, choices=["comfy-ui", "comfy-api"], help="UI graph or API prompt")
    exp.add_argument("-o", "--output", required=True, type=Path, help="the .json file to write")
    exp.add_argument("--model-alias", dest="aliases", action="append", default=[], metavar="OLD=NEW")
    exp.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.INPUT=VALUE")


def _add_serve_parser(sub: Any) -> None:
    srv = sub.add_parser("serve", help="serve ComfyUI's HTTP/WebSocket API (needs sdgraph[server])")
    srv.add_argument("--listen", default="127.0.0.1", metavar="ADDR", help="address to listen on (default: 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8188, help="port (default: 8188, ComfyUI's)")
    srv.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on every request")
    srv.add_argument("--enable-cors-header", metavar="ORIGIN", help="allow browser pages from ORIGIN (default: none)")
    srv.add_argument("--max-upload-size", type=int, default=100, metavar="MB", help="largest request (default: 100)")
    srv.add_argument(
        "--frontend",
        nargs="?",
        const="",
        metavar="FOLDER",
        help="serve ComfyUI's web front-end on / (the comfyui-frontend-package, or its static FOLDER)",
    )
    srv.add_argument("--output-dir", type=Path, help="where output images go (default: the settings' folder)")
    srv.add_argument("--input-dir", type=Path, help="where uploads and Load Image's files live (default: input/)")
    srv.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="where to run (default: settings)")
    srv.add_argument("--precision", choices=["exact", "fast"], help="exact (fp32 on CPU) or fast (bf16/fp16)")


# ---- helpers ----------------------------------------------------------------------------------


def _err(message: str) -> None:
    print(f"sdgraph: {message}", file=sys.stderr)


def resolve_workflow(path: str) -> str:
    """``path`` itself when it exists, else the shipped template of that name (``txt2img``, ``sdxl.json``).

    An installed sdgraph keeps its templates inside site-packages, where nobody would type their path;
    a bare name reaches them. A file in the current folder always wins over a template.
    """
    if Path(path).exists() or Path(path).name != path:
        return path
    from nodes.shipped import workflows_dir

    folder = workflows_dir()
    for candidate in (folder / path, folder / f"{path}.json"):
        if candidate.suffix == ".json" and candidate.is_file():
            return str(candidate)
    names = ", ".join(sorted(p.stem for p in folder.glob("*.json")))
    raise UsageError(f"{path}: no such file, and no template of that name (templates: {names})")


def _open(path: str) -> Any:
    from app.documents import open_document
    from graph_engine import WorkflowFormatError

    path = resolve_workflow(path)
    try:
        document = open_document(path)
    except WorkflowFormatError as exc:
        raise UsageError(str(exc)) from None
    for notice in document.notices:
        _err(notice)
    return document


def _find_node(graph: Any, key: str) -> int:
    from app.batch.jobs import find_node

    try:
        return find_node(graph, key)
    except ValueError as exc:
        raise UsageError(f"--set: {exc}") from None


def _parse_value(raw: str, input_type: str) -> Any:
    """Command-line text to the input's type, so `--set 3.seed=42` gives an int and `text=42` a string."""
    if input_type in ("STRING", "COMBO"):
        return raw
    if input_type == "BOOLEAN":
        lowered = raw.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def apply_sets(graph: Any, registry: Any, sets: Sequence[str]) -> None:
    problems = []
    for item in sets:
        target, sep, raw = item.partition("=")
        node_key, dot, input_id = target.rpartition(".")
        if not sep or not dot or not node_key or not input_id:
            problems.append(f"--set {item!r}: expected NODE.INPUT=VALUE")
            continue
        try:
            nid = _find_node(graph, node_key)
        except UsageError as exc:
            problems.extend(exc.messages)
            continue
        node = graph.nodes[nid]
        spec = registry.get(node.type)
        inp = spec.input(input_id) if spec else None
        if spec is not None and (inp is None or not inp.is_widget):
            names = ", ".join(i.id for i in spec.inputs if i.is_widget) or "none"
            problems.append(f"--set {item!r}: node {nid} ({node.label}) has no value input {input_id!r} ({names})")
            continue
        graph.set_value(nid, input_id, _parse_value(raw, inp.type if inp else "STRING"))
    if problems:
        raise UsageError(*problems)


def apply_aliases(graph: Any, registry: Any, aliases: Sequence[str]) -> None:
    """Replace model file names: every COMBO value equal to OLD becomes NEW."""
    mapping = {}
    for item in aliases:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise UsageError(f"--model-alias {item!r}: expected OLD=NEW")
        mapping[old] = new
    for node in graph.nodes.values():
        spec = registry.get(node.type)
        if spec is None:
            continue
        for inp in spec.inputs:
            if inp.type == "COMBO" and node.values.get(inp.id) in mapping:
                graph.set_value(node.id, inp.id, mapping[node.values[inp.id]])


def check_device(device: str | None) -> None:
    """Refuse `--device cuda`/`mps` where there is none, before anything runs (validate and --dry-run too).

    Only an explicit accelerator is checked, so `validate` and `--dry-run` without `--device` stay
    free of torch; the loader would otherwise fail only after the workflow started.
    """
    if device not in ("cuda", "mps"):
        return
    from nodes.diffusion.devices import pick_device

    try:
        pick_device(device)
    except RuntimeError as exc:
        raise UsageError(f"--device {device}: {str(exc).splitlines()[0]}") from None


def check_output_dir(folder: Path) -> None:
    """An output folder that cannot hold images is refused before any node runs (exit 2, one line)."""
    from app.output_folder import output_folder_problem

    problem = output_folder_problem(folder)
    if problem is not None:
        raise UsageError(problem)


# ---- start-up -------------------------------------------------------------------------------

# ---- commands ---------------------------------------------------------------------------------


def _registry() -> Any:
    """The built-in nodes plus the node packs; each pack that failed to load is named once on stderr."""
    global _plugin_problems_shown
    from app.plugins import load_app_registry

    registry, report = load_app_registry()
    if not _plugin_problems_shown:
        _plugin_problems_shown = True
        for problem in report.problems:
            _err(problem)
    return registry


_plugin_problems_shown = False


def cmd_nodes(args: argparse.Namespace) -> int:
    registry = _registry()
    if args.json:
        described = [{**spec.describe(), "source": registry.source(spec.type) or "built-in"} for spec in registry]
        json.dump(described, sys.stdout, indent=2, default=str)
        print()
        return EXIT_OK
    for spec in registry:
        flag = " [output]" if spec.output_node else ""
        source = registry.source(spec.type)
        flag += f" [plugin: {source}]" if source else ""
        print(f"{spec.type}  ({spec.display_name}, {spec.category}){flag}")
        for inp in spec.inputs:
            detail = inp.type
            if inp.is_widget and inp.default is not None and repr(inp.default) != "MISSING":
                detail += f" = {inp.default!r}"
            if inp.min is not None or inp.max is not None:
                detail += f" [{inp.min}, {inp.max}]"
            if inp.optional:
                detail += " (optional)"
            print(f"    in   {inp.id}: {detail}")
        for out in spec.outputs:
            print(f"    out  {out.id}: {out.type}")
    return EXIT_OK


def _problems_or_none(graph: Any, registry: Any) -> list[str]:
    from graph_engine import validate

    return [str(p) for p in validate(graph, registry)]


def cmd_validate(args: argparse.Namespace) -> int:
    check_device(args.device)
    registry = _registry()
    document = _open(args.workflow)
    apply_aliases(document.graph, registry, args.aliases)
    problems = _problems_or_none(document.graph, registry)
    if problems:
        raise UsageError(*problems)
    print(f"{args.workflow}: valid ({len(document.graph.nodes)} nodes)")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    # torch, diffusers and transformers load while the workflow is read and checked; joined below,
    # before any node can import them.
    from app.preload import start_preloading, wait_for_preloading

    check_device(args.device)
    if not args.dry_run:
        from app.settings import Settings

        check_output_dir(args.output_dir or Settings.load().output_path)
    if not args.dry_run:
        start_preloading()
    from app.progress import ProgressReporter
    from app.settings import Settings
    from graph_engine import CancelToken, Executor, InvalidGraph, make_plan
    from graph_engine.serialization import graph_to_dict

    registry = _registry()
    document = _open(args.workflow)
    graph = document.graph
    apply_aliases(graph, registry, args.aliases)
    apply_sets(graph, registry, args.sets)
    try:
        plan = make_plan(graph, registry)
    except InvalidGraph as exc:
        raise UsageError(*(str(p) for p in exc.problems)) from None
    if args.dry_run:
        for p in plan.order:
            print(f"{p.id}\t{p.spec.type}\t{p.title}")
        return EXIT_OK

    settings = Settings.load()
    output_dir = args.output_dir or settings.output_path
    executor = Executor(
        registry,
        device=args.device or settings.device,
        output_dir=output_dir,
        settings={"precision": args.precision or settings.precision, "settings": settings, **_speed_flags(args)},
    )
    token = CancelToken()

    def on_sigint(signum: int, frame: Any) -> None:
        if token.cancelled:  # a second Ctrl+C: stop now
            raise KeyboardInterrupt
        _err("stopping at the next step (Ctrl+C again to quit now)")
        token.cancel()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        wait_for_preloading()  # Ctrl+C while waiting cancels the run before its first node
        with ProgressReporter(graph, plan) as reporter:
            result = executor.execute(plan, on_event=reporter.on_event, cancel=token, workflow=graph_to_dict(graph))
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous)
    for ui in result.ui.values():
        for image in ui.get("images", []):
            if image.get("type") == "output":
                print(image["path"])
    if result.status == "cancelled":
        _err("interrupted")
        return EXIT_INTERRUPTED
    if result.status == "failed":
        assert result.error is not None
        _err(str(result.error))
        return EXIT_FAILED
    return EXIT_OK


def _speed_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {} if args.compile is None else {"compile": bool(args.compile)}


def cmd_export(args: argparse.Namespace) -> int:
    """ComfyUI JSON for a workflow, e.g. to queue it on a ComfyUI server (`comfy-api`)."""
    from app.comfy_png import export_graph

    registry = _registry()
    graph = _open(args.workflow).graph
    apply_aliases(graph, registry, args.aliases)
    apply_sets(graph, registry, args.sets)
    try:
        export_graph(graph, args.format, args.output)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(args.output)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """One executor and model manager for every client, until Ctrl+C."""
    from app.settings import Settings

    check_device(args.device)
    settings = Settings.load()
    output_dir = args.output_dir or settings.output_path
    check_output_dir(output_dir)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: expected 0..65535")
    if args.input_dir is not None:  # where Load Image reads, so uploads land where it looks
        os.environ["SDGRAPH_INPUT_DIR"] = str(args.input_dir.resolve())
    try:
        from app.server import Server, ServerConfig
    except ImportError as exc:
        raise UsageError(f"serve needs aiohttp ({exc.name} is missing): pip install 'sdgraph[server]'") from None
    if args.frontend is not None:
        from app.server.frontend import frontend_root

        if args.token:
            raise UsageError("--frontend cannot be combined with --token: ComfyUI's web page sends no token")
        try:
            frontend_root(args.frontend or None)
        except ValueError as exc:
            raise UsageError(f"--frontend: {exc}") from None
    from app.preload import start_preloading, wait_for_preloading
    from graph_engine import Executor, ResultCache

    start_preloading()  # waited for before any prompt can import the model stack
    executor = Executor(
        _registry(),
        cache=ResultCache(max(0, int(settings.cache_budget_mb)) * 1024**2),
        device=args.device or settings.device,
        output_dir=output_dir,
        settings={"precision": args.precision or settings.precision, "settings": settings},
    )
    config = ServerConfig(
        host=args.listen,
        port=args.port,
        token=args.token,
        cors_origin=args.enable_cors_header,
        max_upload_mb=args.max_upload_size,
        frontend=args.frontend,
    )
    server = Server(executor.registry, executor, config)
    wait_for_preloading()
    try:
        server.run(on_ready=lambda s: _err(f"serving ComfyUI's API on {s.url} (Ctrl+C stops)"))
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.listen}:{args.port}: {exc.strerror or exc}") from None
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    global _command
    parser = build_parser()
    args = parser.parse_args(argv)
    _command = args.command
    # Before any thread starts, so that a run on a worker thread (the window's) gets the same
    # allocator policy as one on the main thread (nodes.diffusion.host_memory).
    from nodes.diffusion.host_memory import use_one_arena

    use_one_arena()
    try:
        from app.settings import Settings

        Settings.load().apply_model_folders()
        if args.command is None or args.command == "gui":
            from app.gui import main as gui_main

            file = getattr(args, "file", None)
            return gui_main(resolve_workflow(file) if file else None)
        from app.batch.command import cmd_batch

        commands = {
            "run": cmd_run,
            "validate": cmd_validate,
            "nodes": cmd_nodes,
            "export": cmd_export,
            "serve": cmd_serve,
            "batch": cmd_batch,
        }
        command = commands[args.command]
        return command(args)
    except UsageError as exc:
        for message in exc.messages:
            _err(message)
        return EXIT_INVALID
    except KeyboardInterrupt:  # Ctrl+C before a command installed its own handler (imports, reading)
        _err("interrupted")
        return EXIT_INTERRUPTED


_command: str | None = None  # the command `main` last ran, for `entry`


def entry() -> None:
    """The `sdgraph` command (and `python -m app`): `main`, then, after `run`, an exit that skips teardown.

    Tearing down an interpreter that holds torch, diffusers and gigabytes of weights (module
    finalisers, freeing every tensor and object one by one) took 1.3-1.7 s after the image was
    written, time a command-line user waits for and nothing needs: every file sdgraph writes is
    complete (written to a temp file and renamed) before its path is printed, and `run` starts no
    thread that writes. So once stdout, stderr and the log handlers are flushed, the process ends.
    The window and the other commands exit normally.
    """
    code = main()
    if _command == "run":
        import contextlib
        import logging
        import os

        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can reach it
                stream.flush()
        logging.shutdown()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    entry()
