"""The one way to declare a node type.

A node type is a `NodeSpec`: typed inputs with stable ids, typed outputs, metadata, and an execute
function. Nodes are written as plain functions wrapped by the `node` decorator:

    @node("EmptyLatentImage", category="latent", display_name="Empty Latent Image",
          inputs=[Int("width", 512, min=16, max=16384, step=8), ...],
          outputs=[Output("LATENT")])
    def empty_latent(ctx, width, height, batch_size):
        return (make_latent(width, height, batch_size),)

Input ids are what workflow files store values under, so they never change once shipped; renaming an
input needs a migration. Widget inputs (INT, FLOAT, STRING, BOOLEAN, COMBO) carry a default and can
still be fed by a wire; socket inputs (MODEL, LATENT, ...) only arrive over a wire.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from graph_engine.types import ANY, WIDGET_TYPES, is_known_type


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

Choices = Sequence[str] | Callable[[], Sequence[str]]


@dataclass(frozen=True)
class Input:
    """One input socket or widget. Build it with `Int`, `Float`, `String`, `Boolean`, `Combo` or `Socket`."""

    id: str
    type: str
    default: Any = MISSING
    min: float | None = None
    max: float | None = None
    step: float | None = None
    round: float | None = None
    choices: Choices | None = None
    multiline: bool = False
    optional: bool = False
    label: str | None = None
    tooltip: str = ""
    # A seed-like INT: the editor offers fixed / increment / decrement / randomize after each run.
    control_after_generate: bool = False
    # A number or text that only arrives over a wire (no inline widget), e.g. Add's operands.
    force_input: bool = False
    # Pixel sizes a VAE can represent must be multiples of 8.
    multiple_of: int | None = None
    # How the editor draws a widget: "" (its type's default) or "slider" (a bounded INT/FLOAT dragged
    # along a track, for values one explores by sweeping, like Add Noise's t), or "image_file" (a COMBO
    # of images in the input folder: the editor adds a file picker, paste and drop, and shows the
    # picture, like Load Image). A hint, never a rule.
    display: str = ""

    @property
    def is_widget(self) -> bool:
        return self.type in WIDGET_TYPES and not self.force_input

    @property
    def display_name(self) -> str:
        return self.label or self.id

    def choice_list(self) -> list[str]:
        """Choices can be computed (model files on disk), so they are read when needed, not at import."""
        if self.choices is None:
            return []
        return list(self.choices() if callable(self.choices) else self.choices)

    def check_value(self, value: Any) -> tuple[Any, str | None]:
        """Coerce a constant value to this input's type; return it and an error text, if any.

        Errors are phrased for a person reading a list of problems about one input.
        """
        t = self.type
        if t == "INT":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return value, f"expected a whole number, got {_short(value)}"
            if isinstance(value, float):
                if not math.isfinite(value) or value != int(value):
                    return value, f"expected a whole number, got {_short(value)}"
                value = int(value)
        elif t == "FLOAT":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return value, f"expected a number, got {_short(value)}"
            value = float(value)
            if not math.isfinite(value):
                return value, f"expected a finite number, got {value}"
        elif t == "STRING":
            if not isinstance(value, str):
                return value, f"expected text, got {_short(value)}"
        elif t == "BOOLEAN":
            if not isinstance(value, bool):
                return value, f"expected true or false, got {_short(value)}"
        elif t == "COMBO":
            if not isinstance(value, str):
                return value, f"expected one of the choices, got {_short(value)}"
            choices = self.choice_list()
            if value not in choices:
                if callable(self.choices):  # files on disk: the closest names are the useful hint
                    close = difflib.get_close_matches(value, choices, n=3, cutoff=0.3)
                    if not choices:
                        return value, f"{value!r} is not available (there is nothing to choose from)"
                    hint = f"closest: {', '.join(map(repr, close))}" if close else _list_preview(choices)
                    return value, f"{value!r} is not available ({hint})"
                return value, f"{value!r} is not one of the choices ({_list_preview(choices)})"
        if self.multiple_of and isinstance(value, int) and value % self.multiple_of:
            return value, f"{value} is not a multiple of {self.multiple_of}"
        if t in ("INT", "FLOAT"):
            if self.min is not None and value < self.min:
                return value, f"{value} is below the minimum {_num(self.min)}"
            if self.max is not None and value > self.max:
                return value, f"{value} is above the maximum {_num(self.max)}"
        return value, None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _list_preview(choices: Sequence[str], limit: int = 8) -> str:
    if not choices:
        return "none available"
    shown = ", ".join(repr(c) for c in choices[:limit])
    return shown + (f", ... {len(choices) - limit} more" if len(choices) > limit else "")


def Int(
    id: str,
    default: int = 0,
    *,
    min: int | None = None,
    max: int | None = None,
    step: int = 1,
    control_after_generate: bool = False,
    **kw: Any,
) -> Input:
    return Input(id, "INT", default, min, max, step, control_after_generate=control_after_generate, **kw)


def Float(
    id: str,
    default: float = 0.0,
    *,
    min: float | None = None,
    max: float | None = None,
    step: float = 0.01,
    round: float | None = None,
    **kw: Any,
) -> Input:
    return Input(id, "FLOAT", float(default), min, max, step, round, **kw)


def String(id: str, default: str = "", *, multiline: bool = False, **kw: Any) -> Input:
    return Input(id, "STRING", default, multiline=multiline, **kw)


def Boolean(id: str, default: bool = False, **kw: Any) -> Input:
    return Input(id, "BOOLEAN", default, **kw)


def Combo(id: str, choices: Choices, default: str | None = None, **kw: Any) -> Input:
    """A choice from a list. A fixed list defaults to its first entry; a computed one (files on disk)
    has no default, so a workflow never silently picks whichever model happens to sort first."""
    if default is None and not callable(choices) and choices:
        default = choices[0]
    return Input(id, "COMBO", MISSING if default is None else default, choices=choices, **kw)


def Socket(id: str, type: str, *, optional: bool = False, **kw: Any) -> Input:
    """An input that only arrives over a wire, whatever its type."""
    return Input(id, type, optional=optional, force_input=type in WIDGET_TYPES, **kw)


@dataclass(frozen=True)
class Output:
    type: str
    id: str = ""
    label: str | None = None

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.type)

    @property
    def display_name(self) -> str:
        return self.label or self.id


@dataclass
class NodeOutput:
    """What an output node returns when it also has something to show (saved files, preview images)."""

    values: tuple[Any, ...] = ()
    ui: dict[str, Any] = field(default_factory=dict)


ExecuteFn = Callable[..., Any]
FingerprintFn = Callable[[Mapping[str, Any]], Hashable]


@dataclass(frozen=True)
class NodeSpec:
    """A node type. `execute(ctx, **inputs)` returns a tuple in output order (or a `NodeOutput`)."""

    type: str
    execute: ExecuteFn
    inputs: tuple[Input, ...] = ()
    outputs: tuple[Output, ...] = ()
    display_name: str = ""
    category: str = "misc"
    description: str = ""
    version: int = 1
    output_node: bool = False
    # Re-runs every time (a random seed, a file that may have changed without a fingerprint).
    nondeterministic: bool = False
    # Never executed; only lives on the canvas (a note).
    virtual: bool = False
    # A virtual node whose one output is its "value": every widget input it feeds gets that value as if
    # typed there (ComfyUI's PrimitiveNode); see `graph_engine.value_sources`.
    value_source: bool = False
    # Extra cache-key material read from constant inputs, e.g. a file's modification time.
    fingerprint: FingerprintFn | None = None
    # Cheap to re-run: the editor may run the graph again by itself (debounced) when one of this node's
    # values changes, so a slider scrubs through results. Only nodes downstream of it re-execute.
    live: bool = False

    def __post_init__(self) -> None:
        if not self.display_name:
            object.__setattr__(self, "display_name", self.type)
        for group, name in ((self.inputs, "input"), (self.outputs, "output")):
            ids = [p.id for p in group]
            dupes = {i for i in ids if ids.count(i) > 1}
            if dupes:
                raise ValueError(f"node {self.type!r}: duplicate {name} ids {sorted(dupes)}")
            for p in group:
                if not is_known_type(p.type):
                    raise ValueError(f"node {self.type!r}: {name} {p.id!r} has unknown type {p.type!r}")
        for inp in self.inputs:
            if inp.is_widget and inp.type != "COMBO" and inp.default is MISSING and not inp.optional:
                raise ValueError(f"node {self.type!r}: widget input {inp.id!r} needs a default")

    @cached_property
    def _inputs_by_id(self) -> dict[str, Input]:
        return {i.id: i for i in self.inputs}

    @cached_property
    def _output_index(self) -> dict[str, int]:
        return {o.id: n for n, o in enumerate(self.outputs)}

    def input(self, input_id: str) -> Input | None:
        return self._inputs_by_id.get(input_id)

    def output(self, output_id: str) -> Output | None:
        index = self._output_index.get(output_id)
        return None if index is None else self.outputs[index]

    def output_index(self, output_id: str) -> int:
        return self._output_index[output_id]

    def default_values(self) -> dict[str, Any]:
        """Values a new node starts with: widget defaults, or the first choice of a combo."""
        values: dict[str, Any] = {}
        for inp in self.inputs:
            if not inp.is_widget:
                continue
            if inp.default is not MISSING:
                values[inp.id] = inp.default
            elif inp.type == "COMBO":
                choices = inp.choice_list()
                if choices:
                    values[inp.id] = choices[0]
        return values

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description, for `sdgraph nodes --json` and the node library panel."""

        def inp(i: Input) -> dict[str, Any]:
            d: dict[str, Any] = {"id": i.id, "type": i.type, "optional": i.optional}
            if i.default is not MISSING:
                d["default"] = i.default
            for key in ("min", "max", "step"):
                if getattr(i, key) is not None and i.type in ("INT", "FLOAT"):
                    d[key] = getattr(i, key)
            if i.type == "COMBO":
                d["choices"] = i.choice_list()
            if i.multiline:
                d["multiline"] = True
            if i.label:
                d["label"] = i.label
            if i.tooltip:
                d["tooltip"] = i.tooltip
            if i.display:
                d["display"] = i.display
            return d

        return {
            "type": self.type,
            "display_name": self.display_name,
            "category": self.category,
            "description": self.description,
            "version": self.version,
            "output_node": self.output_node,
            "nondeterministic": self.nondeterministic,
            "live": self.live,
            "inputs": [inp(i) for i in self.inputs],
            "outputs": [{"id": o.id, "type": o.type, "label": o.display_name} for o in self.outputs],
        }


