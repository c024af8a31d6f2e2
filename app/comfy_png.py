"""ComfyUI and A1111 files for `open_document`: the importer the app plugs into `documents.IMPORTERS`.

`graph_engine.comfy` does the reading but knows neither our node types nor where models live; this
module hands it both (`app.plugins.app_registry()`, the built-in nodes and the node packs, and
`nodes.folders.list_models`) so the runner, the validator and the editor open ComfyUI JSON (UI or API
format), ComfyUI PNGs (`workflow` / `prompt` chunks) and A1111 PNGs (`parameters`) the same way, with
the same notices.

It also writes the other direction for `sdgraph export`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.workflow_formats import COMFY_API, COMFY_UI, Document
from graph_engine import Graph
from graph_engine.serialization import atomic_write

EXPORT_FORMATS = (COMFY_UI, COMFY_API)

_SOURCES = {"comfyui-ui": "comfyui", "comfyui-api": "comfyui-api", "a1111": "a1111-png"}


def comfy_importer(doc: Any, chunks: dict[str, str]) -> Document | None:
    """A Document from a ComfyUI JSON document, or from PNG chunks (ComfyUI or A1111); None if neither."""
    from app.plugins import app_registry
    from graph_engine import comfy
    from nodes.folders import list_models

    registry = app_registry()
    if doc is not None:
        if comfy.detect_format(doc) is None:
            return None
        result = comfy.load_comfy(doc, registry, list_models)
        return Document(result.graph, _SOURCES.get(result.format, result.format), result.notices)
    if not chunks:
        return None
    found = comfy.load_png_text(chunks, registry, list_models)
    if found is None:
        return None
    source = "a1111-png" if found.format == "a1111" else "comfyui-png"
    return Document(found.graph, source, found.notices)


def export_graph(graph: Graph, fmt: str, out: Path) -> None:
    """Write `graph` as ComfyUI UI (`comfy-ui`) or API (`comfy-api`) JSON, atomically.

    Raises ValueError (`ComfyExportError`) when the graph cannot be expressed in that format, OSError
    when the file cannot be written.
    """
    from app.plugins import app_registry
    from graph_engine import comfy

    registry = app_registry()
    if fmt == COMFY_UI:
        doc = comfy.to_ui(graph, registry)
    elif fmt == COMFY_API:
        doc = comfy.to_api(graph, registry)
    else:
        raise ValueError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    atomic_write(out, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


IMPORTERS = [comfy_importer]
