"""The mask editor: paint which part of a Load Image node's picture the sampler may repaint.

A mask lives where ComfyUI's mask editor puts it, in the picture's alpha channel: a transparent pixel
is masked (Load Image's MASK is 1 there), an opaque one is kept. So a masked picture is an ordinary PNG
in the input folder that any workflow, ours or ComfyUI's, reads the same way, and the node's cache
signature (a hash of the file's bytes) changes whenever the mask does.

The dialog keeps the picture's colours untouched (a masked pixel keeps its RGB, only its alpha goes
to 0: img2img-style inpainting with Set Latent Noise Mask needs the original colours under the mask)
and the mask as a separate premultiplied image tinted with the overlay colour, so showing it is one
`drawImage` and painting it is ordinary `QPainter` work in image pixels. Saving writes a *new* file,
`<stem>_mask.png` next to the original (never overwriting anything), marked with a PNG text key; a
file that carries the mark is sdgraph's own masked copy and is saved in place. The node's `image`
value changes through an undoable command, so Ctrl+Z on the canvas goes back to the original picture.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QColor,
    QImage,
    QImageReader,
    QImageWriter,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QRadialGradient,
    QResizeEvent,
    QUndoStack,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QPushButton,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from graph_engine.model import Graph
from nodes.folders import input_dir, resolve_input_image
from ui import commands as cmds

if TYPE_CHECKING:
    import numpy as np

LOAD_IMAGE = "LoadImage"
# The PNG text key that marks a file as a masked copy written here; its value names the original.
MARK_KEY = "sdgraph-mask-of"
MASK_COLOUR = QColor(255, 48, 96)
OVERLAY_OPACITY = 0.55
MAX_UNDO = 30
MIN_BRUSH, MAX_BRUSH = 1, 600


# ---- which nodes, which file -----------------------------------------------------------------------


def image_file(graph: Graph, node_id: int) -> tuple[Path | None, str]:
    """The picture a Load Image node names, or None and the reason a person reads (why it can't open)."""
    node = graph.nodes.get(node_id)
    if node is None or node.type != LOAD_IMAGE:
        return None, "Only a Load Image node has a picture to mask"
    name = node.values.get("image")
    if not isinstance(name, str) or not name:
        return None, "This Load Image node has no image yet: choose one first"
    try:
        return resolve_input_image(name), ""
    except (ValueError, OSError) as exc:
        return None, f"No image file to mask: {exc}"


def open_mask_editor(parent: QWidget, graph: Graph, undo_stack: QUndoStack, node_id: int) -> MaskEditorDialog | None:
    """Open the editor on a Load Image node (window-modal, not blocking); say why when it cannot."""
    path, reason = image_file(graph, node_id)
    dialog = MaskEditorDialog(graph, undo_stack, node_id, parent.window()) if path is not None else None
    if dialog is None or dialog.canvas.picture.isNull():
        box = QMessageBox(
            QMessageBox.Icon.Information,
            "Mask Editor",
            reason or f"{path} could not be read as a picture",
            QMessageBox.StandardButton.Ok,
            parent.window(),
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        return None
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog


def add_menu_entry(menu: QMenu, view: Any, node_id: int) -> None:
    """The node context menu's "Open in Mask Editor", disabled with the reason when there is no file."""
    action = menu.addAction(
        "Open in Mask Editor…", lambda: open_mask_editor(view, view.graph, view.undo_stack, node_id)
    )
    path, reason = image_file(view.graph, node_id)
    if path is None:
        action.setEnabled(False)
        action.setToolTip(reason)
        action.setStatusTip(reason)
        menu.setToolTipsVisible(True)


def mask_editor_action(view: Any) -> QAction:
    """An action for the canvas (the window lists canvas actions in its Edit menu): opens the editor on
    the one selected Load Image node; enabled only while exactly one is selected."""
    action = QAction("Open in &Mask Editor…", view)
    action.setObjectName("edit.mask_editor")

    def selected() -> int | None:
        ids = view.selected_node_ids()
        if len(ids) == 1 and (node := view.graph.nodes.get(ids[0])) is not None and node.type == LOAD_IMAGE:
            return int(ids[0])
        return None

    def update(_ids: object = None) -> None:
        ok = selected() is not None
        action.setEnabled(ok)
        action.setStatusTip("" if ok else "Select one Load Image node to paint its mask")

    def trigger() -> None:
        nid = selected()
        if nid is not None:
            open_mask_editor(view, view.graph, view.undo_stack, nid)

    action.triggered.connect(lambda _checked=False: trigger())
    view.nodeSelectionChanged.connect(update)
    update()
    return action


# ---- pixels ------------------------------------------------------------------------------------------


def _rgba_array(image: QImage) -> np.ndarray:
    """A (H, W, 4) uint8 copy of an RGBA8888 image (rows may be padded in the QImage)."""
    import numpy as np  # here, not at import: numpy costs start-up time the window need not pay

    h, w = image.height(), image.width()
    raw = np.frombuffer(image.constBits(), np.uint8, count=image.sizeInBytes()).reshape(h, image.bytesPerLine())
    return raw[:, : w * 4].reshape(h, w, 4).copy()


def _image_from_rgba(arr: np.ndarray, fmt: QImage.Format) -> QImage:
    import numpy as np

    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    return QImage(arr.data, w, h, w * 4, fmt).copy()  # copy: the QImage must own its pixels


def mask_alpha(mask: QImage) -> np.ndarray:
    """The mask as (H, W) uint8, 255 = masked."""
    return _rgba_array(mask.convertToFormat(QImage.Format.Format_RGBA8888_Premultiplied))[..., 3]


def mask_from_alpha(alpha: np.ndarray) -> QImage:
    """A mask image (overlay colour, premultiplied) with `alpha` as its coverage."""
    import numpy as np

    h, w = alpha.shape
    arr = np.empty((h, w, 4), np.uint8)
    for i, c in enumerate((MASK_COLOUR.red(), MASK_COLOUR.green(), MASK_COLOUR.blue())):
        arr[..., i] = (alpha.astype(np.uint16) * c + 127) // 255
    arr[..., 3] = alpha
    return _image_from_rgba(arr, QImage.Format.Format_RGBA8888_Premultiplied).convertToFormat(
        QImage.Format.Format_ARGB32_Premultiplied
    )


def read_picture(path: Path) -> QImage:
    """The picture as Load Image sees it (EXIF orientation applied, first frame), non-premultiplied RGBA."""
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    image = reader.read()
    if image.isNull():
        return image
    marked = image.text(MARK_KEY)
    out = image.convertToFormat(QImage.Format.Format_RGBA8888)
    if marked:
        out.setText(MARK_KEY, marked)
    return out


def masked_picture(picture: QImage, mask: QImage, original: str) -> QImage:
    """The picture's colours with alpha = 255 − mask: ComfyUI's masked-PNG convention."""
    rgba = _rgba_array(picture)
    rgba[..., 3] = 255 - mask_alpha(mask)
    out = _image_from_rgba(rgba, QImage.Format.Format_RGBA8888)
    out.setText(MARK_KEY, original)
    return out


def masked_copy_path(source: Path) -> Path:
    """`<stem>_mask.png` next to `source`, numbered until the name is free."""
    stem = source.stem
    candidate = source.with_name(f"{stem}_mask.png")
    n = 2
    while candidate.exists():
        candidate = source.with_name(f"{stem}_mask_{n}.png")
        n += 1
    return candidate


def write_png(image: QImage, path: Path, *, overwrite: bool) -> None:
    """Write through a temporary file and a rename, so a failed write never leaves half a PNG; without
    `overwrite` the name is claimed first (exclusive create), so another file is never replaced."""
    if not overwrite:
        with open(path, "xb"):
            pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = QImageWriter(str(tmp), b"png")
    if not writer.write(image):
        error = writer.errorString()
        with contextlib.suppress(OSError):
            tmp.unlink()
        if not overwrite:
            with contextlib.suppress(OSError):
                path.unlink()
        raise OSError(f"could not write {path}: {error}")
    os.replace(tmp, path)


# ---- the painting surface ------------------------------------------------------------------------------


class MaskCanvas(QWidget):
    """The picture with its mask on top, zoomable; mouse strokes paint into the mask in image pixels.

    Left button paints (or erases, with the eraser); the wheel zooms around the cursor; the middle
    button pans. `scale` and `offset` map image pixels to widget pixels: w = offset + scale·i.
    """

    changed = Signal()

    def __init__(self, picture: QImage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.picture = picture
        import numpy as np

        alpha = np.zeros((1, 1), np.uint8) if picture.isNull() else 255 - _rgba_array(picture)[..., 3]
        self.mask = mask_from_alpha(alpha)
        # What is shown under the overlay: the colours, opaque (masked pixels keep their colours).
        self._shown = picture.convertToFormat(QImage.Format.Format_RGBX8888) if not picture.isNull() else QImage()
        self.brush_size = 40
        self.hardness = 1.0
        self.erasing = False
        self.scale = 1.0
        self.offset = QPointF(0, 0)
        self._fitted = True
        self._undo: list[QImage] = []
        self._redo: list[QImage] = []
        self._last: QPointF | None = None
        self._pan_from: QPointF | None = None
        self._cursor: QPointF | None = None
        self.setMouseTracking(True)
        self.setMinimumSize(320, 240)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.CrossCursor)

    def sizeHint(self) -> QSize:
        return QSize(720, 560)

    # -- coordinates --

    def to_image(self, p: QPointF) -> QPointF:
        return (p - self.offset) / self.scale

    def to_widget(self, p: QPointF) -> QPointF:
        return self.offset + p * self.scale

    def fit(self) -> None:
        """Zoom so the whole picture shows, centred (up to 4×: a tiny picture is still paintable)."""
        iw, ih = max(1, self.picture.width()), max(1, self.picture.height())
        self.scale = min((self.width() - 16) / iw, (self.height() - 16) / ih, 4.0)
        self.scale = max(self.scale, 0.01)
        self.offset = QPointF((self.width() - iw * self.scale) / 2, (self.height() - ih * self.scale) / 2)
        self._fitted = True
        self.update()

    def set_zoom(self, scale: float, anchor: QPointF | None = None) -> None:
        """Zoom to `scale` keeping the image point under `anchor` (default: the centre) in place."""
        anchor = anchor if anchor is not None else QPointF(self.width() / 2, self.height() / 2)
        fixed = self.to_image(anchor)
        self.scale = min(max(scale, 0.02), 32.0)
        self.offset = anchor - fixed * self.scale
        self._fitted = False
        self.update()

    def resizeEvent(self, event: QResizeEvent) -> None:
        if self._fitted:
            self.fit()
        super().resizeEvent(event)

    # -- edits (each one undoable inside the dialog) --

    def _snapshot(self) -> None:
        self._undo.append(self.mask.copy())
        del self._undo[:-MAX_UNDO]
        self._redo.clear()

    def undo(self) -> None:
        if self._undo:
            self._redo.append(self.mask)
            self.mask = self._undo.pop()
            self._changed()

    def redo(self) -> None:
        if self._redo:
            self._undo.append(self.mask)
            self.mask = self._redo.pop()
            self._changed()

    def can_undo(self) -> bool:
        return bool(self._undo)

    def clear(self) -> None:
        self._snapshot()
        self.mask.fill(Qt.GlobalColor.transparent)
        self._changed()

    def invert(self) -> None:
        self._snapshot()
        self.mask = mask_from_alpha(255 - mask_alpha(self.mask))
        self._changed()

    def _changed(self) -> None:
        self.update()
        self.changed.emit()

    def _paint_segment(self, a: QPointF, b: QPointF) -> None:
        """Paint (or erase) the brush along a→b in image pixels."""
        r = self.brush_size / 2
        p = QPainter(self.mask)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setCompositionMode(
            QPainter.CompositionMode.CompositionMode_DestinationOut
            if self.erasing
            else QPainter.CompositionMode.CompositionMode_SourceOver
        )
        if self.hardness >= 0.99:
            if a == b:
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(MASK_COLOUR)
                p.drawEllipse(a, r, r)
            else:
                p.setPen(QPen(MASK_COLOUR, 2 * r, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
                p.drawLine(a, b)
        else:
            # A soft brush is a row of radial-gradient dabs, a quarter radius apart.
            p.setPen(Qt.PenStyle.NoPen)
            dist = math.hypot(b.x() - a.x(), b.y() - a.y())
            steps = max(1, math.ceil(dist / max(1.0, r / 4)))
            for i in range(steps + 1 if a != b else 1):
                c = a + (b - a) * (i / steps)
                grad = QRadialGradient(c, r)
                grad.setColorAt(0.0, MASK_COLOUR)
                grad.setColorAt(max(0.0, min(self.hardness, 0.98)), MASK_COLOUR)
                edge = QColor(MASK_COLOUR)
                edge.setAlpha(0)
                grad.setColorAt(1.0, edge)
                p.setBrush(grad)
                p.drawEllipse(c, r, r)
        p.end()
        pad = r + 2
        rect = QRectF(a, b).normalized().adjusted(-pad, -pad, pad, pad)
        self.update(QRectF(self.to_widget(rect.topLeft()), self.to_widget(rect.bottomRight())).toAlignedRect())

    # -- mouse --

    def mousePressEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        if event.button() == Qt.MouseButton.LeftButton:
            self._snapshot()
            self._last = self.to_image(pos)
            self._paint_segment(self._last, self._last)
        elif event.button() == Qt.MouseButton.MiddleButton:
            self._pan_from = pos
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        old_cursor, self._cursor = self._cursor, pos
        if self._last is not None and event.buttons() & Qt.MouseButton.LeftButton:
            here = self.to_image(pos)
            self._paint_segment(self._last, here)
            self._last = here
        elif self._pan_from is not None:
            self.offset += pos - self._pan_from
            self._pan_from = pos
            self._fitted = False
            self.update()
        r = self.brush_size / 2 * self.scale + 3
        for c in (old_cursor, pos):
            if c is not None:
                self.update(QRectF(c.x() - r, c.y() - r, 2 * r, 2 * r).toAlignedRect())
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._last is not None:
            self._last = None
            self.changed.emit()
        elif event.button() == Qt.MouseButton.MiddleButton:
            self._pan_from = None
        event.accept()

    def leaveEvent(self, event: Any) -> None:
        self._cursor = None
        self.update()
        super().leaveEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        notches = event.angleDelta().y() / 120.0
        if notches:
            self.set_zoom(self.scale * 1.2**notches, event.position())
        event.accept()

    # -- painting --

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(32, 32, 36))
        if self.picture.isNull():
            return
        target = QRectF(self.offset, self.offset + QPointF(self.picture.width(), self.picture.height()) * self.scale)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.scale < 1)
        p.drawImage(target, self._shown)
        p.setOpacity(OVERLAY_OPACITY)
        p.drawImage(target, self.mask)
        p.setOpacity(1.0)
        if self._cursor is not None:
            r = self.brush_size / 2 * self.scale
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.setPen(QPen(QColor(0, 0, 0, 200), 3))
            p.drawEllipse(self._cursor, r, r)
            p.setPen(QPen(QColor(255, 255, 255), 1))
            p.drawEllipse(self._cursor, r, r)


# ---- the dialog ---------------------------------------------------------------------------------------


class MaskEditorDialog(QDialog):
    """Brush and eraser over a Load Image node's picture; Save writes the masked PNG and points the node
    at it (one undo step on the canvas); Cancel changes nothing."""

    def __init__(self, graph: Graph, undo_stack: QUndoStack, node_id: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.graph = graph
        self.undo_stack = undo_stack
        self.node_id = node_id
        self.image_name = str(graph.nodes[node_id].values.get("image", ""))
        self.source = resolve_input_image(self.image_name)
        self.saved_name: str | None = None
        self.discard_box: QMessageBox | None = None  # the "discard your painting?" question, while open
        self._discarding = False
        picture = read_picture(self.source)
        self.setWindowTitle(f"Mask Editor — {self.image_name}")
        self.canvas = MaskCanvas(picture, self)

        self.brush_button = self._tool("Brush", "Paint the area to repaint (B)")
        self.eraser_button = self._tool("Eraser", "Erase the mask (E)")
        self.brush_button.setChecked(True)
        tools = QButtonGroup(self)
        tools.setExclusive(True)
        tools.addButton(self.brush_button)
        tools.addButton(self.eraser_button)
        self.eraser_button.toggled.connect(self._set_erasing)

        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        self.size_slider.setRange(MIN_BRUSH, MAX_BRUSH)
        self.size_slider.setValue(self.canvas.brush_size)
        self.size_slider.setToolTip("Brush size in image pixels ([ and ] change it)")
        self.size_label = QLabel()
        self.size_slider.valueChanged.connect(self._set_size)
        self.hardness_slider = QSlider(Qt.Orientation.Horizontal)
        self.hardness_slider.setRange(0, 100)
        self.hardness_slider.setValue(100)
        self.hardness_slider.setToolTip("Brush hardness: 100% a sharp edge, lower a soft one")
        self.hardness_slider.valueChanged.connect(lambda v: setattr(self.canvas, "hardness", v / 100))

        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Remove the whole mask")
        self.clear_button.clicked.connect(self.canvas.clear)
        self.invert_button = QPushButton("Invert")
        self.invert_button.setToolTip("Mask what is not masked, and the other way round")
        self.invert_button.clicked.connect(self.canvas.invert)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Undo the last stroke (Ctrl+Z)")
        self.undo_button.clicked.connect(self.canvas.undo)
        self.fit_button = QPushButton("Fit")
        self.fit_button.setToolTip("Zoom to show the whole picture (F)")
        self.fit_button.clicked.connect(self.canvas.fit)

        bar = QHBoxLayout()
        bar.addWidget(self.brush_button)
        bar.addWidget(self.eraser_button)
        bar.addSpacing(12)
        bar.addWidget(QLabel("Size"))
        bar.addWidget(self.size_slider, 2)
        bar.addWidget(self.size_label)
        bar.addSpacing(8)
        bar.addWidget(QLabel("Hardness"))
        bar.addWidget(self.hardness_slider, 1)
        bar.addSpacing(12)
        for button in (self.clear_button, self.invert_button, self.undo_button, self.fit_button):
            bar.addWidget(button)

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        hint = QLabel("Painted areas are repainted (saved as transparency). Wheel zooms, middle drag pans.")
        hint.setStyleSheet("color: gray;")
        bottom = QHBoxLayout()
        bottom.addWidget(hint, 1)
        bottom.addWidget(self.buttons)

        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(bottom)

        self.canvas.changed.connect(self._update_buttons)
        self._set_size(self.canvas.brush_size)
        self._update_buttons()
        self.resize(860, 680)

    def _tool(self, text: str, tip: str) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setToolTip(tip)
        button.setCheckable(True)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        # The chosen tool must be obvious at a glance; the default style barely marks a checked button.
        button.setStyleSheet(
            "QToolButton { padding: 3px 10px; border: 1px solid #555; border-radius: 3px; }"
            "QToolButton:checked { background: #2f5f9e; border-color: #6fa0e0; color: white; }"
        )
        return button

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """The editor's keys, handled here rather than as QShortcuts: a key the focused control (the
        canvas, a slider) leaves unhandled comes up to the dialog whichever child has focus."""
        if event.matches(QKeySequence.StandardKey.Undo):
            self.canvas.undo()
        elif event.matches(QKeySequence.StandardKey.Redo):
            self.canvas.redo()
        elif event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            super().keyPressEvent(event)
            return
        elif event.key() == Qt.Key.Key_BracketLeft:
            self._step_size(-1)
        elif event.key() == Qt.Key.Key_BracketRight:
            self._step_size(1)
        elif event.key() == Qt.Key.Key_B:
            self.brush_button.setChecked(True)
        elif event.key() == Qt.Key.Key_E:
            self.eraser_button.setChecked(True)
        elif event.key() == Qt.Key.Key_X:
            self._toggle_tool()
        elif event.key() == Qt.Key.Key_F:
            self.canvas.fit()
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def _set_erasing(self, erasing: bool) -> None:
        self.canvas.erasing = erasing

    def _toggle_tool(self) -> None:
        (self.brush_button if self.eraser_button.isChecked() else self.eraser_button).setChecked(True)

    def _set_size(self, size: int) -> None:
        self.canvas.brush_size = size
        self.size_label.setText(f"{size} px")
        self.canvas.update()

    def _step_size(self, direction: int) -> None:
        """[ and ] change the size by about 15%, at least one pixel."""
        size = self.size_slider.value()
        step = max(1, round(size * 0.15))
        self.size_slider.setValue(size + direction * step)

    def _update_buttons(self) -> None:
        self.undo_button.setEnabled(self.canvas.can_undo())

    def target_path(self) -> tuple[Path, bool]:
        """Where Save writes, and whether that replaces the file: in place for sdgraph's own masked copy,
        else a new `<stem>_mask.png` beside the original (inside the input folder by construction)."""
        if self.canvas.picture.text(MARK_KEY) and self.source.suffix.lower() == ".png":
            return self.source, True
        return masked_copy_path(self.source), False

    def reject(self) -> None:
        """Cancel, Esc or the close button: painted strokes are not thrown away without asking."""
        if self._discarding or not self.canvas.can_undo():
            super().reject()
            return
        if self.discard_box is not None:
            return
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Mask Editor",
            "Discard the mask you painted?",
            QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _result: self._discard_answered(box))
        self.discard_box = box
        box.open()

    def _discard_answered(self, box: QMessageBox) -> None:
        discard = box.clickedButton() is box.button(QMessageBox.StandardButton.Discard)
        self.discard_box = None
        if discard:
            self._discarding = True
            super().reject()

    def save(self) -> None:
        """Write the masked PNG, point the node at it (undoable), close; a failure is reported, not lost."""
        folder = input_dir().resolve()
        original = self.canvas.picture.text(MARK_KEY) or self.image_name
        image = masked_picture(self.canvas.picture, self.canvas.mask, original)
        try:
            path, overwrite = self.target_path()
            if not path.resolve().parent.is_relative_to(folder):
                raise OSError(f"{path} is outside the input folder {folder}")
            write_png(image, path, overwrite=overwrite)
        except OSError as exc:
            QMessageBox.warning(self, "Mask Editor", f"The mask was not saved: {exc}")
            return
        name = path.resolve().relative_to(folder).as_posix()
        self.saved_name = name
        if self.node_id in self.graph.nodes and self.graph.nodes[self.node_id].values.get("image") != name:
            command = cmds.set_value_command(self.graph, self.node_id, "image", name)
            command.setText("Mask image")
            self.undo_stack.push(command)
        self.accept()
