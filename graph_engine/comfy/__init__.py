"""ComfyUI (and A1111) workflows in and out: the bridge for people bringing their graphs from elsewhere.

ComfyUI writes two formats (its notes: `shared/notes/comfyui.md` §5):

* the **UI workflow** the frontend saves (schema 0.4 or 1): nodes with positions, links by slot
  position, widget values as a positional list, frontend-only nodes (Note, Reroute, PrimitiveNode);
  read by `ui_import`;
* the **API prompt** the server runs: `{id: {class_type, inputs}}` with values by name; read by
  `api_import`.

Both become our `Graph` with values by input name and links by socket id. Our node types carry
ComfyUI's names and input order, so the mapping needs the node specs: the caller passes its
`NodeRegistry` in (this package imports neither `nodes` nor the app). Types we lack become
placeholders that keep their data and links; the file always opens, and what is missing is said once
in `ComfyImport.notices`. `export` writes both formats back. PNGs carry these as text chunks
(`workflow`, `prompt`); A1111's `parameters` chunk is rebuilt as a txt2img graph by `a1111`.

Entry points: `load_comfy(doc, registry, list_models)`, `load_png_text(chunks, registry, list_models)`,
`to_api(graph, registry)`, `to_ui(graph, registry)`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from typing import Any

from graph_engine.comfy.a1111 import A1111Parameters, a1111_graph, parse_parameters, split_sampler
from graph_engine.comfy.api_import import import_api, looks_like_api
from graph_engine.comfy.common import ComfyImport, plural
from graph_engine.comfy.export import ComfyExportError, output_slot, to_api, to_ui
from graph_engine.comfy.ui_import import import_ui, looks_like_ui
from graph_engine.model import Graph, GraphError
from graph_engine.node_spec import NodeRegistry
from graph_engine.serialization import WorkflowFormatError

ListModels = Callable[[str], list[str]]

# Inputs that name a model file, and the model folder kind `list_models` knows them by.
MODEL_INPUTS = {
    "ckpt_name": "checkpoints",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "vae_name": "vae",
    "lora_name": "loras",
    "control_net_name": "controlnet",
}


def detect_format(doc: Any) -> str | None:
    """ "comfyui-ui", "comfyui-api", "comfyui-request" (a `/prompt` request body) or None."""
    if looks_like_ui(doc):
        return "comfyui-ui"
    if isinstance(doc, dict) and isinstance(doc.get("prompt"), dict) and looks_like_api(doc["prompt"]):
        return "comfyui-request"
    if looks_like_api(doc):
        return "comfyui-api"
    return None


def load_comfy(doc: Any, registry: NodeRegistry, list_models: ListModels | None = None) -> ComfyImport:
    """Any ComfyUI workflow document as our graph; raises `WorkflowFormatError` with where and what."""
    fmt = detect_format(doc)
    if fmt is None:
        raise WorkflowFormatError(
            "not a ComfyUI workflow (expected a UI workflow with 'nodes' and 'links', or an API prompt "
            "of {id: {class_type, inputs}})"
        )
    try:
        if fmt == "comfyui-request":
            workflow = ((doc.get("extra_data") or {}).get("extra_pnginfo") or {}).get("workflow")
            if looks_like_ui(workflow):
                assert isinstance(workflow, dict)
                result = import_ui(workflow, registry)
            else:
                result = import_api(doc["prompt"], registry)
        elif fmt == "comfyui-ui":
            result = import_ui(doc, registry)
        else:
            result = import_api(doc, registry)
    except (GraphError, RecursionError) as exc:  # the reader checks first; this is the last line of defence
        raise WorkflowFormatError(f"not a usable ComfyUI workflow: {exc}") from None
    if list_models is not None:
        result.notices.extend(model_notices(result.graph, registry, list_models))
    return result


def model_notices(graph: Graph, registry: NodeRegistry, list_models: ListModels) -> list[str]:
    """Model files the workflow names that are not on disk, each with the closest local names."""
    cache: dict[str, list[str]] = {}
    missing: dict[tuple[str, str], None] = {}
    for node in sorted(graph.nodes.values(), key=lambda n: n.id):
        spec = registry.get(node.type)
        if spec is None:
            continue
        for inp in spec.inputs:
            kind = MODEL_INPUTS.get(inp.id)
            value = node.values.get(inp.id)
            if kind is None or inp.type != "COMBO" or not isinstance(value, str):
                continue
            if kind not in cache:
                try:
                    cache[kind] = list(list_models(kind))
                except Exception:  # an unreadable model folder must not stop a file from opening
                    cache[kind] = []
            if value not in cache[kind]:
                missing[(kind, value)] = None
    if not missing:
        return []
    parts = []
    for kind, name in missing:
        available = cache[kind]
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.3)
        if close:
            hint = "closest: " + ", ".join(repr(c) for c in close)
        elif available:
            hint = f"nothing similar among {plural(len(available), 'file')}"
        else:
            hint = "none installed"
        parts.append(f"{name!r} ({kind}; {hint})")
    verb = "is" if len(missing) == 1 else "are"
    return [
        f"{plural(len(missing), 'model file')} {verb} not installed: {'; '.join(parts)}. Choose them in their "
        "nodes, or run with --model-alias OLD=NEW"
    ]


def _parse_chunk(chunks: Mapping[str, str], key: str) -> Any:
    try:
        return json.loads(chunks[key])
    except ValueError as exc:
        raise WorkflowFormatError(f"its '{key}' text is not valid JSON ({exc})") from None
    except RecursionError:
        raise WorkflowFormatError(f"its '{key}' text is nested too deeply") from None


def load_png_text(
    chunks: Mapping[str, str], registry: NodeRegistry, list_models: ListModels | None = None
) -> ComfyImport | None:
    """A workflow from PNG text chunks: ComfyUI's `workflow` (preferred: it has positions and notes),
    else its `prompt`, else A1111's `parameters`. None when the image carries none of them."""
    if "workflow" in chunks:
        try:
            return load_comfy(_parse_chunk(chunks, "workflow"), registry, list_models)
        except WorkflowFormatError as exc:
            if "prompt" not in chunks:
                raise WorkflowFormatError(f"its ComfyUI workflow is damaged: {exc}") from None
            result = load_comfy(_parse_chunk(chunks, "prompt"), registry, list_models)
            result.notices.insert(0, f"the embedded UI workflow is damaged ({exc}); opened the API prompt instead")
            return result
    if "prompt" in chunks:
        return load_comfy(_parse_chunk(chunks, "prompt"), registry, list_models)
    if "parameters" in chunks:
        params = parse_parameters(chunks["parameters"])
        installed: dict[str, list[str]] = {}
        if list_models is not None:
            for kind in ("checkpoints", "loras", "vae"):
                try:
                    installed[kind] = list(list_models(kind))
                except Exception:
                    installed[kind] = []
        spec = registry.get("KSampler")
        sampler_input = spec.input("sampler_name") if spec is not None else None
        choices = sampler_input.choice_list() if sampler_input is not None else None
        result = a1111_graph(params, installed, sampler_choices=choices)
        if list_models is not None:
            result.notices.extend(model_notices(result.graph, registry, list_models))
        return result
    return None


__all__ = [
    "MODEL_INPUTS",
    "A1111Parameters",
    "ComfyExportError",
    "ComfyImport",
    "a1111_graph",
    "detect_format",
    "load_comfy",
    "load_png_text",
    "model_notices",
    "output_slot",
    "parse_parameters",
    "split_sampler",
    "to_api",
    "to_ui",
]
