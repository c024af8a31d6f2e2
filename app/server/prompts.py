"""A `POST /prompt` body made into a graph sdgraph can run, or ComfyUI's error shapes saying why not.

ComfyUI clients (its web front-end, the Krita plugin, scripts) read a refused prompt as HTTP 400 with
`{"error": {type, message, details, extra_info}, "node_errors": {node id: {errors, dependent_outputs,
class_type}}}`; they outline the named nodes and show `details`. The checks themselves are sdgraph's
(`graph_engine.validation`): this module only reads the API format with the importer the editor uses
and translates each `Problem` into ComfyUI's vocabulary (`required_input_missing`, `value_not_in_list`,
...), keeping sdgraph's sentence in `details` because it says what to do.

As in ComfyUI, a prompt with several outputs runs the outputs that are valid and lists the broken
ones in `node_errors`; only when no output survives is the prompt refused. A node type this install
lacks refuses the whole prompt (ComfyUI does the same), naming every such node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.server.object_info import input_config
from graph_engine import Graph, NodeRegistry, Problem, WorkflowFormatError
from graph_engine.comfy.api_import import import_api
from graph_engine.comfy.common import COMFY_KEY
from graph_engine.model import NodeMode
from graph_engine.node_spec import Input
from graph_engine.validation import analyze

# sdgraph's problem codes → ComfyUI's error type and its short message.
_ERROR_TYPES = {
    "missing_input": ("required_input_missing", "Required input is missing"),
    "missing_value": ("required_input_missing", "Required input is missing"),
    "type_mismatch": ("return_type_mismatch", "Return type mismatch between linked nodes"),
    "bad_link": ("bad_linked_input", "Bad linked input"),
    "unknown_input": ("bad_linked_input", "Bad linked input"),
    "cycle": ("dependency_cycle", "Dependency cycle detected"),
    "unknown_type": ("missing_node_type", "Node type not found"),
}


class PromptRejected(Exception):
    """A prompt that cannot be queued; `body()` is the JSON a ComfyUI client expects with the 400."""

    def __init__(self, error: dict[str, Any], node_errors: dict[str, Any] | None = None) -> None:
        super().__init__(error.get("message", ""))
        self.error = error
        self.node_errors = node_errors or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "node_errors": self.node_errors}


def comfy_error(type: str, message: str, details: str = "", **extra_info: Any) -> dict[str, Any]:
    return {"type": type, "message": message, "details": details, "extra_info": extra_info}


@dataclass
class CheckedPrompt:
    """A prompt ready to queue: the graph, the output nodes that will run, and what was left out."""

    graph: Graph
    targets: list[int]
    outputs: list[str]  # the prompt's ids of `targets`, as ComfyUI lists "outputs to execute"
    node_errors: dict[str, Any] = field(default_factory=dict)


def prompt_key(graph: Graph, node_id: int) -> str:
    """The id the client used for a node ("7", or "12:5" for a flattened subgraph node)."""
    node = graph.nodes.get(node_id)
    original = node.extra.get(COMFY_KEY, {}).get("id") if node is not None else None
    return str(original) if original is not None else str(node_id)


def check_prompt(prompt: Any, registry: NodeRegistry, partial_targets: Any = None) -> CheckedPrompt:
    """Read and validate an API-format prompt; raises `PromptRejected` with ComfyUI's error shape."""
    graph = _read(prompt, registry)
    keys = {prompt_key(graph, nid): nid for nid in graph.nodes}
    missing = [nid for nid, n in graph.nodes.items() if registry.get(n.type) is None]
    if missing:
        node_errors = {
            prompt_key(graph, nid): _node_entry(graph, nid, [_missing_type(graph, nid)], []) for nid in missing
        }
        first = graph.nodes[missing[0]]
        raise PromptRejected(
            comfy_error(
                "missing_node_type",
                f"Node '{first.label}' not found. The node type {first.type!r} is not installed in sdgraph.",
                f"Node ID '#{prompt_key(graph, missing[0])}'",
                node_id=prompt_key(graph, missing[0]),
                class_type=first.type,
                node_title=first.label,
            ),
            node_errors,
        )

    outputs = _outputs(graph, registry, keys, partial_targets)
    analysis = analyze(graph, registry, outputs)
    general = [p for p in analysis.problems if p.node_id is None]
    if general:
        raise PromptRejected(comfy_error("invalid_prompt", general[0].message, "; ".join(p.message for p in general)))
    upstream = {o: _upstream(graph, o) for o in outputs}
    by_node: dict[int, list[Problem]] = {}
    for p in analysis.problems:
        assert p.node_id is not None
        by_node.setdefault(p.node_id, []).append(p)
    node_errors = {}
    for nid, problems in by_node.items():
        dependent = [prompt_key(graph, o) for o in outputs if nid in upstream[o]]
        errors = [_translate(p, graph, registry) for p in problems]
        node_errors[prompt_key(graph, nid)] = _node_entry(graph, nid, errors, dependent)
    valid = [o for o in outputs if not upstream[o] & by_node.keys()]
    if not valid:
        details = "\n".join(
            f"{e['message']}: {e['details']}" if e["details"] else e["message"]
            for entry in node_errors.values()
            for e in entry["errors"]
        )
        raise PromptRejected(
            comfy_error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details), node_errors
        )
    return CheckedPrompt(graph, valid, [prompt_key(graph, o) for o in valid], node_errors)


