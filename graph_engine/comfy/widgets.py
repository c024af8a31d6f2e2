"""ComfyUI's positional `widgets_values` ↔ our inputs by name.

ComfyUI's UI format stores a node's widget values as a bare list, in the order the node declares its
widget inputs (INT, FLOAT, STRING, BOOLEAN, COMBO; sockets such as MODEL are not in it). Our node types
keep ComfyUI's names and declared order, so the list maps onto `spec.inputs` with `is_widget`, in order.

Two kinds of frontend-only entries sit in the list too and are skipped:

* the `control_after_generate` selector right after a seed-like INT (`Input.control_after_generate`):
  "fixed" | "increment" | "decrement" | "randomize", or a boolean in very old files (true meant
  randomize). It is kept in `node.extra["control_after_generate"]`, where our editor reads it.
* per-type extras from `EXTRA_UI_WIDGETS`, e.g. LoadImage's upload button, saved as "image".

A control entry is only skipped when the value there looks like one, so a file written before the
selector existed still lines up. Values left over at the end are returned, not dropped, so the caller
can keep them and tell the user that the file and this version disagree about the node's widgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from graph_engine.node_spec import MISSING, NodeSpec

CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
CONTROL_EXTRA_KEY = "control_after_generate"
# ComfyUI's default when a file has no control value; also what legacy `true` meant.
DEFAULT_CONTROL = "randomize"

# type -> {input id: name of a frontend-only widget saved right after it}. The positional rule covers
# everything else; add a type here only when its saved list has entries that no input explains.
EXTRA_UI_WIDGETS: dict[str, dict[str, tuple[str, Any]]] = {
    "LoadImage": {"image": ("upload", "image")},
}


@dataclass(frozen=True)
class Slot:
    """One entry of a node's widgets_values: a real input, a seed's control selector, or a UI extra."""

    kind: Literal["input", "control", "ui"]
    name: str
    ui_value: Any = None


def widget_layout(spec: NodeSpec) -> list[Slot]:
    """The order ComfyUI's frontend saves this node type's widgets in."""
    extras = EXTRA_UI_WIDGETS.get(spec.type, {})
    slots: list[Slot] = []
    for inp in spec.inputs:
        if not inp.is_widget:
            continue
        slots.append(Slot("input", inp.id))
        if inp.control_after_generate:
            slots.append(Slot("control", inp.id))
        if inp.id in extras:
            name, value = extras[inp.id]
            slots.append(Slot("ui", name, value))
    return slots


def normalize_control(value: Any) -> str | None:
    """A saved control value as one of `CONTROL_VALUES`, or None when it is not a control value."""
    if isinstance(value, bool):
        return DEFAULT_CONTROL if value else "fixed"
    if isinstance(value, str) and value in CONTROL_VALUES:
        return value
    return None


@dataclass
class WidgetRead:
    values: dict[str, Any] = field(default_factory=dict)
    control: str | None = None
    leftovers: list[Any] = field(default_factory=list)
    # How many real widget inputs got no value from the file (the list was short).
    short_by: int = 0


def read_widgets_values(spec: NodeSpec, saved: list[Any]) -> WidgetRead:
    """Name each positional value. JSON null never is a valid widget value, so it means "use the default"."""
    layout = widget_layout(spec)
    out = WidgetRead()
    pos = 0
    remaining_inputs = sum(1 for s in layout if s.kind == "input")
    for slot in layout:
        if slot.kind == "input":
            remaining_inputs -= 1
            if pos >= len(saved):
                inp = spec.input(slot.name)
                if inp is None or not inp.optional:  # optional settings come later in a node's life
                    out.short_by += 1
                continue
            value = saved[pos]
            pos += 1
            if isinstance(value, dict) and set(value) == {"__value__"}:
                value = value["__value__"]
            if value is not None:
                out.values[slot.name] = value
        elif slot.kind == "control":
            if pos < len(saved) and normalize_control(saved[pos]) is not None:
                out.control = normalize_control(saved[pos])
                pos += 1
        elif len(saved) - pos > remaining_inputs:  # a UI extra is present only if the list has room for it
            pos += 1
    out.leftovers = list(saved[pos:])
    return out


def write_widgets_values(spec: NodeSpec, values: dict[str, Any], control: Any) -> list[Any]:
    """The positional list ComfyUI's frontend expects, control selectors and UI extras included."""
    saved: list[Any] = []
    for slot in widget_layout(spec):
        if slot.kind == "input":
            inp = spec.input(slot.name)
            value = values.get(slot.name, MISSING if inp is None else inp.default)
            saved.append(None if value is MISSING else value)
        elif slot.kind == "control":
            saved.append(normalize_control(control) or DEFAULT_CONTROL)
        else:
            saved.append(slot.ui_value)
    return saved
