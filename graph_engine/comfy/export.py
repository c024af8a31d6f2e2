"""Writing our graph in ComfyUI's formats: API (to queue on a ComfyUI server) and UI (schema 0.4).

API: one entry per node that would run: muted nodes and virtual ones (notes) are left out, a bypassed
node's consumers are wired to its matching input (the same rule our validator uses), widget values
are written by name (lists wrapped as `{"__value__": [...]}`), links as `["<id>", slot]`. An input
whose source is muted is left out, as ComfyUI's frontend does; the server then names it.

UI: every node, with widgets_values positional again (the seed's control value after the seed,
LoadImage's upload entry), links as 6-arrays whose slots index the exported inputs/outputs lists,
groups, and the ComfyUI data import kept in `extra["comfy"]`. Import → export → import gives the same
graph; Primitives are written as ComfyUI's PrimitiveNode (linked to the consumers' converted widgets,
which also hold its value) and Reroutes as Reroute; in API format both vanish (a primitive's value is
inlined into each input it feeds, a link through reroutes comes from the real source). What changes is
listed in `ui_import` and here: litegraph's required
node keys (size, flags, order, properties) are filled in when the graph had none (a graph made in
sdgraph or read from the API format), and a missing seed control becomes "randomize".
"""

from __future__ import annotations

from typing import Any

from graph_engine.comfy.common import COMFY_KEY, OUR_NOTE, PRIMITIVE, SDGRAPH_EXTRA_KEY
from graph_engine.comfy.ui_import import output_names, unique_names
from graph_engine.comfy.widgets import CONTROL_EXTRA_KEY, write_widgets_values
from graph_engine.model import Graph, Link, Node, NodeMode
from graph_engine.node_spec import MISSING, NodeRegistry, NodeSpec
from graph_engine.reroute import REROUTE
from graph_engine.types import ANY
from graph_engine.validation import Source, resolve_source
from graph_engine.value_sources import VALUE, fed_input, fed_values

_OWN_EXTRA = {COMFY_KEY, CONTROL_EXTRA_KEY}
_NOT_NODE_KEYS = {"id", "mode", "inputs", "outputs", "widgets_values", "type", "extra_widgets_values", "api"}


class ComfyExportError(ValueError):
    """The graph holds something ComfyUI's format cannot express; the message says which node and why."""


def comfy_key(node: Node) -> str | int:
    """The id ComfyUI knew the node by ("12:5" for a flattened subgraph node), else ours."""
    original = node.extra.get(COMFY_KEY, {}).get("id")
    return original if isinstance(original, str) else node.id


def placeholder_output_names(node: Node) -> list[str]:
    outputs = node.extra.get(COMFY_KEY, {}).get("outputs", [])
    return unique_names(output_names([o for o in outputs if isinstance(o, dict)]))


def output_slot(graph: Graph, registry: NodeRegistry, node_id: int, output_id: str) -> int | None:
    """ComfyUI addresses outputs by position: ours from the spec's order, a placeholder's from its file."""
    node = graph.nodes[node_id]
    spec = registry.get(node.type)
    if spec is not None:
        return spec.output_index(output_id) if spec.output(output_id) is not None else None
    names = placeholder_output_names(node)
    return names.index(output_id) if output_id in names else None


def _wrap(value: Any) -> Any:
    return {"__value__": value} if isinstance(value, list) else value


# ---- API ---------------------------------------------------------------------------------------


