"""Real text editors, opened over a painted widget only while it is being edited.

Nodes paint their widgets; when a person clicks to type a number, rename a node or edit a prompt, the
canvas opens one of these over the widget's on-screen rectangle. Enter (Ctrl+Enter for multi-line
text) or clicking elsewhere commits; Escape cancels. The editor then reports the text through a
callback and deletes itself, so at most one real editor widget exists at a time.

An editor is a real widget on top of the canvas, so whatever it covers cannot be clicked. It therefore
never reaches outside the item it edits (`bounds`, the node on screen): it grows to a comfortable size
where the node has room, shifts up or left inside the node if needed, and is cut to the node's edges
otherwise. Zoomed out, the default graph's two Encode Prompt nodes sit close together; a prompt editor
that kept its full size covered the lower prompt, and a click there typed into the upper one.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QRect, QSize, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QLineEdit, QPlainTextEdit, QWidget

from ui import theme


def fit_rect(rect: QRect, minimum: QSize, bounds: QRect | None) -> QRect:
    """`rect` grown to `minimum` (down and right), then kept inside `bounds`: moved back up or left as
    far as `bounds` allows, and cut at its edges when `bounds` is smaller still. The result always
    covers `rect` itself where `bounds` holds it."""
    grown = QRect(rect.topLeft(), rect.size().expandedTo(minimum))
    if bounds is None or not bounds.isValid():
        return grown
    dx = min(0, bounds.right() - grown.right())  # past the right edge: move left ...
    dy = min(0, bounds.bottom() - grown.bottom())  # ... or up
    moved = grown.translated(max(dx, bounds.left() - grown.left()), max(dy, bounds.top() - grown.top()))
    moved = moved.united(rect.intersected(bounds))  # never uncover the widget being edited
    return moved.intersected(bounds)


class InlineEditor(QObject):
    """Owns one editor widget and calls `on_commit(text)` at most once, then removes the widget."""

    def __init__(
        self,
        parent: QWidget,
        rect: QRect,
        text: str,
        on_commit: Callable[[str], None],
        *,
        multiline: bool = False,
        bounds: QRect | None = None,
    ) -> None:
        super().__init__(parent)
        self.multiline = multiline
        self._on_commit = on_commit
        self._done = False
        self.widget: QLineEdit | QPlainTextEdit
        if multiline:
            w = QPlainTextEdit(parent)
            w.setPlainText(text)
            w.setTabChangesFocus(True)
            rect = fit_rect(rect, QSize(280, 150), bounds)
        else:
            w = QLineEdit(parent)
            w.setText(text)
            w.selectAll()
            rect = fit_rect(rect, QSize(80, 22), bounds)
        w.setStyleSheet(theme.EDITOR_STYLE)
        w.setGeometry(rect)
        w.installEventFilter(self)
        w.show()
        w.setFocus(Qt.FocusReason.MouseFocusReason)
        self.widget = w

    def text(self) -> str:
        w = self.widget
        return w.toPlainText() if isinstance(w, QPlainTextEdit) else w.text()

    def commit(self) -> None:
        if self._done:
            return
        text = self.text()
        self._finish()
        self._on_commit(text)

    def cancel(self) -> None:
        if not self._done:
            self._finish()

    def _finish(self) -> None:
        self._done = True
        self.widget.removeEventFilter(self)
        self.widget.hide()
        self.widget.deleteLater()
        self.deleteLater()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if self._done:
            return False
        if event.type() == QEvent.Type.KeyPress:
            assert isinstance(event, QKeyEvent)
            key = event.key()
            if key == Qt.Key.Key_Escape:
                self.cancel()
                return True
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and (
                not self.multiline or event.modifiers() & Qt.KeyboardModifier.ControlModifier
            ):
                self.commit()
                return True
        elif event.type() == QEvent.Type.FocusOut:
            self.commit()
        return False
