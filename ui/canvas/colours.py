"""Node and group colours: ComfyUI's named palette, what it looks like on this canvas, and the menu.

A coloured node stores exactly what ComfyUI stores, so a workflow coloured here looks the same in
ComfyUI and a ComfyUI workflow's colours come back unchanged when it is saved again:

* `node.color` is ComfyUI's title colour (`"color"`, e.g. green ``"#232"``);
* its body colour (ComfyUI's `"bgcolor"`, ``"#353"``) lives in `node.extra["comfy"]["bgcolor"]`, where
  the ComfyUI importer already keeps it and from where both exporters write it back;
* a group's `color` is ComfyUI's `groupcolor` (``"#8A8"``).

ComfyUI's title colours are meant for its own canvas, where titles are darker than bodies; on this
canvas titles carry the category colour and bodies are dark, so a palette colour is *painted* with
the hand-picked `Swatch.title`/`Swatch.body` below (same hue, the brightness of the category colours).
Colours that are not in the palette (a custom ComfyUI colour) are painted as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from PySide6.QtGui import QColor, QIcon, QPixmap, QUndoStack
from PySide6.QtWidgets import QMenu, QWidget

from graph_engine.comfy.common import COMFY_KEY
from graph_engine.model import Graph, Group, Node
from ui.commands import COMFY_BGCOLOR as BGCOLOR
from ui.commands import set_group_colors_command, set_node_colors_command


@dataclass(frozen=True)
class Swatch:
    """One named colour: what is stored (ComfyUI's values) and what the canvas paints."""

    name: str  # ComfyUI's key ("pale_blue")
    label: str  # the menu's text
    color: str  # ComfyUI node title colour, stored in `node.color`
    bgcolor: str  # ComfyUI node body colour, stored in `node.extra["comfy"]["bgcolor"]`
    groupcolor: str  # ComfyUI group colour, stored in `group.color`
    title: str  # the title bar painted here
    body: str  # the body painted here: the dark node body, tinted toward the hue

    @property
    def title_color(self) -> QColor:
        return QColor(self.title)

    @property
    def body_color(self) -> QColor:
        return QColor(self.body)


# ComfyUI's values (litegraph's `LGraphCanvas.node_colors`) with this theme's painted colours.
PALETTE: tuple[Swatch, ...] = (
    Swatch("red", "Red", "#322", "#533", "#A88", "#7d3434", "#3b2b2c"),
    Swatch("brown", "Brown", "#332922", "#593930", "#b06634", "#6e4a33", "#372e29"),
    Swatch("green", "Green", "#232", "#353", "#8A8", "#356b3b", "#2a372c"),
    Swatch("blue", "Blue", "#223", "#335", "#88A", "#38457d", "#2a2d3c"),
    Swatch("pale_blue", "Pale blue", "#2a363b", "#3f5159", "#3f789e", "#3f6577", "#2b353a"),
    Swatch("cyan", "Cyan", "#233", "#355", "#8AA", "#2f6b6b", "#29383a"),
    Swatch("purple", "Purple", "#323", "#535", "#a1309b", "#6a3a6e", "#352a37"),
    Swatch("yellow", "Yellow", "#432", "#653", "#b58b2a", "#7f6526", "#3a3428"),
    Swatch("black", "Black", "#222", "#000", "#444", "#161616", "#1b1b1c"),
)
BY_NAME: dict[str, Swatch] = {s.name: s for s in PALETTE}


def _rgb(text: str | None) -> int | None:
    """A colour string as one comparable number ("#232" and "#223322" are the same); None if unreadable."""
    if not text:
        return None
    c = QColor(text)
    return c.rgba() if c.isValid() else None


_BY_TITLE = {_rgb(s.color): s for s in PALETTE}
_BY_GROUP = {_rgb(s.groupcolor): s for s in PALETTE}


def node_bgcolor(node: Node) -> str | None:
    """The node's ComfyUI body colour, if it has one."""
    comfy = node.extra.get(COMFY_KEY)
    value = comfy.get(BGCOLOR) if isinstance(comfy, dict) else None
    return value if isinstance(value, str) and value else None


def node_swatch(node: Node) -> Swatch | None:
    """The palette entry a node is coloured with (matched on ComfyUI's title colour), or None."""
    return _BY_TITLE.get(_rgb(node.color))


def group_swatch(group: Group) -> Swatch | None:
    return _BY_GROUP.get(_rgb(group.color))


def painted_colours(node: Node) -> tuple[QColor | None, QColor | None]:
    """(title, body) to paint for a node's colour; None where the theme's default applies."""
    swatch = node_swatch(node)
    if swatch is not None:
        return swatch.title_color, swatch.body_color
    title = QColor(node.color) if node.color else None
    bg = node_bgcolor(node)
    body = QColor(bg) if bg else None
    return (
        title if title is not None and title.isValid() else None,
        body if body is not None and body.isValid() else None,
    )


def stored_node_colours(swatch: Swatch | None) -> tuple[str | None, str | None]:
    """What a node stores for a palette choice: (color, bgcolor); (None, None) for "No colour"."""
    return (swatch.color, swatch.bgcolor) if swatch is not None else (None, None)


def _icon(color: QColor | None) -> QIcon:
    pix = QPixmap(14, 14)
    pix.fill(color if color is not None else QColor(0, 0, 0, 0))
    return QIcon(pix)


def colour_menu(
    parent: QWidget,
    current: Iterable[object],
    on_pick: Callable[[Swatch | None], None],
    *,
    for_groups: bool = False,
) -> QMenu:
    """The "Colour" submenu: one entry per palette colour and "No colour". The entry shared by every
    item it applies to (`current`: a swatch, None, or anything else for a custom colour) is checked;
    picking calls `on_pick` with the swatch (None: no colour)."""
    shared = set(current)
    checked = next(iter(shared)) if len(shared) == 1 else object()
    menu = QMenu("Colour", parent)
    menu.setObjectName("colourMenu")
    for swatch in PALETTE:
        shown = QColor(swatch.groupcolor) if for_groups else swatch.title_color
        act = menu.addAction(_icon(shown), swatch.label)
        act.setObjectName(f"colour.{swatch.name}")
        act.setCheckable(True)
        act.setChecked(checked is swatch)
        act.triggered.connect(lambda _c=False, s=swatch: on_pick(s))
    menu.addSeparator()
    none = menu.addAction("No colour")
    none.setObjectName("colour.none")
    none.setCheckable(True)
    none.setChecked(checked is None)
    none.triggered.connect(lambda _c=False: on_pick(None))
    return menu


def _current(swatch: Swatch | None, color: str | None) -> object:
    """What a menu checks for one item: its swatch, None (uncoloured), or the custom colour string."""
    return swatch if swatch is not None or not color else color


def node_colour_menu(parent: QWidget, graph: Graph, undo_stack: QUndoStack, node_ids: list[int]) -> QMenu:
    """The Colour submenu of a node's context menu; a pick colours every node in `node_ids` as one undo step."""
    current = [_current(node_swatch(graph.nodes[i]), graph.nodes[i].color) for i in node_ids]

    def pick(swatch: Swatch | None) -> None:
        ids = [i for i in node_ids if i in graph.nodes]
        if ids:
            color, bgcolor = stored_node_colours(swatch)
            undo_stack.push(set_node_colors_command(graph, ids, color, bgcolor))

    return colour_menu(parent, current, pick)


def group_colour_menu(parent: QWidget, graph: Graph, undo_stack: QUndoStack, group_ids: list[int]) -> QMenu:
    """The Colour submenu of a group's context menu (ComfyUI's group colours), one undo step."""
    current = [_current(group_swatch(graph.groups[i]), graph.groups[i].color) for i in group_ids]

    def pick(swatch: Swatch | None) -> None:
        ids = [i for i in group_ids if i in graph.groups]
        if ids:
            undo_stack.push(set_group_colors_command(graph, ids, swatch.groupcolor if swatch else None))

    return colour_menu(parent, current, pick, for_groups=True)