def to_api(graph: Graph, registry: NodeRegistry) -> dict[str, Any]:
    """The prompt ComfyUI's `/prompt` endpoint takes for this graph."""
    prompt: dict[str, Any] = {}
    for node in sorted(graph.nodes.values(), key=lambda n: n.id):
        spec = registry.get(node.type)
        if node.mode != NodeMode.ACTIVE or (spec is not None and spec.virtual):
            continue
        comfy = node.extra.get(COMFY_KEY, {})
        inputs: dict[str, Any] = {}
        if spec is None:
            if comfy.get("widgets_values") and not node.values:
                raise ComfyExportError(
                    f"node {node.id} ({node.label}): its type {node.type!r} is not installed, so the names of its "
                    "settings are unknown and it cannot be written in API format; export the UI format instead"
                )
            inputs.update({k: _wrap(v) for k, v in node.values.items()})
        else:
            linked = graph.inputs_of(node.id)
            for inp in spec.inputs:
                if inp.is_widget and inp.id not in linked:
                    value = node.values.get(inp.id, inp.default)
                    # An optional setting at its default is left out, as ComfyUI's own prompts do for
                    # settings older versions of a node did not have (its function then uses the default).
                    if value is not MISSING and not (inp.optional and value == inp.default):
                        inputs[inp.id] = _wrap(value)
            inputs.update({k: _wrap(v) for k, v in node.values.items() if spec.input(k) is None})
        inlined = fed_values(graph, registry, node.id)
        for lk in sorted(graph.inputs_of(node.id).values(), key=lambda lk: lk.id):
            if lk.dst_input in inlined:  # a primitive's value, as ComfyUI's frontend writes it
                inputs[lk.dst_input] = _wrap(inlined[lk.dst_input])
                continue
            src = resolve_source(graph, lk.src_node, lk.src_output, lk.type)
            if not isinstance(src, Source):
                continue
            slot = output_slot(graph, registry, src.node_id, src.output_id)
            if slot is None:
                raise ComfyExportError(
                    f"node {node.id} ({node.label}), input '{lk.dst_input}': node {src.node_id} has no output "
                    f"{src.output_id!r}"
                )
            inputs[lk.dst_input] = [str(comfy_key(graph.nodes[src.node_id])), slot]
        entry = {"inputs": inputs, "class_type": node.type, "_meta": {"title": node.title or node.type}}
        entry.update(comfy.get("api", {}))  # keys such as `is_changed` that the API file had
        prompt[str(comfy_key(node))] = entry
    return prompt


# ---- UI ----------------------------------------------------------------------------------------


def _mode(node: Node) -> int:
    if node.mode == NodeMode.MUTE:
        return 2
    if node.mode == NodeMode.BYPASS:
        return 4
    raw = node.extra.get(COMFY_KEY, {}).get("mode")
    return raw if raw in (1, 3) else 0


