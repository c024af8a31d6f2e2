"""Real text editors, opened over a painted widget only while it is being edited.

Nodes paint their widgets; when a person clicks to type a number, rename a node or edit a prompt, the
canvas opens one of these over the widget's on-screen rectangle. Enter (Ctrl+Enter for multi-line
text) or clicking elsewhere commits; Escape cancels. The editor then reports the text through a
callback and deletes itself, so at most one real editor widget exists at a time.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QRect, QSize, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QLineEdit, QPlainTextEdit, QWidget

from ui import theme


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
            rect = QRect(rect.topLeft(), rect.size().expandedTo(QSize(280, 150)))
        else:
            w = QLineEdit(parent)
            w.setText(text)
            w.selectAll()
            rect = QRect(rect.topLeft(), rect.size().expandedTo(QSize(80, 22)))
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
