"""Where everything on a node sits: header, socket rows, widget rows, image area.

The layout is a pure function of the node's declaration (`NodeSpec`), its title, its stored size, which
inputs are wired and how many images it shows. It never depends on zoom or on what is currently drawn,
so hiding text at low zoom (LOD) cannot make nodes change size (NodeGraphQt #504/#447 show the bug
that avoids). Painting, hit-testing and wire end points all read the same `NodeLayout`.

Rows, top to bottom, in node-local coordinates (0, 0 = top-left):

- the title bar;
- socket rows: the i-th socket input on the left, the i-th output on the right;
- one widget row per widget input (INT, FLOAT, STRING, BOOLEAN, COMBO). A widget input can also be fed
  by a wire, so each widget row has a socket on its left edge; once wired, the row shows the input's
  name as a socket instead of an editor. The row keeps its height either way, so wiring a widget never
  moves anything else on the node;
- a "control after generate" row under a seed-like INT;
- a multiline text fed by a wire (ComfyUI's "converted widget", often fed by a Primitive) shrinks to one
  row: its box would only show the name, and a ComfyUI file sizes such nodes without the box, so keeping
  it would make imported nodes overlap their neighbours;
- a "Choose file…" button row under an image-file combo (`Input.display == "image_file"`, Load Image);
- the image area of Save/Preview nodes, and of Load Image (its chosen picture).

A Reroute is a small pill with its input socket at the left end and its output at the right; the whole
pill is its "title" (grab it to move it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QPointF, QRectF

from graph_engine.model import Graph, Node
from graph_engine.node_spec import Input, NodeSpec
from graph_engine.reroute import REROUTE
from graph_engine.types import ANY
from ui import node_titles, theme
from ui.input_images import is_image_input


@dataclass
class SocketSlot:
    id: str
    type: str
    label: str
    center: QPointF
    is_output: bool
    # The widget row this socket belongs to (a wired widget input), if any.
    widget: Input | None = None


@dataclass
class WidgetRow:
    input: Input
    rect: QRectF  # the editor box
    socket: QPointF
    control_rect: QRectF | None = None  # the "control after generate" selector
    button_rect: QRectF | None = None  # "Choose file…" under an image-file combo (Load Image)


@dataclass
class NodeLayout:
    width: float
    height: float
    title_rect: QRectF
    inputs: dict[str, SocketSlot] = field(default_factory=dict)
    outputs: dict[str, SocketSlot] = field(default_factory=dict)
    widgets: dict[str, WidgetRow] = field(default_factory=dict)
    image_rect: QRectF | None = None
    note_rect: QRectF | None = None  # a Note's text area

    @property
    def rect(self) -> QRectF:
        return QRectF(0.0, 0.0, self.width, self.height)


def is_note(spec: NodeSpec | None) -> bool:
    """A sticky note: a virtual node with exactly one multiline text input and no outputs."""
    return (
        spec is not None
        and spec.virtual
        and not spec.outputs
        and len(spec.inputs) == 1
        and spec.inputs[0].type == "STRING"
        and spec.inputs[0].multiline
    )


def _phantom_sockets(graph: Graph, node: Node) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Sockets for a node whose type is not installed, inferred from its links so they still draw."""
    ins = sorted({(lk.dst_input, lk.type) for lk in graph.links.values() if lk.dst_node == node.id})
    outs = sorted({(lk.src_output, lk.type) for lk in graph.links.values() if lk.src_node == node.id})
    return ins, outs


REROUTE_SIZE = (40.0, 18.0)


