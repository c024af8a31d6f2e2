"""What a workflow document is once read, and the file formats it can be written in.

A document remembers where it came from (`Document.source`), and that decides the format Save writes:
a ComfyUI workflow is saved back as a ComfyUI workflow, so the file stays readable by the program it
came from. This module holds only that vocabulary; reading is `app.documents`, ComfyUI's side of it
`app.comfy_png`. It is a module of its own so those two can share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graph_engine import Graph

SDGRAPH = "sdgraph"
COMFY_UI = "comfy-ui"
COMFY_API = "comfy-api"

# Format id → what the user reads in dialogs and messages.
SAVE_FORMATS = {
    SDGRAPH: "sdgraph workflow",
    COMFY_UI: "ComfyUI workflow",
    COMFY_API: "ComfyUI API prompt",
}

# Where a document came from (`Document.source`) → the format its file is saved back in. Sources not
# listed (A1111 PNGs, our own PNGs) have no workflow file of their own, so they save as ours.
_SAVE_FORMAT_OF_SOURCE = {
    "sdgraph": SDGRAPH,
    "comfyui": COMFY_UI,
    "comfyui-png": COMFY_UI,
    "comfyui-api": COMFY_API,
}


@dataclass
class Document:
    graph: Graph
    source: str  # "sdgraph" | "sdgraph-png" | an importer's name ("comfyui", "comfyui-api", ...)
    # Things the user should hear about once (missing node types, renamed models), not errors.
    notices: list[str] = field(default_factory=list)

    @property
    def save_format(self) -> str:
        """The format Save writes this document back in (see `SAVE_FORMATS`)."""
        return _SAVE_FORMAT_OF_SOURCE.get(self.source, SDGRAPH)
