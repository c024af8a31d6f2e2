"""Shared helpers for the ComfyUI tests: where the anchor files are, and the "executable view" of a graph.

The executable view is what a run (or a ComfyUI server) sees: active, non-virtual nodes; for each,
its type, its widget values by name (defaults filled in; `None` for a placeholder, whose positional
values have no names in the UI format) and its links as `input -> (source ComfyUI id, output slot)`,
looked through reroutes and bypassed nodes. A widget fed by a Primitive shows the primitive's value, as
a run gives it (and as the API format inlines it). A UI file and its API twin must give the same view:
the UI file's Notes, PrimitiveNodes, Reroutes and muted nodes do not appear in it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from graph_engine import Graph, NodeMode, NodeRegistry
from graph_engine.comfy import output_slot
from graph_engine.comfy.export import comfy_key
from graph_engine.node_spec import MISSING
from graph_engine.validation import Source, resolve_source
from graph_engine.value_sources import fed_values
from tests.support.shared import ANCHORS, anchor

__all__ = [
    "ANCHORS",
    "ANCHOR_FILES",
    "COMFY_FILES",
    "OWN_FILES",
    "OWN_PAIRS",
    "PAIRS",
    "anchor",
    "anchor_or_own",
    "comfy_path",
    "comfy_text",
    "executable_view",
    "read_anchor",
    "read_anchor_or_own",
    "read_comfy",
]

# The anchors are not in a plain clone: the lists are then empty and `read_anchor` skips the test asking.
ANCHOR_FILES = sorted(ANCHORS.glob("*.json"))
PAIRS = sorted(
    {p.name.split(".")[0] for p in ANCHORS.glob("*.workflow.json")}
    & {p.name.split(".")[0] for p in ANCHORS.glob("*.api.json")}
)


# ComfyUI files the project wrote itself (ComfyUI's formats, our graphs): always here, so the generic checks
# (opens, twins agree, exports, round trips, fuzzing) run on a plain clone too.
TESTS = Path(__file__).resolve().parents[1]
OWN_FILES = sorted(
    p
    for folder in (TESTS / "comfy" / "own", TESTS / "comfy" / "toolbox", TESTS / "nodes" / "data")
    for p in folder.glob("*.*.json")
)
OWN_PAIRS = sorted(
    {p.name.split(".")[0] for p in OWN_FILES if p.name.endswith(".workflow.json")}
    & {p.name.split(".")[0] for p in OWN_FILES if p.name.endswith(".api.json")}
)
COMFY_FILES = [*ANCHOR_FILES, *OWN_FILES]


def read_anchor(name: str) -> Any:
    return json.loads(anchor(name).read_text(encoding="utf-8"))


def read_anchor_or_own(anchor_name: str, own_name: str) -> Any:
    """The anchor when it is here, else the project's own file of the same shape.

    `own/txt2img_sd15.*.json` is the shipped txt2img template exported by sdgraph, numbered as ComfyUI's
    default graph (KSampler 3, checkpoint 4, latent 5, prompts 6 and 7, decode 8, save 9; link 1 the
    model), so tests that address nodes and links by id run on a plain clone too.
    """
    return json.loads(anchor_or_own(anchor_name, own_name).read_text(encoding="utf-8"))


def anchor_or_own(anchor_name: str, own_name: str) -> Path:
    """The path `read_anchor_or_own` reads."""
    return ANCHORS / anchor_name if (ANCHORS / anchor_name).is_file() else comfy_path(own_name)


def comfy_path(name: str) -> Path:
    """One of the project's own ComfyUI files by name, else the anchor of that name (skips when absent)."""
    return next((p for p in OWN_FILES if p.name == name), None) or anchor(name)


def comfy_text(name: str) -> str:
    return comfy_path(name).read_text(encoding="utf-8")


def read_comfy(name: str) -> Any:
    """One of the project's own ComfyUI files by name, else the anchor of that name."""
    own = next((p for p in OWN_FILES if p.name == name), None)
    return json.loads(own.read_text(encoding="utf-8")) if own is not None else read_anchor(name)


def executable_view(graph: Graph, registry: NodeRegistry) -> dict[str, tuple[str, dict[str, Any] | None, dict]]:
    view: dict[str, tuple[str, dict[str, Any] | None, dict]] = {}
    for node in graph.nodes.values():
        spec = registry.get(node.type)
        if node.mode != NodeMode.ACTIVE or (spec is not None and spec.virtual):
            continue
        links: dict[str, tuple[str, int | None]] = {}
        fed = fed_values(graph, registry, node.id)
        for name, lk in graph.inputs_of(node.id).items():
            if name in fed:
                continue
            src = resolve_source(graph, lk.src_node, lk.src_output, lk.type)
            if isinstance(src, Source):
                links[name] = (
                    str(comfy_key(graph.nodes[src.node_id])),
                    output_slot(graph, registry, src.node_id, src.output_id),
                )
        values = None
        if spec is not None:
            own = {**node.values, **fed}
            values = {
                i.id: own.get(i.id, i.default)
                for i in spec.inputs
                if i.is_widget and i.id not in links and own.get(i.id, i.default) is not MISSING
            }
        view[str(comfy_key(node))] = (node.type, values, links)
    return view