def node(
    type: str,
    *,
    inputs: Iterable[Input] = (),
    outputs: Iterable[Output] = (),
    display_name: str = "",
    category: str = "misc",
    description: str = "",
    version: int = 1,
    output_node: bool = False,
    nondeterministic: bool = False,
    virtual: bool = False,
    value_source: bool = False,
    fingerprint: FingerprintFn | None = None,
    live: bool = False,
) -> Callable[[ExecuteFn], NodeSpec]:
    """Turn an execute function into a `NodeSpec`; the function's docstring becomes the description."""

    def wrap(fn: ExecuteFn) -> NodeSpec:
        return NodeSpec(
            type=type,
            execute=fn,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            display_name=display_name,
            category=category,
            description=description or (fn.__doc__ or "").strip(),
            version=version,
            output_node=output_node,
            nondeterministic=nondeterministic,
            virtual=virtual or value_source,
            value_source=value_source,
            fingerprint=fingerprint,
            live=live,
        )

    return wrap


class NodeRegistry:
    """The node types a workflow may use, by type name."""

    def __init__(self, specs: Iterable[NodeSpec] = ()) -> None:
        self._specs: dict[str, NodeSpec] = {}
        self._sources: dict[str, str] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: NodeSpec, *, source: str = "") -> NodeSpec:
        """Add a node type. `source` names where a plugin's type came from (a package or a folder), so
        `sdgraph nodes` and the library can say so; built-in types leave it empty."""
        if spec.type in self._specs and self._specs[spec.type] is not spec:
            raise ValueError(f"node type {spec.type!r} is registered twice")
        self._specs[spec.type] = spec
        if source:
            self._sources[spec.type] = source
        return spec

    def source(self, type: str) -> str:
        """Where a type came from: "" for a built-in one, else the plugin's name as it was registered."""
        return self._sources.get(type, "")

    def copy(self) -> NodeRegistry:
        """A registry with the same types and sources that can grow without changing this one."""
        other = NodeRegistry()
        other._specs = dict(self._specs)
        other._sources = dict(self._sources)
        return other

    def get(self, type: str) -> NodeSpec | None:
        return self._specs.get(type)

    def __contains__(self, type: object) -> bool:
        return type in self._specs

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._specs.values(), key=lambda s: (s.category, s.display_name)))

    def __len__(self) -> int:
        return len(self._specs)

    def types(self) -> list[str]:
        return sorted(self._specs)


__all__ = [
    "ANY",
    "MISSING",
    "Boolean",
    "Combo",
    "Float",
    "Input",
    "Int",
    "NodeOutput",
    "NodeRegistry",
    "NodeSpec",
    "Output",
    "Socket",
    "String",
    "node",
]
