"""What a node type is called on the canvas, in the library and in search: ComfyUI's name by default.

sdgraph's own titles say what a node does ("Encode Prompt", "Load Dual CLIP"), but most people arrive
from ComfyUI, and its tutorials, screenshots and workflows name nodes the way ComfyUI shows them
("CLIP Text Encode (Prompt)", "DualCLIPLoader"). So titles follow ComfyUI unless the `node_titles`
setting says "sdgraph"; search and the library filter match both names (and the type name), whichever
is shown.

`COMFY_TITLES` (in `graph_engine.comfy.titles`, shared with the server's `/object_info`) lists what
ComfyUI shows for each type it shares with sdgraph: its display name where it has one, and the bare
type name where it shows that. Types ComfyUI lacks (or means differently, like sdgraph's
forward-diffusion ForwardNoise) keep sdgraph's title. The style is process-wide, set by
the window from its settings, because a title is painted deep inside items that have no settings.
"""

from __future__ import annotations

from graph_engine.comfy.titles import comfy_title
from graph_engine.node_spec import NodeSpec

COMFYUI = "comfyui"
SDGRAPH = "sdgraph"
TITLE_STYLES = (COMFYUI, SDGRAPH)

_style = COMFYUI


def set_style(style: str) -> None:
    """Show ComfyUI's titles ("comfyui") or sdgraph's ("sdgraph"); anything else means the default."""
    global _style
    _style = style if style in TITLE_STYLES else COMFYUI


def style() -> str:
    return _style


def title(spec: NodeSpec) -> str:
    """The title a node of this type gets (until the user renames it)."""
    return comfy_title(spec) if _style == COMFYUI else spec.display_name


def other_title(spec: NodeSpec) -> str:
    """The name not shown, for tooltips ("" when both styles agree)."""
    other = spec.display_name if _style == COMFYUI else comfy_title(spec)
    return "" if other == title(spec) else other


def search_names(spec: NodeSpec) -> list[str]:
    """Every name a person may type to find this type: both titles and the type name, no repeats."""
    return list(dict.fromkeys((title(spec), spec.display_name, comfy_title(spec), spec.type)))
