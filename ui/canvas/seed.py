"""What happens to a seed after a run: "control after generate".

An INT input declared with `control_after_generate=True` (a sampler's seed) shows a small selector under
its widget: fixed, increment, decrement or randomize. The choice is a per-node UI setting saved in
`node.extra["control_after_generate"]` (changed through an undoable command). After each run the run
controller calls `apply_seed_control(graph, node_id)`, which moves the seed on, so the next run makes a
new image unless the user chose "fixed".

Run ×N on a graph whose seeds are all "fixed" would make N identical images (every run after the first
comes straight from the cache), so the window asks first (`all_seeds_fixed`) and can run the batch with
`fixed_as="increment"`: each run then steps the fixed seeds as if they were set to increment.

This is pure model code (no Qt) so the run controller and the headless runner can share it.
"""

from __future__ import annotations

import random
from typing import Any

from graph_engine.model import Graph
from graph_engine.node_spec import NodeRegistry
from graph_engine.value_sources import effective_spec

EXTRA_KEY = "control_after_generate"
SEED_MODES = ("fixed", "increment", "decrement", "randomize")
# ComfyUI's default; users coming from it expect a new image per run.
DEFAULT_SEED_MODE = "randomize"
# When an input declares no maximum, stay within what every backend's RNG accepts.
_DEFAULT_MAX = 2**32 - 1


def seed_mode(graph: Graph, node_id: int) -> str:
    mode = graph.node(node_id).extra.get(EXTRA_KEY, DEFAULT_SEED_MODE)
    return mode if mode in SEED_MODES else DEFAULT_SEED_MODE


def seed_inputs(graph: Graph, node_id: int, registry: NodeRegistry) -> list[str]:
    """The node's seed-like inputs a run may step: `control_after_generate` INTs not fed by a wire."""
    spec = registry.get(graph.node(node_id).type)
    if spec is None:
        return []
    linked = graph.inputs_of(node_id)
    return [i.id for i in spec.inputs if i.control_after_generate and i.type == "INT" and i.id not in linked]


def all_seeds_fixed(graph: Graph, registry: NodeRegistry) -> bool:
    """The graph has seeds, and every one of them is "fixed": Run ×N would repeat one image N times."""
    seeded = [nid for nid in graph.nodes if seed_inputs(graph, nid, registry)]
    return bool(seeded) and all(seed_mode(graph, nid) == "fixed" for nid in seeded)


def apply_seed_control(
    graph: Graph,
    node_id: int,
    registry: NodeRegistry | None = None,
    *,
    rng: random.Random | None = None,
    fixed_as: str | None = None,
) -> dict[str, Any]:
    """Step every `control_after_generate` input of the node per its mode; returns the new values.

    Inputs fed by a wire are left alone (the wire decides the value). Values wrap around within the
    input's min/max, so "increment" at the maximum starts over rather than making an invalid graph.
    The edit is not an undo step: it is the run's doing, like ComfyUI's seed widget.
    `registry` defaults to the built-in node types. `fixed_as` (a mode) is what a "fixed" seed does
    this time: Run ×N asked to vary fixed seeds passes "increment".
    """
    if registry is None:
        from nodes import builtin_registry

        registry = builtin_registry()
    node = graph.node(node_id)
    spec = effective_spec(graph, registry, node)  # a Primitive steps like the seed it feeds
    if spec is None:
        return {}
    mode = seed_mode(graph, node_id)
    if mode == "fixed" and fixed_as in SEED_MODES:
        mode = fixed_as
    if mode == "fixed":
        return {}
    rng = rng or random.Random()
    linked = graph.inputs_of(node_id)
    changed: dict[str, Any] = {}
    for inp in spec.inputs:
        if not inp.control_after_generate or inp.type != "INT" or inp.id in linked:
            continue
        lo = int(inp.min) if inp.min is not None else 0
        hi = int(inp.max) if inp.max is not None else _DEFAULT_MAX
        step = int(inp.step or 1)
        value = int(node.values.get(inp.id, inp.default))
        if mode == "increment":
            value = value + step if value + step <= hi else lo
        elif mode == "decrement":
            value = value - step if value - step >= lo else hi
        else:
            value = rng.randint(lo, hi)
        graph.set_value(node_id, inp.id, value)
        changed[inp.id] = value
    return changed
