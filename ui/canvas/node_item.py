"""The drawing of one node: a single QGraphicsItem that paints its title, sockets and widgets.

Sockets and widgets are not child items and never `QGraphicsProxyWidget`s: one item per node keeps a
500-node graph at 500 items, and painted widgets stay crisp at any zoom (QtNodes #521). Interaction is
done by the view, which asks `hit()` what lies under the cursor and then edits the model through undo
commands; the item only mirrors the model (`refresh()` after a graph notification) plus view-only run
state (queued/running/... border, progress, elapsed time, error text, result thumbnails, and the
lines of text a node's last run reported in its `ui` payload, e.g. Add Noise's ᾱ and SNR).

A value too long for its widget is shortened in the middle, keeping its end: model files differ at the
end ("…_v2.safetensors", "…_fp8.safetensors"), and the extension says what kind of file it is. Hovering
such a widget shows the whole value as the tooltip.

An INT/FLOAT input declared with `display="slider"` (and a min and max) is painted as a slider: the
box fills up to the value's place between min and max, with a knob there. It is edited like any number
(drag to scrub, arrows to step, click to type), so the view needs no extra interaction code.

Painting is cheap: the layout and the body/header paths are computed when the node changes, not per
paint; fonts and pens come from `ui.theme`'s caches; the item uses `DeviceCoordinateCache`, so a
repaint of an unchanged node is a pixmap blit. Below `theme.LOD_THRESHOLD` zoom, text and widgets are
skipped; the geometry does not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QImage, QPainter, QPainterPath, QPixmap
from PySide6.QtWidgets import QGraphicsItem, QGraphicsSceneHoverEvent, QStyleOptionGraphicsItem, QWidget

from graph_engine.model import Node, NodeMode
from graph_engine.node_spec import MISSING, Input, NodeRegistry, NodeSpec
from graph_engine.reroute import REROUTE, REROUTE_OUTPUT, output_type
from graph_engine.types import ANY
from graph_engine.value_sources import effective_spec, fed_values
from ui import node_titles, theme
from ui.canvas.colours import painted_colours
from ui.canvas.layout import NodeLayout, WidgetRow, compute_layout, is_note
from ui.canvas.seed import seed_mode
from ui.input_images import folder_hint, image_inputs, thumbnail

if TYPE_CHECKING:
    from graph_engine.model import Graph

NODE_Z = 1.0
ARROW_W = 14.0  # the clickable step arrows at each end of a number widget
VALUE_SHARE = 0.8  # how much of a widget row a too-long value may take from its label
CHOOSE_FILE_TEXT = "Choose file…"  # the button under an image-file combo (Load Image)


@dataclass(frozen=True)
class Hit:
    """What a point on a node is: kind is output/input/widget/control/title/body; part refines a widget."""

    kind: str
    key: str = ""
    part: str = ""


def format_value(inp: Input, value: Any) -> str:
    if value is None or value is MISSING:  # e.g. a file combo with nothing chosen yet
        return "—"
    if inp.type == "FLOAT" and isinstance(value, int | float):
        step = inp.round or inp.step or 0.01
        decimals = max(0, min(6, len(f"{step:.10f}".rstrip("0").split(".")[1]) if step < 1 else 0))
        return f"{value:.{decimals}f}"
    if inp.type == "BOOLEAN":
        return "true" if value else "false"
    return str(value)


def elide_keeping_end(text: str, fm: QFontMetricsF, width: float) -> str:
    """`text` shortened to `width` with "…" in the middle of its name, keeping a file extension whole
    (sd_xl_base…fixed.safetensors); without room for that, cut from the left (…fixed.safetensors)."""
    if fm.horizontalAdvance(text) <= width:
        return text
    stem, dot, ext = text.rpartition(".")
    if dot and stem and 0 < len(ext) <= 12 and " " not in ext:
        suffix = dot + ext
        room = width - fm.horizontalAdvance(suffix)
        head = fm.elidedText(stem, Qt.TextElideMode.ElideMiddle, room) if room > 0 else ""
        if len(head) > 3:  # a few letters of the name on each side of the "…"
            return head + suffix
    return fm.elidedText(text, Qt.TextElideMode.ElideLeft, width)


def is_slider(inp: Input) -> bool:
    """A bounded number input that asked to be drawn as a slider (`Input.display == "slider"`)."""
    return inp.display == "slider" and inp.type in ("INT", "FLOAT") and inp.min is not None and inp.max is not None


def slider_fraction(inp: Input, value: Any) -> float:
    """Where `value` sits between the input's min and max, 0…1 (anything unreadable sits at 0)."""
    lo, hi = float(inp.min or 0.0), float(inp.max or 0.0)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return 0.0
    if hi <= lo or v != v:
        return 0.0
    return min(1.0, max(0.0, (v - lo) / (hi - lo)))


