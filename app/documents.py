"""Opening anything that holds a workflow (our JSON, PNGs with a workflow in their text chunks), and
writing a workflow back in the format it came in.

One entry point, `open_document`, for the runner, the validator and the editor, so all three accept
the same files. Formats from other programs (ComfyUI, A1111) plug in through `IMPORTERS`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.comfy_png import IMPORTERS as COMFY_IMPORTERS
from app.comfy_png import export_graph
from app.workflow_formats import COMFY_API, COMFY_UI, SAVE_FORMATS, SDGRAPH, Document
from graph_engine import Graph
from graph_engine.serialization import FORMAT, PNG_WORKFLOW_KEY, WorkflowFormatError, graph_from_dict, save

_UNREADABLE = "not a workflow this version of sdgraph can read"

# An importer looks at a parsed JSON document (or PNG text chunks) and returns a Document or None.
Importer = Callable[[Any, dict[str, str]], Document | None]
IMPORTERS: list[Importer] = [*COMFY_IMPORTERS]


def read_png_text(path: Path) -> dict[str, str]:
    """The PNG's tEXt/iTXt/zTXt chunks; Pillow parses them without decoding the image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.format != "PNG":
                raise WorkflowFormatError(f"{path.name}: not a PNG image")
            return {k: v for k, v in getattr(img, "text", {}).items() if isinstance(v, str)}
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise WorkflowFormatError(f"{path.name}: not a readable image ({exc})") from None


# PNG text chunks that carry a workflow: ours, ComfyUI's UI workflow and API prompt, A1111's parameters.
WORKFLOW_CHUNKS = (PNG_WORKFLOW_KEY, "workflow", "prompt", "parameters")


def png_carries_workflow(path: Path | str) -> bool:
    """Whether a PNG holds a workflow (its text chunks; remembered per file version, since a drag asks
    on every mouse move). A dropped PNG that does opens as its graph; one that does not is just an
    image (the editor gives it to Load Image)."""
    try:
        st = Path(path).stat()
    except OSError:
        return False
    return _png_carries_workflow(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _png_carries_workflow(path: str, mtime_ns: int, size: int) -> bool:
    try:
        chunks = read_png_text(Path(path))
    except WorkflowFormatError:
        return False
    return any(key in chunks for key in WORKFLOW_CHUNKS)


def from_json_document(doc: Any, chunks: dict[str, str] | None = None) -> Document:
    chunks = chunks or {}
    if isinstance(doc, dict) and doc.get("format") == FORMAT:
        return Document(graph_from_dict(doc), "sdgraph")
    for importer in IMPORTERS:
        result = importer(doc, chunks)
        if result is not None:
            return result
    raise WorkflowFormatError(_UNREADABLE)


def open_document(path: Path | str) -> Document:
    """Read a workflow from a .json file or a .png with one embedded; raises `WorkflowFormatError`."""
    path = Path(path)
    if not path.is_file():
        raise WorkflowFormatError(f"{path}: no such file")
    if path.suffix.lower() == ".png":
        chunks = read_png_text(path)
        if PNG_WORKFLOW_KEY in chunks:
            try:
                doc = json.loads(chunks[PNG_WORKFLOW_KEY])
                document = from_json_document(doc)
            except (ValueError, WorkflowFormatError) as exc:
                raise WorkflowFormatError(f"{path.name}: its embedded workflow is damaged ({exc})") from None
            document.source = "sdgraph-png"
            return document
        try:
            return from_json_document(None, chunks)
        except WorkflowFormatError as exc:
            if str(exc) != _UNREADABLE:  # an importer recognised the chunks but found them damaged
                raise WorkflowFormatError(f"{path.name}: {exc}") from None
            raise WorkflowFormatError(f"{path.name}: this image carries no workflow") from None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowFormatError(f"{path.name}: cannot read it ({exc})") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise WorkflowFormatError(f"{path.name}: not valid JSON ({exc})") from None
    except RecursionError:
        raise WorkflowFormatError(f"{path.name}: not valid JSON (nested too deeply)") from None
    try:
        return from_json_document(doc)
    except WorkflowFormatError as exc:
        raise WorkflowFormatError(f"{path.name}: {exc}") from None


def write_workflow(graph: Graph, path: Path, fmt: str = SDGRAPH) -> None:
    """Write `graph` to `path` atomically in `fmt` (one of `SAVE_FORMATS`).

    Raises OSError when the file cannot be written, and ValueError (`ComfyExportError`) when the graph
    holds something the format cannot express; the old file is intact either way.
    """
    if fmt == SDGRAPH:
        save(graph, path)
    elif fmt in (COMFY_UI, COMFY_API):
        export_graph(graph, fmt, path)
    else:
        raise ValueError(f"unknown workflow format {fmt!r} (choose from {', '.join(SAVE_FORMATS)})")


def save_format_of_file(path: Path | None) -> str:
    """The format a workflow file on disk is in, for saving it back (sdgraph when unknown or unreadable)."""
    if path is None or not path.is_file() or path.suffix.lower() != ".json":
        return SDGRAPH
    try:
        return open_document(path).save_format
    except WorkflowFormatError:
        return SDGRAPH