def _read(prompt: Any, registry: NodeRegistry) -> Graph:
    if not isinstance(prompt, dict) or not prompt:
        raise PromptRejected(
            comfy_error("no_prompt", "No prompt provided", "'prompt' must be an API-format graph: {id: node}")
        )
    for key, entry in prompt.items():
        if not isinstance(entry, dict):
            raise PromptRejected(
                comfy_error("invalid_prompt", "Cannot execute because a node is not an object", f"Node ID '#{key}'")
            )
        if not isinstance(entry.get("class_type"), str):
            raise PromptRejected(
                comfy_error(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{key}'",
                )
            )
    try:
        return import_api(prompt, registry).graph
    except WorkflowFormatError as exc:
        raise PromptRejected(comfy_error("invalid_prompt", "Cannot read the prompt", str(exc))) from None


def _outputs(graph: Graph, registry: NodeRegistry, keys: dict[str, int], partial_targets: Any) -> list[int]:
    outputs = [
        nid
        for nid, n in sorted(graph.nodes.items())
        if n.mode == NodeMode.ACTIVE and (spec := registry.get(n.type)) is not None and spec.output_node
    ]
    if partial_targets is not None:
        if not isinstance(partial_targets, list) or not all(str(t) in keys for t in partial_targets):
            raise PromptRejected(
                comfy_error(
                    "invalid_prompt",
                    "partial_execution_targets must list node ids of the prompt",
                    f"got {partial_targets!r}"[:200],
                )
            )
        chosen = {keys[str(t)] for t in partial_targets}
        outputs = [o for o in outputs if o in chosen]
    if not outputs:
        raise PromptRejected(
            comfy_error("prompt_no_outputs", "Prompt has no outputs", "add an output node (Save Image, Preview Image)")
        )
    return outputs


def _upstream(graph: Graph, node_id: int) -> set[int]:
    """The node and everything it reads from, following links back."""
    feeding: dict[int, list[int]] = {}
    for lk in graph.links.values():
        feeding.setdefault(lk.dst_node, []).append(lk.src_node)
    seen, stack = {node_id}, [node_id]
    while stack:
        for src in feeding.get(stack.pop(), ()):
            if src not in seen:
                seen.add(src)
                stack.append(src)
    return seen


def _node_entry(graph: Graph, nid: int, errors: list[dict[str, Any]], dependent: list[str]) -> dict[str, Any]:
    return {"errors": errors, "dependent_outputs": dependent, "class_type": graph.nodes[nid].type}


def _missing_type(graph: Graph, nid: int) -> dict[str, Any]:
    node = graph.nodes[nid]
    return comfy_error(
        "missing_node_type",
        f"Node '{node.label}' not found",
        f"node type {node.type!r} is not installed in sdgraph",
        class_type=node.type,
    )


def _translate(problem: Problem, graph: Graph, registry: NodeRegistry) -> dict[str, Any]:
    node = graph.nodes[problem.node_id] if problem.node_id is not None else None
    spec = registry.get(node.type) if node is not None else None
    inp = spec.input(problem.input) if spec is not None and problem.input else None
    type_, message = _ERROR_TYPES.get(problem.code, ("custom_validation_failed", "Value failed validation"))
    extra: dict[str, Any] = {}
    if problem.input:
        extra["input_name"] = problem.input
    if inp is not None:
        extra["input_config"] = input_config(inp)
        if node is not None and problem.input in node.values:
            value = node.values[problem.input]
            extra["received_value"] = value
            if problem.code == "bad_value":
                type_, message = _bad_value(inp, value)
    details = f"{problem.input}: {problem.message}" if problem.input else problem.message
    return comfy_error(type_, message, details, **extra)


def _bad_value(inp: Input, value: Any) -> tuple[str, str]:
    """Which of ComfyUI's value errors a refused constant is."""
    if inp.type == "COMBO":
        return "value_not_in_list", "Value not in list"
    if inp.type in ("INT", "FLOAT") and isinstance(value, int | float) and not isinstance(value, bool):
        if inp.min is not None and value < inp.min:
            return "value_smaller_than_min", f"Value {value} smaller than min of {inp.min}"
        if inp.max is not None and value > inp.max:
            return "value_bigger_than_max", f"Value {value} bigger than max of {inp.max}"
        return "custom_validation_failed", "Value failed validation"
    return "invalid_input_type", f"Failed to convert an input value to a {inp.type} value"