class NodeItem(QGraphicsItem):
    def __init__(
        self,
        graph: Graph,
        node_id: int,
        spec: NodeSpec | None,
        *,
        linked: set[str] | None = None,
        registry: NodeRegistry | None = None,
    ) -> None:
        super().__init__()
        self.graph = graph
        self.node_id = node_id
        # `spec` is what the node is drawn and edited as: for a Primitive, the widget it feeds (its
        # `effective_spec`, re-derived on every refresh); `base_spec` is the registered declaration.
        self.base_spec = spec
        self.spec = spec
        self.registry = registry
        self.note = is_note(spec)
        self.is_reroute = spec is not None and spec.type == REROUTE
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self.setAcceptHoverEvents(True)  # for the whole value of a shortened widget as its tooltip
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.setZValue(NODE_Z)
        # view-only state
        self.run_state = ""
        self.progress: tuple[int, int] | None = None
        self.elapsed: float | None = None
        self.message: str | None = None
        self.problems: list[str] = []
        self.images: list[QImage] = []
        self.ui_text: list[str] = []
        self._text_rect = QRectF()
        self._thumb: QPixmap | None = None
        self._linked: set[str] = set()
        self.layout: NodeLayout
        self._body = QPainterPath()
        self._header = QPainterPath()
        self._bounds = QRectF()
        self._message_rect = QRectF()
        self._colours: tuple[QColor | None, QColor | None] = (None, None)
        self.refresh(linked)

    # ---- model mirroring -------------------------------------------------------------------------

    @property
    def node(self) -> Node:
        return self.graph.nodes[self.node_id]

    def refresh(self, linked: set[str] | None = None) -> None:
        """Re-read the node from the model (title, size, links, images) and rebuild cached geometry.

        `linked` (the wired input ids) can be passed when the caller already knows it, which saves a
        scan of all links per node when a whole graph is loaded.
        """
        node = self.node
        self._linked = set(self.graph.inputs_of(self.node_id)) if linked is None else set(linked)
        if self.is_value_source and self.registry is not None:
            self.spec = effective_spec(self.graph, self.registry, node)
        shown = self.shown_images()
        aspects = [img.height() / img.width() for img in shown[:1] if img.width() > 0]
        lay = compute_layout(self.graph, node, self.spec, aspects, self._linked)
        if self.is_value_source:
            lay.inputs.clear()  # its widget is its own value, not a socket anything can plug into
        self._place_ui_text(lay)
        self.prepareGeometryChange()
        self.layout = lay
        body = QPainterPath()
        corner = lay.height / 2 if self.is_reroute else theme.CORNER
        body.addRoundedRect(lay.rect, corner, corner)
        self._body = body
        clip = QPainterPath()
        clip.addRect(lay.title_rect)
        self._header = body.intersected(clip)  # the body's rounded top, square at the bottom
        self._colours = painted_colours(node)
        self._thumb = None
        if shown and lay.image_rect is not None:
            self._thumb = QPixmap.fromImage(
                shown[0].scaled(
                    int(lay.image_rect.width() * 2),
                    int(lay.image_rect.height() * 2),
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )
        self._update_message_rect()
        pad = theme.SOCKET_RADIUS + 3
        self._bounds = lay.rect.adjusted(-pad, -22, pad, 4).united(self._message_rect)
        self.setPos(QPointF(*node.pos))
        self._update_tooltip()
        self.update()

    @property
    def is_value_source(self) -> bool:
        """A Primitive: drawn as the widget it feeds, so its shape follows its links."""
        return self.base_spec is not None and self.base_spec.value_source

    def driven_values(self) -> dict[str, Any]:
        """Wired widget inputs whose value comes from a Primitive, with that value (shown greyed)."""
        if self.registry is None or not any(i in self.layout.widgets for i in self._linked):
            return {}  # the common case, decided without scanning links: no wired widget at all
        return fed_values(self.graph, self.registry, self.node_id)

    def shown_images(self) -> list[QImage]:
        """The pictures drawn in the node: a run's results, else the image a Load Image node names."""
        if self.images:
            return self.images
        values = self.node.values
        for inp in image_inputs(self.spec):
            if inp.id in self._linked:
                continue
            image = thumbnail(values.get(inp.id))
            if not image.isNull():
                return [image]
        return []

    def value_changed(self, input_id: str | None) -> None:
        """A value was edited: repaint, or re-lay the node when the value is the picture it shows."""
        if any(inp.id == input_id for inp in image_inputs(self.spec)):
            self.refresh()
        else:
            self.update()

    def _update_tooltip(self) -> None:
        """Problems first; a Load Image node otherwise says where its images come from."""
        if self.problems:
            self.setToolTip("\n".join(self.problems))
        elif image_inputs(self.spec):
            self.setToolTip(folder_hint())
        else:
            self.setToolTip("")

    def _place_ui_text(self, lay: NodeLayout) -> None:
        """Make room for the run's text lines under the widgets (above any image), growing the node.

        The layout module stays a pure function of the declaration; run output is view state, so the
        extra band is added here, and only when there is text: a node without it keeps its geometry.
        """
        if not self.ui_text or self.note:
            self._text_rect = QRectF()
            return
        line = theme.label_metrics().lineSpacing()
        h = line * len(self.ui_text) + 8
        if lay.image_rect is not None:
            top = lay.image_rect.top() - 4
            lay.image_rect = lay.image_rect.translated(0, h)
        else:
            bottoms = [r.rect.bottom() for r in lay.widgets.values()]
            bottoms += [r.control_rect.bottom() for r in lay.widgets.values() if r.control_rect is not None]
            bottoms += [r.button_rect.bottom() for r in lay.widgets.values() if r.button_rect is not None]
            bottoms += [s.center.y() + theme.ROW_HEIGHT / 2 for s in (*lay.inputs.values(), *lay.outputs.values())]
            top = max(bottoms, default=lay.title_rect.bottom()) + 2
        self._text_rect = QRectF(theme.PADDING + 4, top + 2, lay.width - 2 * theme.PADDING - 8, h - 4)
        lay.height = max(lay.height + h, top + h + 6)

    def set_ui_text(self, lines: list[str]) -> None:
        """Show the text lines a run reported for this node (its `ui["text"]`); [] removes them."""
        lines = [str(line) for line in lines]
        if lines != self.ui_text:
            self.ui_text = lines
            self.refresh()

    def _update_message_rect(self) -> None:
        if not self.message:
            self._message_rect = QRectF()
            return
        fm = theme.label_metrics()
        w = self.layout.width
        text_rect = fm.boundingRect(QRectF(0, 0, w - 12, 400), int(Qt.TextFlag.TextWordWrap), self.message)
        h = min(text_rect.height(), fm.lineSpacing() * 6) + 10
        self._message_rect = QRectF(0, self.layout.height + 6, w, h)

    def set_run_state(
        self, state: str, progress: tuple[int, int] | None, elapsed: float | None, message: str | None
    ) -> None:
        geometry = (message or None) != (self.message or None)
        self.run_state, self.progress, self.elapsed, self.message = state, progress, elapsed, message
        if geometry:
            self.refresh()
        else:
            self.update()

    def set_images(self, images: list[QImage]) -> None:
        self.images = list(images)
        self.refresh()

    def set_problems(self, messages: list[str]) -> None:
        self.problems = list(messages)
        self._update_tooltip()
        self.update()

    # ---- widget text ------------------------------------------------------------------------------

    def _value_text(self, row: WidgetRow, value: Any) -> tuple[str, str, str]:
        """(label, what the widget shows, the whole value) for a one-line text/number/combo widget.

        The label keeps its full width while both fit; a value too long for the rest takes up to
        `VALUE_SHARE` of the row from the label, so a model file's name shows more than its extension."""
        inp, fm = row.input, theme.label_metrics()
        full = format_value(inp, value)
        text_rect = row.rect.adjusted(ARROW_W if inp.type in ("INT", "FLOAT") else 8, 0, -ARROW_W, 0)
        room = text_rect.width() - 12  # the gap between label and value
        arrow = fm.horizontalAdvance(" ▾") if inp.type == "COMBO" else 0.0
        label_w = fm.horizontalAdvance(inp.display_name)
        value_w = fm.horizontalAdvance(full) + arrow
        label = inp.display_name
        if label_w + value_w > room:
            label_w = min(label_w, max(room - value_w, room * (1.0 - VALUE_SHARE)))
            label = fm.elidedText(inp.display_name, Qt.TextElideMode.ElideRight, max(label_w, 0.0))
        avail = max(room - label_w - arrow, 10.0)
        if inp.type == "COMBO":
            return label, elide_keeping_end(full, fm, avail), full
        return label, fm.elidedText(full, Qt.TextElideMode.ElideMiddle, avail), full

    def shown_value(self, input_id: str) -> str:
        """The value as the input's widget paints it (shortened to fit; a combo's ▾ left out)."""
        row = self.layout.widgets[input_id]
        return self._value_text(row, self.node.values.get(input_id, row.input.default))[1]

    def tooltip_at(self, scene_pos: QPointF) -> str:
        """The tooltip for a point: a shortened widget's whole value, else the node's problems."""
        hit = self.hit(scene_pos)
        if hit is not None and hit.kind == "widget" and not self.note:
            row = self.layout.widgets[hit.key]
            if not (row.input.type == "STRING" and row.input.multiline) and row.input.type != "BOOLEAN":
                _label, shown, full = self._value_text(row, self.node.values.get(hit.key, row.input.default))
                if shown != full:
                    return full
        return "\n".join(self.problems)

    def hoverMoveEvent(self, event: QGraphicsSceneHoverEvent) -> None:
        self.setToolTip(self.tooltip_at(event.scenePos()))
        super().hoverMoveEvent(event)

    # ---- geometry --------------------------------------------------------------------------------

    def boundingRect(self) -> QRectF:
        return self._bounds

    def shape(self) -> QPainterPath:
        return self._body

    def input_pos(self, input_id: str) -> QPointF:
        slot = self.layout.inputs.get(input_id)
        local = slot.center if slot else QPointF(0.0, theme.TITLE_HEIGHT / 2)
        return self.mapToScene(local)

    def output_pos(self, output_id: str) -> QPointF:
        slot = self.layout.outputs.get(output_id)
        local = slot.center if slot else QPointF(self.layout.width, theme.TITLE_HEIGHT / 2)
        return self.mapToScene(local)

    def body_scene_rect(self) -> QRectF:
        """The node's body (title bar to bottom edge) in scene coordinates: what an editor may cover."""
        return self.mapRectToScene(self.layout.rect)

    def widget_scene_rect(self, input_id: str) -> QRectF:
        return self.mapRectToScene(self.layout.widgets[input_id].rect)

    def hit(self, scene_pos: QPointF, *, socket_radius: float = theme.SOCKET_HIT) -> Hit | None:
        """What is under `scene_pos`: a socket (within `socket_radius`), a widget part, title or body."""
        p = self.mapFromScene(scene_pos)
        r2 = socket_radius * socket_radius
        for slot in self.layout.outputs.values():
            d = p - slot.center
            if d.x() * d.x() + d.y() * d.y() <= r2:
                return Hit("output", slot.id)
        for slot in self.layout.inputs.values():
            d = p - slot.center
            if d.x() * d.x() + d.y() * d.y() <= r2:
                return Hit("input", slot.id)
        if not self.layout.rect.contains(p):
            return None
        if self.layout.title_rect.contains(p):
            return Hit("title")
        for row in self.layout.widgets.values():
            if row.control_rect is not None and row.control_rect.contains(p):
                return Hit("control", row.input.id)
            if row.button_rect is not None and row.button_rect.contains(p) and row.input.id not in self._linked:
                return Hit("button", row.input.id)
            if row.rect.contains(p):
                if row.input.id in self._linked:
                    return Hit("body")
                part = "center"
                if row.input.type in ("INT", "FLOAT"):
                    if p.x() < row.rect.left() + ARROW_W:
                        part = "dec"
                    elif p.x() > row.rect.right() - ARROW_W:
                        part = "inc"
                return Hit("widget", row.input.id, part)
        return Hit("body")

    # ---- painting --------------------------------------------------------------------------------

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        node = self.node
        lay = self.layout
        lod = option.levelOfDetailFromTransform(painter.worldTransform())  # type: ignore[attr-defined]
        detailed = lod >= theme.LOD_THRESHOLD
        if node.mode == NodeMode.MUTE:
            painter.setOpacity(theme.MUTE_OPACITY)
        if self.is_reroute:
            self._paint_reroute(painter, lay)
            return
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(self.body_color())
        painter.drawPath(self._body)
        painter.setBrush(self.header_color())
        painter.drawPath(self._header)
        if node.mode == NodeMode.BYPASS:
            painter.setBrush(theme.BYPASS_TINT)
            painter.drawPath(self._body)

        if detailed:
            self._paint_text(painter, node, lay)
        else:
            self._paint_far_text(painter, node, lay, lod)
        if self._thumb is not None and lay.image_rect is not None:
            painter.drawPixmap(lay.image_rect, self._thumb, QRectF(self._thumb.rect()))
        self._paint_run_state(painter, lay, detailed)

        # the border over the body, the header and the tint
        painter.setBrush(Qt.BrushStyle.NoBrush)
        if self.run_state in theme.STATE_COLORS:
            painter.setPen(theme.pen(theme.STATE_COLORS[self.run_state].name(), 2.5))
        elif self.isSelected():
            painter.setPen(theme.pen(theme.NODE_SELECTED.name(), 1.6))
        elif node.mode == NodeMode.BYPASS:
            painter.setPen(theme.pen(theme.BYPASS_BORDER.name(), 1.6))
        else:
            painter.setPen(theme.pen(theme.NODE_BORDER.name(), 1.0))
        painter.drawPath(self._body)
        if self.isSelected() and self.run_state:
            painter.setPen(theme.pen(theme.NODE_SELECTED.name(), 1.0))
            painter.drawRoundedRect(lay.rect.adjusted(-3, -3, 3, 3), theme.CORNER + 2, theme.CORNER + 2)
        # sockets sit on the border, so they go on top of it
        self._paint_sockets(painter, lay, detailed)

    def _paint_reroute(self, painter: QPainter, lay: NodeLayout) -> None:
        """A small pill in the colour of what flows through it, with its two sockets at the ends."""
        typ = output_type(self.graph, self.registry, self.node_id, REROUTE_OUTPUT) if self.registry else ANY
        color = theme.type_color(typ)
        painter.setPen(theme.pen((theme.NODE_SELECTED if self.isSelected() else theme.NODE_BORDER).name(), 1.4))
        painter.setBrush(theme.NODE_BODY)
        painter.drawPath(self._body)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawEllipse(lay.rect.center(), 4.0, 4.0)
        r = theme.SOCKET_RADIUS - 1
        painter.setPen(theme.pen(theme.NODE_BORDER.name(), 1.0))
        for slot in (*lay.inputs.values(), *lay.outputs.values()):
            painter.drawEllipse(slot.center, r, r)

    def header_color(self) -> QColor:
        """The title bar's colour: the node's own colour (see `ui.canvas.colours`), else the note's, the
        missing type's red or the category's. The minimap draws nodes in it too."""
        if self.spec is None:
            return theme.MISSING_TYPE_HEADER
        if self._colours[0] is not None:
            return self._colours[0]
        return theme.NOTE_HEADER if self.note else theme.category_color(self.spec.category)

    def body_color(self) -> QColor:
        if self._colours[1] is not None:
            return self._colours[1]
        return theme.NOTE_BODY if self.note else theme.NODE_BODY

    def title_text(self) -> str:
        node = self.node
        return node.title or (node_titles.title(self.spec) if self.spec else f"{node.type} (not installed)")

    def _paint_far_text(self, painter: QPainter, node: Node, lay: NodeLayout, lod: float) -> None:
        """Zoomed out past the detail threshold: the title (and a failed node's error) in a font scaled up
        so it stays `theme.FAR_TEXT_PX` pixels tall on screen, elided to the node's width, so a graph fitted
        to the window is still a labelled graph rather than blank boxes."""
        lod = max(lod, 1e-3)
        px = theme.FAR_TEXT_PX / lod
        font = QFont(theme.title_font())  # a copy: the theme's font is shared by every item
        font.setPixelSize(max(1, round(px)))
        metrics = QFontMetricsF(font)
        if self.message and lay.height < 2 * metrics.height() + 8:
            # a failed node needs two lines: shrink toward the smallest size still legible on screen
            px = max(theme.FAR_TEXT_MIN_PX / lod, px * (lay.height - 8) / (2 * metrics.height()))
            font.setPixelSize(max(1, int(px)))
            metrics = QFontMetricsF(font)
        width = lay.width - 36  # the title bar's right end keeps showing the category colour
        title = metrics.elidedText(self.title_text(), Qt.TextElideMode.ElideRight, width)
        strip = QRectF(4, 2, min(width, metrics.horizontalAdvance(title)) + 4, metrics.height() + 2)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(theme.FAR_TEXT_BG)
        painter.drawRect(strip)
        painter.setFont(font)
        painter.setPen(theme.NOTE_TEXT if self.note else theme.TITLE_TEXT)
        painter.drawText(strip.adjusted(2, 1, 0, 0), int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop), title)
        if self.message and lay.height >= 2 * metrics.height() + 6:
            painter.setPen(theme.ERROR_TEXT)
            line = metrics.elidedText(self.message.splitlines()[0], Qt.TextElideMode.ElideRight, width)
            painter.drawText(
                QRectF(6, strip.bottom() + 4, width, metrics.height() + 2),
                int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop),
                line,
            )

    def _paint_text(self, painter: QPainter, node: Node, lay: NodeLayout) -> None:
        painter.setFont(theme.title_font())
        painter.setPen(theme.NOTE_TEXT if self.note else theme.TITLE_TEXT)
        title = self.title_text()
        right_pad = 12.0 + (48.0 if self.elapsed is not None else 0.0)
        painter.drawText(
            lay.title_rect.adjusted(12, 0, -right_pad, 0),
            int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft),
            theme.title_metrics().elidedText(title, Qt.TextElideMode.ElideRight, lay.width - 12 - right_pad),
        )
        painter.setFont(theme.label_font())
        painter.setPen(theme.LABEL_TEXT)
        align_l = int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
        align_r = int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight)
        for slot in lay.inputs.values():
            if slot.widget is None:
                r = QRectF(12, slot.center.y() - theme.ROW_HEIGHT / 2, lay.width / 2, theme.ROW_HEIGHT)
                painter.drawText(r, align_l, slot.label)
        for slot in lay.outputs.values():
            r = QRectF(lay.width / 2 - 12, slot.center.y() - theme.ROW_HEIGHT / 2, lay.width / 2, theme.ROW_HEIGHT)
            painter.drawText(r, align_r, slot.label)
        values = node.values
        driven = self.driven_values()
        for row in lay.widgets.values():
            if row.input.id in driven:
                self._paint_driven(painter, row, driven[row.input.id])
                continue
            self._paint_widget(painter, row, values.get(row.input.id, row.input.default))
        if self.ui_text and not self._text_rect.isNull():
            painter.setPen(theme.LABEL_TEXT)
            painter.drawText(
                self._text_rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop), "\n".join(self.ui_text)
            )

    def _paint_widget(self, painter: QPainter, row: WidgetRow, value: Any) -> None:
        inp, rect = row.input, row.rect
        fm = theme.label_metrics()
        align_l = int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
        align_r = int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight)
        if self.note:
            painter.setPen(theme.NOTE_TEXT)
            painter.drawText(rect, int(Qt.TextFlag.TextWordWrap | Qt.AlignmentFlag.AlignTop), str(value or ""))
            return
        if inp.id in self._linked:
            painter.setPen(theme.LABEL_TEXT)
            painter.drawText(rect.adjusted(4, 0, 0, 0), align_l, inp.display_name)
            return
        painter.setPen(theme.pen(theme.WIDGET_BORDER.name()))
        painter.setBrush(theme.WIDGET_BG)
        radius = min(rect.height() / 2, 8.0)
        painter.drawRoundedRect(rect, radius, radius)
        if is_slider(inp):
            self._paint_slider_track(painter, rect, inp, value, radius)
        text_rect = rect.adjusted(ARROW_W if inp.type in ("INT", "FLOAT") else 8, 0, -ARROW_W, 0)
        if inp.type == "STRING" and inp.multiline:
            painter.setPen(theme.VALUE_TEXT if value else theme.DIM_TEXT)
            painter.drawText(
                rect.adjusted(6, 3, -6, -3),
                int(Qt.TextFlag.TextWordWrap | Qt.AlignmentFlag.AlignTop),
                str(value) if value else inp.display_name,
            )
            return
        painter.setPen(theme.DIM_TEXT)
        label, shown, _full = self._value_text(row, value)
        painter.drawText(text_rect, align_l, label)
        if inp.type in ("INT", "FLOAT"):
            painter.setPen(theme.WIDGET_ARROW)
            painter.drawText(QRectF(rect.left() + 3, rect.top(), ARROW_W, rect.height()), align_l, "◀")
            painter.drawText(QRectF(rect.right() - ARROW_W - 2, rect.top(), ARROW_W, rect.height()), align_r, "▶")
        if inp.type == "BOOLEAN":
            pill = QRectF(rect.right() - 34, rect.center().y() - 6, 26, 12)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(theme.TOGGLE_ON if value else theme.TOGGLE_OFF)
            painter.drawRoundedRect(pill, 6, 6)
            painter.setBrush(QBrush(theme.VALUE_TEXT))
            knob_x = pill.right() - 6 if value else pill.left() + 6
            painter.drawEllipse(QPointF(knob_x, pill.center().y()), 4.5, 4.5)
            painter.setPen(theme.VALUE_TEXT)
            painter.drawText(text_rect.adjusted(0, 0, -32, 0), align_r, format_value(inp, value))
        else:
            painter.setPen(theme.VALUE_TEXT)
            painter.drawText(text_rect, align_r, shown + (" ▾" if inp.type == "COMBO" else ""))
        if row.control_rect is not None:
            painter.setPen(theme.DIM_TEXT)
            mode_text = f"{seed_mode(self.graph, self.node_id)} ▾"
            inner = row.control_rect.adjusted(8, 0, -8, 0)
            room = inner.width() - fm.horizontalAdvance(mode_text) - 8
            label = fm.elidedText("control after generate", Qt.TextElideMode.ElideRight, max(room, 0))
            painter.drawText(inner, align_l, label)
            painter.setPen(theme.VALUE_TEXT)
            painter.drawText(inner, align_r, mode_text)
        if row.button_rect is not None:
            painter.setPen(theme.pen(theme.WIDGET_BORDER.name()))
            painter.setBrush(theme.WIDGET_BG)
            radius = min(row.button_rect.height() / 2, 8.0)
            painter.drawRoundedRect(row.button_rect, radius, radius)
            painter.setPen(theme.VALUE_TEXT)
            painter.drawText(row.button_rect, int(Qt.AlignmentFlag.AlignCenter), CHOOSE_FILE_TEXT)

    def _paint_driven(self, painter: QPainter, row: WidgetRow, value: Any) -> None:
        """A widget fed by a Primitive: greyed (it cannot be edited here) and showing the value it gets."""
        inp, rect = row.input, row.rect
        fm = theme.label_metrics()
        painter.save()
        painter.setOpacity(painter.opacity() * 0.55)
        painter.setPen(theme.pen(theme.WIDGET_BORDER.name()))
        painter.setBrush(theme.WIDGET_BG)
        radius = min(rect.height() / 2, 8.0)
        painter.drawRoundedRect(rect, radius, radius)
        inner = rect.adjusted(8, 0, -8, 0)
        align_l = int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
        align_r = int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight)
        painter.setPen(theme.DIM_TEXT)
        label = f"⇠ {inp.display_name}"
        painter.drawText(inner, align_l, label)
        shown = " ".join(format_value(inp, value).split())
        avail = inner.width() - fm.horizontalAdvance(label) - 12
        painter.setPen(theme.VALUE_TEXT)
        painter.drawText(inner, align_r, fm.elidedText(shown, Qt.TextElideMode.ElideRight, max(avail, 10)))
        painter.restore()

    @staticmethod
    def _paint_slider_track(painter: QPainter, rect: QRectF, inp: Input, value: Any, radius: float) -> None:
        """The filled part of a slider widget, up to the value, and a knob at the value."""
        frac = slider_fraction(inp, value)
        inner = rect.adjusted(ARROW_W, 2, -ARROW_W, -2)
        painter.save()
        painter.setPen(Qt.PenStyle.NoPen)
        fill = QColor(theme.PROGRESS_FG)
        fill.setAlpha(70)
        painter.setBrush(fill)
        painter.drawRoundedRect(QRectF(inner.left(), inner.top(), inner.width() * frac, inner.height()), 3, 3)
        painter.setBrush(theme.PROGRESS_FG)
        knob_x = inner.left() + inner.width() * frac
        painter.drawRoundedRect(QRectF(knob_x - 2, inner.top() - 1, 4, inner.height() + 2), 2, 2)
        painter.restore()

    def _paint_sockets(self, painter: QPainter, lay: NodeLayout, detailed: bool) -> None:
        r = theme.SOCKET_RADIUS
        for slots in (lay.inputs.values(), lay.outputs.values()):
            for slot in slots:
                color = theme.type_color(slot.type)
                if slot.widget is not None and slot.id not in self._linked:
                    if not detailed:
                        continue
                    # an unwired widget input: a small hollow socket, so it can still take a wire
                    painter.setPen(theme.pen(color.name(), 1.2))
                    painter.setBrush(Qt.BrushStyle.NoBrush)
                    painter.drawEllipse(slot.center, r - 1.5, r - 1.5)
                    continue
                painter.setPen(theme.pen(theme.NODE_BORDER.name(), 1.0))
                painter.setBrush(color)
                painter.drawEllipse(slot.center, r, r)

    def _paint_run_state(self, painter: QPainter, lay: NodeLayout, detailed: bool) -> None:
        if self.progress is not None and self.progress[1] > 0:
            done, total = self.progress
            bar = QRectF(0, lay.title_rect.bottom() - 3, lay.width, 3)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(theme.PROGRESS_BG)
            painter.drawRect(bar)
            painter.setBrush(theme.PROGRESS_FG)
            painter.drawRect(QRectF(bar.left(), bar.top(), bar.width() * min(1.0, done / total), bar.height()))
        if not detailed:
            return
        painter.setFont(theme.label_font())
        if self.elapsed is not None:
            painter.setPen(theme.LABEL_TEXT)
            painter.drawText(
                lay.title_rect.adjusted(0, 0, -10, 0),
                int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight),
                f"{self.elapsed:.1f}s",
            )
        if self.run_state in theme.STATE_COLORS:
            color = theme.STATE_COLORS[self.run_state]
            text = self.run_state
            if self.run_state == "running" and self.progress is not None:
                text = f"running {self.progress[0]}/{self.progress[1]}"
            w = theme.label_metrics().horizontalAdvance(text) + 12
            badge = QRectF(lay.width - w - 4, -19, w, 16)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(color)
            painter.drawRoundedRect(badge, 4, 4)
            painter.setPen(theme.BACKGROUND)
            painter.drawText(badge, int(Qt.AlignmentFlag.AlignCenter), text)
        if self.message and not self._message_rect.isNull():
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(theme.ERROR_TEXT_BG)
            painter.drawRoundedRect(self._message_rect, 4, 4)
            painter.setPen(theme.ERROR_TEXT)
            painter.drawText(
                self._message_rect.adjusted(6, 5, -6, -5),
                int(Qt.TextFlag.TextWordWrap | Qt.AlignmentFlag.AlignTop),
                self.message,
            )
