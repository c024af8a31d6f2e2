"""Batch jobs: one workflow, many value overrides, each with an id that says what it is.

`--sweep 3.seed=1..40` and `--sweep KSampler.cfg=4,6,8` are *axes*; several axes give their cartesian
product, and `--prompts FILE` is one more axis (one prompt per line, put into a named text input). A
job is the tuple of overrides it applies to the base workflow.

A job's id is a readable slug plus a hash of the base workflow's content (node types, values and
links, not positions) and the overrides. So the same command run again gets the same ids, and the
output folder's manifest tells it which jobs are already done, while a changed workflow or a
different value never reuses a name (no file is ever overwritten by a different image).

Every value is checked before any job runs, by the graph validation a run would do (a seed outside
its range, an unknown sampler name), so a typo in the 9,000th value stops the batch at once, not
after an hour. Torch-free: the CLI parses and checks jobs without loading any model.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graph_engine import Graph, NodeRegistry, validate
from graph_engine.serialization import graph_from_dict, graph_to_dict

MAX_JOBS = 1_000_000  # a typo such as 1..1e9 should be refused, not expanded until memory runs out
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


class JobSpecError(Exception):
    """Sweeps or prompts that cannot become jobs; every problem is listed (the CLI exits 2 with them)."""

    def __init__(self, *messages: str) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(messages))


@dataclass(frozen=True)
class Override:
    """One input value of one node, set for one job."""

    node_id: int
    input: str
    value: Any


@dataclass(frozen=True)
class Axis:
    """The values one input takes across the batch; `names` (same length) label prompt lines in ids."""

    node_id: int
    input: str
    values: tuple[Any, ...]
    source: str  # the argument it came from, for messages
    names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Job:
    id: str
    overrides: tuple[Override, ...]
    label: str  # e.g. "seed=3 cfg=4", for progress lines and failure reports

    def to_record(self) -> list[list[Any]]:
        return [[o.node_id, o.input, o.value] for o in self.overrides]


def find_node(graph: Graph, key: str) -> int:
    """A node named by id, title or (when unique) type; ValueError says which nodes a vague key names."""
    if key.isdigit() and int(key) in graph.nodes:
        return int(key)
    matches = [n.id for n in graph.nodes.values() if (n.title or "").lower() == key.lower()]
    if not matches:
        matches = [n.id for n in graph.nodes.values() if n.type.lower() == key.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ValueError(f"no node with id or title {key!r}")
    raise ValueError(f"{key!r} names {len(matches)} nodes ({', '.join(map(str, matches))}); use an id")


def _target(graph: Graph, registry: NodeRegistry, flag: str, target: str) -> tuple[int, str, str]:
    """NODE.INPUT to (node id, input id, input type); the message names the inputs that do exist."""
    node_key, dot, input_id = target.rpartition(".")
    if not dot or not node_key or not input_id:
        raise JobSpecError(f"{flag} {target!r}: expected NODE.INPUT")
    try:
        nid = find_node(graph, node_key)
    except ValueError as exc:
        raise JobSpecError(f"{flag} {target!r}: {exc}") from None
    node = graph.nodes[nid]
    spec = registry.get(node.type)
    if spec is None:
        raise JobSpecError(f"{flag} {target!r}: node {nid} is a {node.type}, which this install does not have")
    inp = spec.input(input_id)
    if inp is None or not inp.is_widget:
        names = ", ".join(i.id for i in spec.inputs if i.is_widget) or "none"
        raise JobSpecError(f"{flag} {target!r}: node {nid} ({node.label}) has no value input {input_id!r} ({names})")
    return nid, input_id, inp.type


def _number(text: str, input_type: str, where: str) -> int | float:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JobSpecError(f"{where}: {text!r} is not a number")
    if input_type == "INT" and not float(value).is_integer():
        raise JobSpecError(f"{where}: {text!r} is not a whole number")
    return int(value) if input_type == "INT" else float(value)


def _range(text: str, input_type: str, where: str) -> list[Any]:
    """`A..B` or `A..B:STEP`, both ends included (a float step lands on B when B is on the grid)."""
    bounds, _, step_text = text.partition(":")
    start_text, _, stop_text = bounds.partition("..")
    start = _number(start_text.strip(), input_type, where)
    stop = _number(stop_text.strip(), input_type, where)
    step = _number(step_text.strip(), input_type, where) if step_text.strip() else 1
    if step <= 0:
        raise JobSpecError(f"{where}: the step must be above 0")
    if stop < start:
        raise JobSpecError(f"{where}: {start_text}..{stop_text} is empty (the end is below the start)")
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count > MAX_JOBS:
        raise JobSpecError(f"{where}: {count} values is more than the {MAX_JOBS} a batch may have")
    if input_type == "INT":
        return [int(start + i * step) for i in range(count)]
    return [round(start + i * step, 10) for i in range(count)]


def parse_values(text: str, input_type: str, where: str) -> list[Any]:
    """Command-line text to typed values: a range for numbers, else a comma-separated list."""
    if input_type in ("INT", "FLOAT") and ".." in text:
        return _range(text, input_type, where)
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise JobSpecError(f"{where}: empty value in {text!r}")
    if input_type in ("INT", "FLOAT"):
        return [_number(p, input_type, where) for p in parts]
    if input_type == "BOOLEAN":
        truth = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False}
        truth["off"] = False
        bad = [p for p in parts if p.lower() not in truth]
        if bad:
            raise JobSpecError(f"{where}: {bad[0]!r} is not true or false")
        return [truth[p.lower()] for p in parts]
    return parts


def parse_sweep(graph: Graph, registry: NodeRegistry, text: str) -> Axis:
    """`NODE.INPUT=RANGE|LIST` (the `--sweep` argument) to an axis of typed values."""
    target, sep, raw = text.partition("=")
    if not sep:
        raise JobSpecError(f"--sweep {text!r}: expected NODE.INPUT=VALUES (e.g. 3.seed=1..40 or KSampler.cfg=4,6,8)")
    nid, input_id, input_type = _target(graph, registry, "--sweep", target.strip())
    values = parse_values(raw, input_type, f"--sweep {text!r}")
    return Axis(nid, input_id, tuple(dict.fromkeys(values)), f"--sweep {text}")


def prompt_axis(graph: Graph, registry: NodeRegistry, target: str, lines: Iterable[str], source: str) -> Axis:
    """One job per non-empty line, put into `target` (NODE.INPUT); ids name the line number."""
    nid, input_id, input_type = _target(graph, registry, "--prompt-input", target)
    if input_type != "STRING":
        raise JobSpecError(f"--prompt-input {target!r}: {input_id} is a {input_type} input, not text")
    numbered = [(i + 1, line.rstrip("\r\n")) for i, line in enumerate(lines)]
    kept = [(n, text) for n, text in numbered if text.strip()]
    if not kept:
        raise JobSpecError(f"{source}: no prompts (one per line)")
    return Axis(nid, input_id, tuple(t for _, t in kept), source, tuple(f"line{n:05}" for n, _ in kept))


def workflow_digest(workflow: Mapping[str, Any], ignore: Iterable[tuple[int, str]] = ()) -> str:
    """What a run computes from: node types, modes, values and links (positions, sizes, groups left out).

    `ignore`: the (node, input) values the jobs set, so the workflow's own value there (the seed it was
    saved with) does not change the ids: asking for seeds 6..8 after 5..7 finds 6 and 7 done.
    """
    skip = set(ignore)

    def values(n: Mapping[str, Any]) -> Any:
        inputs = n.get("inputs")
        if not isinstance(inputs, dict):
            return inputs
        return {k: v for k, v in inputs.items() if (n.get("id"), k) not in skip}

    nodes = [[n.get("id"), n.get("type"), n.get("mode"), values(n)] for n in workflow.get("nodes", [])]
    links = [[lk.get("src"), lk.get("dst")] for lk in workflow.get("links", [])]
    canonical = json.dumps([nodes, links], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _slug_part(axis: Axis, index: int, qualified: bool) -> str:
    name = f"{axis.node_id}.{axis.input}" if qualified else axis.input
    if axis.names is not None:
        return axis.names[index]
    value = axis.values[index]
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{name}={_SLUG_UNSAFE.sub('_', shown)[:24]}"


def _job(overrides: tuple[Override, ...], parts: Sequence[str], digest: str) -> Job:
    """The id: a readable slug of the values plus a hash of the workflow's content and the values."""
    canonical = json.dumps([digest, [[o.node_id, o.input, o.value] for o in overrides]], sort_keys=True)
    key = hashlib.sha256(canonical.encode()).hexdigest()[:10]
    return Job(f"{'_'.join(parts)[:80]}-{key}", overrides, " ".join(parts))


