"""What one workflow changes relative to another, in short phrases a person reads at a glance.

The run queue shows, for every waiting run, what it will do differently from the run before it
("KSampler.seed 42 → 43", "CLIPTextEncode.text changed"), so three queued variations can be told apart
without opening them. Only what changes the result is compared: values, wires, node modes, nodes
added or removed. Positions, sizes, colours and groups are layout and are ignored.

Pure data (no Qt, no torch): the inputs are two `Graph`s, usually parsed from run snapshots.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from graph_engine.model import Graph, Node

# A value longer than this (or with a line break) is reported as "changed" rather than old → new.
SHORT_VALUE = 24


def _labels(graph: Graph) -> dict[int, str]:
    """Node labels, with "#id" added where two nodes share one, so each phrase names one node."""
    counts = Counter(n.label for n in graph.nodes.values())
    return {nid: n.label if counts[n.label] == 1 else f"{n.label}#{nid}" for nid, n in graph.nodes.items()}


def _short(value: Any) -> str | None:
    """The value as written in a phrase, or None when it is too long to be worth showing."""
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, str):
        text = repr(value) if len(value) <= SHORT_VALUE - 2 and "\n" not in value else ""
    else:
        text = str(value)
    return text if text and len(text) <= SHORT_VALUE else None


def _value_changes(label: str, old: Node, new: Node) -> list[str]:
    changes = []
    for key in sorted(set(old.values) | set(new.values)):
        missing = object()
        a, b = old.values.get(key, missing), new.values.get(key, missing)
        if a == b:
            continue
        if a is missing or b is missing:
            changes.append(f"{label}.{key} {'set' if a is missing else 'unset'}")
            continue
        sa, sb = _short(a), _short(b)
        changes.append(f"{label}.{key} {sa} → {sb}" if sa is not None and sb is not None else f"{label}.{key} changed")
    return changes


def _wiring(graph: Graph) -> dict[tuple[int, str], tuple[int, str]]:
    """Each wired input and where it is fed from."""
    return {(ln.dst_node, ln.dst_input): (ln.src_node, ln.src_output) for ln in graph.links.values()}


def workflow_changes(before: Graph, after: Graph) -> list[str]:
    """Phrases saying what `after` does differently from `before`; empty when they run the same."""
    old_labels, new_labels = _labels(before), _labels(after)
    changes: list[str] = []
    for nid in sorted(set(before.nodes) - set(after.nodes)):
        changes.append(f"{old_labels[nid]} removed")
    for nid in sorted(set(after.nodes) - set(before.nodes)):
        changes.append(f"{new_labels[nid]} added")
    for nid in sorted(set(before.nodes) & set(after.nodes)):
        old, new = before.nodes[nid], after.nodes[nid]
        label = new_labels[nid]
        if old.type != new.type:
            changes.append(f"{label} replaced")
            continue
        if old.mode != new.mode:
            changes.append(f"{label} {new.mode.value}")
        changes.extend(_value_changes(label, old, new))
    old_wires, new_wires = _wiring(before), _wiring(after)
    for dst in sorted(set(old_wires) | set(new_wires)):
        if dst[0] not in after.nodes or old_wires.get(dst) == new_wires.get(dst):
            continue
        where = f"{new_labels[dst[0]]}.{dst[1]}"
        if dst not in new_wires:
            changes.append(f"{where} unwired")
        else:
            src_node, src_output = new_wires[dst]
            changes.append(f"{where} wired from {new_labels.get(src_node, src_node)}.{src_output}")
    return changes


__all__ = ["workflow_changes"]