def compute_layout(
    graph: Graph,
    node: Node,
    spec: NodeSpec | None,
    image_aspects: list[float] | None = None,
    linked: set[str] | None = None,
) -> NodeLayout:
    """The node's geometry. `image_aspects` are height/width ratios of images to show (run results);
    `linked` the wired input ids (a wired multiline text takes one row)."""
    fm = theme.label_metrics()
    if node.type == REROUTE and spec is not None:
        w, h = REROUTE_SIZE
        lay = NodeLayout(w, h, QRectF(0, 0, w, h))
        inp, out = spec.inputs[0], spec.outputs[0]
        lay.inputs[inp.id] = SocketSlot(inp.id, inp.type, "", QPointF(0.0, h / 2), False)
        lay.outputs[out.id] = SocketSlot(out.id, out.type, "", QPointF(w, h / 2), True)
        return lay
    title_w = theme.title_metrics().horizontalAdvance(node.title or (node_titles.title(spec) if spec else node.type))
    width = max(theme.NODE_MIN_WIDTH, title_w + 70.0)
    if spec is not None and any(i.type == "COMBO" and callable(i.choices) for i in spec.inputs):
        width = max(width, theme.FILE_NODE_MIN_WIDTH)  # a model file's name needs room (ComfyUI's are wide too)

    if is_note(spec):
        w, h = node.size or theme.NOTE_SIZE
        w = max(w, 120.0)
        h = max(h, theme.TITLE_HEIGHT + 40.0)
        lay = NodeLayout(w, h, QRectF(0, 0, w, theme.TITLE_HEIGHT))
        lay.note_rect = QRectF(
            theme.PADDING, theme.TITLE_HEIGHT + 4, w - 2 * theme.PADDING, h - theme.TITLE_HEIGHT - 10
        )
        inp = spec.inputs[0]  # type: ignore[union-attr]
        lay.widgets[inp.id] = WidgetRow(inp, lay.note_rect, QPointF(0, theme.TITLE_HEIGHT / 2))
        return lay

    if spec is not None:
        socket_inputs = [(i.id, i.type, i.display_name) for i in spec.inputs if not i.is_widget]
        outputs = [(o.id, o.type, o.display_name) for o in spec.outputs]
        widget_inputs = [i for i in spec.inputs if i.is_widget]
    else:
        ins, outs = _phantom_sockets(graph, node)
        socket_inputs = [(i, t or ANY, i) for i, t in ins]
        outputs = [(o, t or ANY, o) for o, t in outs]
        widget_inputs = []

    n_rows = max(len(socket_inputs), len(outputs))
    for r in range(n_rows):
        left = fm.horizontalAdvance(socket_inputs[r][2]) if r < len(socket_inputs) else 0.0
        right = fm.horizontalAdvance(outputs[r][2]) if r < len(outputs) else 0.0
        width = max(width, left + right + 50.0)
    if node.size is not None:
        width = max(width, node.size[0])

    lay = NodeLayout(width, 0.0, QRectF(0, 0, width, theme.TITLE_HEIGHT))
    y = theme.TITLE_HEIGHT + 4.0
    for r in range(n_rows):
        cy = y + theme.ROW_HEIGHT / 2
        if r < len(socket_inputs):
            sid, typ, label = socket_inputs[r]
            lay.inputs[sid] = SocketSlot(sid, typ, label, QPointF(0.0, cy), False)
        if r < len(outputs):
            sid, typ, label = outputs[r]
            lay.outputs[sid] = SocketSlot(sid, typ, label, QPointF(width, cy), True)
        y += theme.ROW_HEIGHT
    for inp in widget_inputs:
        wired = linked is not None and inp.id in linked
        rows = theme.MULTILINE_ROWS if (inp.type == "STRING" and inp.multiline and not wired) else 1
        h = theme.ROW_HEIGHT * rows
        box_h = h - (theme.ROW_HEIGHT - theme.WIDGET_HEIGHT)
        top = y + (theme.ROW_HEIGHT - theme.WIDGET_HEIGHT) / 2
        rect = QRectF(theme.PADDING + 4, top, width - 2 * theme.PADDING - 8, box_h)
        sock = QPointF(0.0, y + theme.ROW_HEIGHT / 2)
        row = WidgetRow(inp, rect, sock)
        lay.inputs[inp.id] = SocketSlot(inp.id, inp.type, inp.display_name, sock, False, widget=inp)
        y += h
        if inp.control_after_generate and inp.type == "INT":
            row.control_rect = QRectF(rect.left(), y + 1, rect.width(), theme.WIDGET_HEIGHT - 2)
            y += theme.ROW_HEIGHT - 2
        if is_image_input(inp):
            row.button_rect = QRectF(rect.left(), y + 1, rect.width(), theme.WIDGET_HEIGHT - 2)
            y += theme.ROW_HEIGHT - 2
        lay.widgets[inp.id] = row
    if image_aspects:
        avail = width - 2 * theme.PADDING
        img_h = min(theme.IMAGE_MAX_HEIGHT, avail * image_aspects[0])
        img_w = img_h / image_aspects[0] if image_aspects[0] > 0 else avail
        lay.image_rect = QRectF((width - img_w) / 2, y + 4, img_w, img_h)
        y += img_h + 8
    height = y + 6.0
    if node.size is not None:
        height = max(height, node.size[1])
    lay.height = height
    return lay