def expand(axes: Sequence[Axis], workflow: Mapping[str, Any]) -> list[Job]:
    """The cartesian product of the axes, in order (the last axis varies fastest), one job per combination."""
    if not axes:
        raise JobSpecError("nothing to batch: give at least one --sweep or --prompts")
    total = math.prod(len(a.values) for a in axes)
    if total > MAX_JOBS:
        raise JobSpecError(f"{total} jobs is more than the {MAX_JOBS} a batch may have")
    digest = workflow_digest(workflow, [(a.node_id, a.input) for a in axes])
    input_names = [a.input for a in axes]
    jobs = []
    for combo in itertools.product(*(range(len(a.values)) for a in axes)):
        overrides = tuple(Override(a.node_id, a.input, a.values[i]) for a, i in zip(axes, combo, strict=True))
        parts = [_slug_part(a, i, input_names.count(a.input) > 1) for a, i in zip(axes, combo, strict=True)]
        jobs.append(_job(overrides, parts, digest))
    return jobs


def run_many_jobs(
    graph: Graph, registry: NodeRegistry, count: int, step_seeds: Callable[[Graph, int], object]
) -> list[Job]:
    """Run ×N as batch jobs: job k has the seeds the k-th of N queued runs would have had.

    `step_seeds(graph, node_id)` moves a node's seeds on as after a run; the editor passes its seed
    control (increment, decrement, randomize, or "fixed" stepped as increment when asked), which this
    module cannot import (it lives with the canvas). It is applied to a copy: the caller decides whether
    the live graph steps too. Runs whose seeds are all the same are one job (the same id), as a batch
    never makes one image twice.
    """
    work = graph_from_dict(json.loads(json.dumps(graph_to_dict(graph))))
    seeded: list[tuple[int, dict[str, Any]]] = []  # node id, its free seed inputs and their defaults
    for nid in sorted(work.nodes):
        spec = registry.get(work.nodes[nid].type)
        linked = work.inputs_of(nid)
        seeds = {} if spec is None else {i.id: i.default for i in spec.inputs if i.control_after_generate}
        if seeds := {name: default for name, default in seeds.items() if name not in linked}:
            seeded.append((nid, seeds))
    if not seeded:
        raise JobSpecError("the workflow has no seed to vary, so every run would make the same image")
    names = [name for _, seeds in seeded for name in seeds]
    digest = workflow_digest(graph_to_dict(graph), [(nid, name) for nid, seeds in seeded for name in seeds])
    jobs: dict[str, Job] = {}
    for _ in range(count):
        overrides = tuple(
            Override(nid, name, work.nodes[nid].values.get(name, default))
            for nid, seeds in seeded
            for name, default in seeds.items()
        )
        parts = [
            f"{o.node_id}.{o.input}={o.value}" if names.count(o.input) > 1 else f"{o.input}={o.value}"
            for o in overrides
        ]
        job = _job(overrides, parts, digest)
        jobs.setdefault(job.id, job)
        for nid, _ in seeded:
            step_seeds(work, nid)
    return list(jobs.values())