def _ui_node(
    graph: Graph, registry: NodeRegistry, node: Node, order: int
) -> tuple[dict[str, Any], dict[str, int], list[str]]:
    """One node object, plus its input-name → slot map and output names (for the links table)."""
    spec = registry.get(node.type)
    comfy = node.extra.get(COMFY_KEY, {})
    links_in = graph.inputs_of(node.id)
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    slots_override: dict[str, int] = {}
    if spec is not None and node.type == OUR_NOTE and spec.virtual:
        node_type = comfy.get("type", OUR_NOTE)
        widgets: list[Any] | None = [node.values.get("text", "")]
        out_names: list[str] = []
    elif spec is not None and spec.value_source:
        node_type = PRIMITIVE
        inputs, outputs, widgets = _primitive_parts(graph, registry, node)
        out_names = [o.id for o in spec.outputs]
    elif spec is not None and node.type == REROUTE:
        node_type = node.type
        src = links_in.get(spec.inputs[0].id)
        typ = src.type if src is not None else "*"
        inputs = [{"name": "", "type": "*"}]
        outputs = [{"name": "", "type": typ}]
        out_names = [o.id for o in spec.outputs]
        slots_override = {spec.inputs[0].id: 0}
        widgets = comfy.get("widgets_values")
    elif spec is not None:
        node_type = node.type
        inputs = _known_inputs(spec, links_in)
        out_names = [o.id for o in spec.outputs]
        outputs = [{"name": o.id, "type": o.type} for o in spec.outputs]
        # A widget fed by a primitive holds the primitive's value, as ComfyUI's frontend keeps it.
        values = {**node.values, **fed_values(graph, registry, node.id)}
        widgets = write_widgets_values(spec, values, node.extra.get(CONTROL_EXTRA_KEY))
        widgets += list(comfy.get("extra_widgets_values", []))
        if not any(i.is_widget for i in spec.inputs):
            widgets = None
    else:
        node_type = node.type
        inputs = [dict(s) for s in comfy.get("inputs", []) if isinstance(s, dict)]
        listed = {(s.get("widget") or {}).get("name") or s.get("name") for s in inputs}
        inputs += [{"name": name, "type": lk.type} for name, lk in sorted(links_in.items()) if name not in listed]
        outputs = [dict(s) for s in comfy.get("outputs", []) if isinstance(s, dict)]
        out_names = placeholder_output_names(node)
        widgets = comfy.get("widgets_values", list(node.values.values()) or None)

    slots: dict[str, int] = {}
    for i, s in enumerate(inputs):
        name = (s.get("widget") or {}).get("name") or s["name"] or (spec.inputs[0].id if spec is not None else "")
        slots[name] = i
        s["link"] = links_in[name].id if name in links_in else None
    for i, s in enumerate(outputs):
        links = [lk.id for lk in graph.links_from(node.id, out_names[i])] if i < len(out_names) else []
        s["links"] = sorted(links)
        s["slot_index"] = i
    slots.update(slots_override)

    d: dict[str, Any] = {
        "id": comfy_key(node),
        "type": node_type,
        "pos": [node.pos[0], node.pos[1]],
        "size": list(node.size) if node.size else _default_size(node, inputs, outputs),
        "flags": dict(node.flags),
        "order": order,
        "mode": _mode(node),
    }
    if inputs:
        d["inputs"] = inputs
    if outputs:
        d["outputs"] = outputs
    if node.title:
        d["title"] = node.title
    if node.color:
        d["color"] = node.color
    d["properties"] = {"Node name for S&R": node_type}
    d.update({k: v for k, v in comfy.items() if k not in _NOT_NODE_KEYS})
    own = {k: v for k, v in node.extra.items() if k not in _OWN_EXTRA}
    if own:
        d[SDGRAPH_EXTRA_KEY] = own
    if widgets is not None:
        d["widgets_values"] = widgets
    return d, slots, out_names


def _primitive_parts(
    graph: Graph, registry: NodeRegistry, node: Node
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Any]]:
    """A Primitive as ComfyUI's PrimitiveNode: no inputs, one output typed and named like the widget it
    feeds (with `widget.name`), and widgets_values [value, control, ...]. A number or combo primitive
    always has a control value in ComfyUI ("fixed" unless chosen); a seed's defaults to "randomize",
    as our seed widgets do."""
    fed = fed_input(graph, registry, node.id)
    typ = fed.type if fed is not None else "*"
    output: dict[str, Any] = {"name": typ if fed is not None else "connect to widget input", "type": typ}
    target = _first_widget_name(graph, registry, node.id)
    if target is not None:
        output["widget"] = {"name": target}
    widgets: list[Any] = [node.values.get(VALUE)]
    control = node.extra.get(CONTROL_EXTRA_KEY)
    if control is None and fed is not None and fed.type in ("INT", "FLOAT", "COMBO"):
        control = "randomize" if fed.control_after_generate else "fixed"
    if control is not None:
        widgets.append(control)
    widgets += list(node.extra.get(COMFY_KEY, {}).get("extra_widgets_values", []))
    return [], [output], widgets


def _first_widget_name(graph: Graph, registry: NodeRegistry, node_id: int) -> str | None:
    """The name of the first widget input a primitive feeds directly (ComfyUI's `outputs[0].widget`)."""
    for lk in sorted(graph.links_from(node_id), key=lambda lk: lk.id):
        consumer = graph.nodes.get(lk.dst_node)
        spec = registry.get(consumer.type) if consumer is not None else None
        inp = spec.input(lk.dst_input) if spec is not None else None
        if inp is not None and inp.is_widget:
            return inp.id
    return None


