"""sdgraph's node types described the way ComfyUI's `GET /object_info` describes its own.

ComfyUI clients build their widgets from this: each input is `[TYPE, {options}]` (`["INT", {"default":
20, "min": 1, "max": 10000, "step": 1}]`), a choice is `[[choice, ...], {options}]`, a socket is
`["MODEL"]`, listed in declaration order under `required` or `optional`. Titles are the ones ComfyUI
shows (`graph_engine.comfy.titles`), so its users find "CLIP Text Encode (Prompt)". Everything else is
derived from the `NodeSpec`s, so a node declared once is described correctly in the editor, in `sdgraph nodes`
and here. Frontend-only types (notes, reroutes, primitives) are left out, as ComfyUI leaves out its own.
"""

from __future__ import annotations

from typing import Any

from graph_engine import NodeRegistry, NodeSpec
from graph_engine.comfy.titles import comfy_title
from graph_engine.node_spec import MISSING, Input


def input_config(inp: Input) -> list[Any]:
    """One input as ComfyUI writes it: `[type or choices, options]`."""
    options: dict[str, Any] = {}
    if inp.default is not MISSING and inp.is_widget:
        options["default"] = inp.default
    if inp.type in ("INT", "FLOAT"):
        for key in ("min", "max", "step", "round"):
            value = getattr(inp, key)
            if value is not None:
                options[key] = value
    if inp.multiline:
        options["multiline"] = True
    if inp.control_after_generate:
        options["control_after_generate"] = True
    if inp.force_input and inp.type in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"):
        options["forceInput"] = True
    if inp.display == "image_file":
        options["image_upload"] = True
    if inp.display == "slider":
        options["display"] = "slider"
    if inp.tooltip:
        options["tooltip"] = inp.tooltip
    if inp.label:
        options["label"] = inp.label
    head: Any = inp.choice_list() if inp.type == "COMBO" and not inp.force_input else inp.type
    return [head, options] if options else [head]


def describe(spec: NodeSpec, source: str = "") -> dict[str, Any]:
    """A node type in ComfyUI's V1 `object_info` shape."""
    required = {i.id: input_config(i) for i in spec.inputs if not i.optional}
    optional = {i.id: input_config(i) for i in spec.inputs if i.optional}
    info: dict[str, Any] = {
        "input": {"required": required, **({"optional": optional} if optional else {})},
        "input_order": {"required": list(required), **({"optional": list(optional)} if optional else {})},
        "output": [o.type for o in spec.outputs],
        "output_is_list": [False for _ in spec.outputs],
        "output_name": [o.id for o in spec.outputs],
        "name": spec.type,
        "display_name": comfy_title(spec),
        "description": spec.description,
        "python_module": f"custom_nodes.{source}" if source else "nodes",
        "category": spec.category,
        "output_node": spec.output_node,
    }
    return info


def object_info(registry: NodeRegistry, node_type: str | None = None) -> dict[str, Any]:
    """Every runnable node type (or just `node_type`, `{}` when unknown) by name."""
    specs = [registry.get(node_type)] if node_type is not None else list(registry)
    return {s.type: describe(s, registry.source(s.type)) for s in specs if s is not None and not s.virtual}