FULLY_VALIDATED = 200  # values per axis checked by whole-graph validation; beyond, by the input's own rule


def check_axes(graph: Graph, registry: NodeRegistry, axes: Sequence[Axis]) -> None:
    """Every value of every axis through graph validation, on the base graph with that one value set.

    Axes are independent (each sets its own input), so checking each value once covers every job
    without validating the whole product. A long axis (10,000 seeds) has its first, last, smallest and
    largest values validated with the whole graph and every value by the input's own rule (type, range,
    multiple, choices: what validation applies to a constant), so checking stays well under a second.
    The base graph's own problems are reported too.
    """
    problems: list[str] = [str(p) for p in validate(graph, registry)]
    for axis in axes:
        node = graph.nodes[axis.node_id]
        spec = registry.get(node.type)
        inp = None if spec is None else spec.input(axis.input)
        values: Sequence[Any] = axis.values
        if len(values) > FULLY_VALIDATED and inp is not None:
            for value in values:
                message = inp.check_value(value)[1]
                if message is not None:
                    problems.append(f"{axis.source}: value {value!r}: node {node.id} ({node.label}), "
                                    f"input '{axis.input}': {message}")  # fmt: skip
                if len(problems) > 20:
                    break
            ordered = [v for v in values if isinstance(v, int | float)]
            values = list(dict.fromkeys([values[0], values[-1], *([min(ordered), max(ordered)] if ordered else [])]))
        had, original = axis.input in node.values, node.values.get(axis.input)
        try:
            for value in values:
                node.values[axis.input] = value
                for p in validate(graph, registry):
                    if p.node_id == axis.node_id and p.input == axis.input:
                        problems.append(f"{axis.source}: value {value!r}: {p}")
                if len(problems) > 20:
                    break
        finally:
            if had:
                node.values[axis.input] = original
            else:
                node.values.pop(axis.input, None)
    problems = list(dict.fromkeys(problems))
    if problems:
        raise JobSpecError(*problems[:20], *([f"... and more ({len(problems) - 20} not shown)"] * (len(problems) > 20)))