def _default_size(node: Node, inputs: list[Any], outputs: list[Any]) -> list[float]:
    """litegraph needs a size; a Reroute's is ComfyUI's small pill."""
    if node.type == REROUTE:
        return [75.0, 26.0]
    return [320.0, 60.0 + 22.0 * max(len(inputs), len(outputs), 1)]


def _known_inputs(spec: NodeSpec, links_in: dict[str, Link]) -> list[dict[str, Any]]:
    """Sockets in declared order, then widgets fed by a wire (ComfyUI's "converted widgets")."""
    inputs: list[dict[str, Any]] = [{"name": i.id, "type": i.type} for i in spec.inputs if not i.is_widget]
    for inp in spec.inputs:
        if inp.is_widget and inp.id in links_in:
            inputs.append({"name": inp.id, "type": inp.type, "widget": {"name": inp.id}})
    known = {i.id for i in spec.inputs}
    inputs += [{"name": name, "type": lk.type} for name, lk in sorted(links_in.items()) if name not in known]
    return inputs


def _link_type(graph: Graph, registry: NodeRegistry, lk: Link) -> str:
    """The link's type, ComfyUI's "*" for ANY; a primitive's link made in sdgraph takes the widget's type."""
    if lk.type != ANY:
        return lk.type
    spec = registry.get(graph.nodes[lk.dst_node].type)
    inp = spec.input(lk.dst_input) if spec is not None else None
    return inp.type if inp is not None and inp.type != ANY else "*"


def to_ui(graph: Graph, registry: NodeRegistry) -> dict[str, Any]:
    """The workflow ComfyUI's frontend loads (schema 0.4); see the module docstring for what it keeps."""
    nodes: list[dict[str, Any]] = []
    input_slots: dict[int, dict[str, int]] = {}
    output_names: dict[int, list[str]] = {}
    for order, node in enumerate(sorted(graph.nodes.values(), key=lambda n: n.id)):
        d, slots, outs = _ui_node(graph, registry, node, order)
        nodes.append(d)
        input_slots[node.id], output_names[node.id] = slots, outs
    links = []
    for lk in sorted(graph.links.values(), key=lambda lk: lk.id):
        outs = output_names[lk.src_node]
        if lk.src_output not in outs:
            src = graph.nodes[lk.src_node]
            raise ComfyExportError(f"link {lk.id}: node {src.id} ({src.label}) has no output {lk.src_output!r}")
        links.append(
            [
                lk.id,
                comfy_key(graph.nodes[lk.src_node]),
                outs.index(lk.src_output),
                comfy_key(graph.nodes[lk.dst_node]),
                input_slots[lk.dst_node][lk.dst_input],
                _link_type(graph, registry, lk),
            ]
        )
    groups = []
    for g in sorted(graph.groups.values(), key=lambda g: g.id):
        gd: dict[str, Any] = {"id": g.id, "title": g.title, "bounding": list(g.bounding)}
        if g.color:
            gd["color"] = g.color
        gd.update(g.extra.get(COMFY_KEY, {}))
        groups.append(gd)
    doc: dict[str, Any] = {
        "last_node_id": max([graph.next_node_id - 1, *graph.nodes]),
        "last_link_id": max([graph.next_link_id - 1, *graph.links]),
        "nodes": nodes,
        "links": links,
        "groups": groups,
        "config": {},
        "extra": {},
    }
    doc.update(graph.extra.get(COMFY_KEY, {}))
    own = {k: v for k, v in graph.extra.items() if k != COMFY_KEY}
    if own:
        doc["extra"] = {**doc.get("extra", {}), SDGRAPH_EXTRA_KEY: own}
    doc["version"] = 0.4
    return doc