def job_graph(workflow: Mapping[str, Any], job: Job) -> Graph:
    """The base workflow with this job's values set: a fresh graph, so jobs never see each other's values."""
    graph = graph_from_dict(json.loads(json.dumps(workflow)))
    for o in job.overrides:
        graph.set_value(o.node_id, o.input, o.value)
    return graph


XY_SWEEP = "XYSweep"
SAMPLER_VALUES = ("seed", "steps", "cfg", "sampler_name", "scheduler", "denoise")  # what a KSampler shares with it
CELL_PREFIX = "cell"


def xy_sweep_jobs(graph: Graph, registry: NodeRegistry, key: str) -> tuple[Graph, list[Job]]:
    """An XY Sweep node's cells as batch jobs: (the plain graph they run on, one job per cell, row by row).

    The sweep node loops sampler + decode over its cells inside one node run, so its cells can only
    run in one process, one after another, and a cancelled sweep keeps nothing. Here the node and
    what hangs off it (the grid's SaveImage or preview) are replaced by what it does per cell: a
    KSampler with the sweep's own values, a VAEDecode and a SaveImage, fed from the same wires. Its
    axes become two sweeps of that KSampler, so each cell is an ordinary job of `sdgraph batch`: its
    file is named after the cell (`cfg=7.5_seed=2-<hash>.png`, x before y), finished cells are kept
    and skipped when asked again, and the cells may run on Ray workers. Everything upstream (the
    checkpoint, the prompts) is unchanged and stays cached across jobs, as inside the node.
    The jobs come in the grid's order (rows top to bottom, columns left to right).
    """
    from graph_engine import InputError
    from nodes.sweep import parse_values as sweep_values  # torch-free: the node imports torch when it runs

    try:
        nid = find_node(graph, key)
    except ValueError as exc:
        raise JobSpecError(f"--xy-sweep {key!r}: {exc}") from None
    sweep = graph.nodes[nid]
    spec = registry.get(sweep.type)
    if sweep.type != XY_SWEEP or spec is None:
        raise JobSpecError(f"--xy-sweep {key!r}: node {nid} ({sweep.label}) is a {sweep.type}, not an XY Sweep")
    values = {i.id: sweep.values.get(i.id, i.default) for i in spec.inputs if i.is_widget}
    x_input, y_input = str(values["x_input"]), str(values["y_input"])
    try:
        xs = sweep_values("x", x_input, str(values["x_values"]))
        ys = [] if y_input == "none" else sweep_values("y", y_input, str(values["y_values"]))
    except InputError as exc:
        raise JobSpecError(f"--xy-sweep {key!r}: node {nid} ({sweep.label}), input '{exc.input_id}': {exc}") from None
    if y_input == x_input:
        raise JobSpecError(f"--xy-sweep {key!r}: x and y both sweep {x_input}")
    feeds = graph.inputs_of(nid)
    for name in (x_input, y_input):
        if name in feeds:
            raise JobSpecError(f"--xy-sweep {key!r}: {name} is swept but fed by a wire; disconnect it")

    work = graph_from_dict(json.loads(json.dumps(graph_to_dict(graph))))
    downstream, frontier = {nid}, [nid]
    while frontier:
        current = frontier.pop()
        for link in list(work.links.values()):
            if link.src_node == current and link.dst_node not in downstream:
                downstream.add(link.dst_node)
                frontier.append(link.dst_node)
    pos = sweep.pos
    for gone in downstream:
        work.remove_node(gone)
    sampler = work.add_node("KSampler", {k: values[k] for k in SAMPLER_VALUES}, pos=pos).id
    decode = work.add_node("VAEDecode", pos=(pos[0] + 320, pos[1])).id
    save = work.add_node("SaveImage", {"filename_prefix": CELL_PREFIX}, pos=(pos[0] + 560, pos[1])).id
    for name, link in feeds.items():
        if name == "vae":
            work.add_link(link.src_node, link.src_output, decode, "vae", link.type)
        else:
            work.add_link(link.src_node, link.src_output, sampler, name, link.type)
    work.add_link(sampler, "LATENT", decode, "samples", "LATENT")
    work.add_link(decode, "IMAGE", save, "images", "IMAGE")

    source = f"XY Sweep node {nid}"
    axes = [Axis(sampler, x_input, tuple(xs), f"{source} x")]
    if ys:
        axes.append(Axis(sampler, y_input, tuple(ys), f"{source} y"))
    check_axes(work, registry, axes)
    by_column = expand(axes, graph_to_dict(work))  # the last axis (y) varies fastest
    rows = max(1, len(ys))
    return work, [by_column[x * rows + y] for y in range(rows) for x in range(len(xs))]
