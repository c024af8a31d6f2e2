"""The add-node search: a fuzzy ranking (pure functions) and the small popup that shows it.

`fuzzy_score` matches every query word as a subsequence of a node's display name, type and category,
rewarding whole substrings, word starts and early matches, so "ksa" finds KSampler and "empty lat"
finds Empty Latent Image. `compatible_specs` is the filter used when a wire is dropped on empty canvas:
it keeps only node types with a socket that `graph_engine.types.types_compatible` accepts, and says
which socket the new node will be wired through.

The popup is a child widget of the canvas (not a separate window), so it cannot lose a race with the
window manager and close before it is used (behave-graph #219). It closes on Escape, on a pick, or when
the canvas is clicked elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QFrame, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from graph_engine.node_spec import NodeRegistry, NodeSpec
from graph_engine.types import types_compatible
from ui import theme


def fuzzy_score(query: str, text: str) -> float | None:
    """Higher is better; None when some query word does not appear (as a subsequence) in `text`."""
    text_l = text.lower()
    total = 0.0
    for word in query.lower().split():
        pos = text_l.find(word)
        if pos >= 0:
            at_word_start = pos == 0 or not text_l[pos - 1].isalnum()
            total += 10.0 * len(word) + (8.0 if at_word_start else 0.0) - pos * 0.05
            continue
        # subsequence: each character after the previous one, bonus for consecutive runs
        i, score, prev = 0, 0.0, -2
        for ch in word:
            j = text_l.find(ch, i)
            if j < 0:
                return None
            score += 3.0 if j == prev + 1 else (2.0 if j == 0 or not text_l[j - 1].isalnum() else 1.0)
            prev, i = j, j + 1
        total += score - prev * 0.02
    return total


def _haystack(spec: NodeSpec) -> str:
    return f"{spec.display_name} | {spec.type} | {spec.category}"


@dataclass(frozen=True)
class Candidate:
    spec: NodeSpec
    # For a wire-drop search: the socket of the new node the dragged wire will join.
    socket: str | None = None


def rank(query: str, candidates: Iterable[Candidate]) -> list[Candidate]:
    """Candidates matching `query`, best first; an empty query keeps the given (menu) order."""
    items = list(candidates)
    if not query.strip():
        return items
    scored = []
    for i, c in enumerate(items):
        s = fuzzy_score(query, _haystack(c.spec))
        if s is not None:
            # the display name alone matters most
            name_bonus = fuzzy_score(query, c.spec.display_name)
            scored.append((-(s + (name_bonus or 0.0)), i, c))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [c for _, _, c in scored]


def all_candidates(registry: NodeRegistry) -> list[Candidate]:
    return [Candidate(spec) for spec in registry]


def compatible_specs(registry: NodeRegistry, type_name: str, *, from_output: bool) -> list[Candidate]:
    """Node types that can take a wire of `type_name` (dragged from an output) or feed it (from an input).

    The first compatible socket is chosen: socket inputs before widget inputs, so dropping a LATENT wire
    offers VAE Decode wired through `samples`, and an INT wire prefers a socket over a widget.
    """
    out: list[Candidate] = []
    for spec in registry:
        if spec.virtual:
            continue
        if from_output:
            inputs = sorted(spec.inputs, key=lambda i: i.is_widget)
            sock = next((i.id for i in inputs if types_compatible(type_name, i.type) is None), None)
        else:
            sock = next((o.id for o in spec.outputs if types_compatible(o.type, type_name) is None), None)
        if sock is not None:
            out.append(Candidate(spec, sock))
    return out


class NodeSearchPopup(QFrame):
    """Type to filter, arrows to move, Enter to add, Escape to close."""

    chosen = Signal(object)  # Candidate
    closed = Signal()

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("nodeSearch")
        self.setStyleSheet(theme.SEARCH_STYLE)
        self.setFixedSize(300, 320)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(4)
        self.edit = QLineEdit(self)
        self.edit.setPlaceholderText("Search nodes…")
        self.list = QListWidget(self)
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        lay.addWidget(self.edit)
        lay.addWidget(self.list)
        self._candidates: list[Candidate] = []
        self._shown: list[Candidate] = []
        self.edit.textChanged.connect(self._refilter)
        self.edit.installEventFilter(self)
        self.list.itemActivated.connect(lambda _item: self._pick())
        self.list.itemClicked.connect(lambda _item: self._pick())
        self.hide()

    def open(self, candidates: list[Candidate], at: QPoint) -> None:
        self._candidates = candidates
        parent = self.parentWidget()
        x = min(max(at.x(), 0), max(parent.width() - self.width(), 0)) if parent else at.x()
        y = min(max(at.y(), 0), max(parent.height() - self.height(), 0)) if parent else at.y()
        self.move(x, y)
        self.edit.blockSignals(True)
        self.edit.clear()
        self.edit.blockSignals(False)
        self._refilter("")
        self.show()
        self.raise_()
        self.edit.setFocus(Qt.FocusReason.PopupFocusReason)

    def shown_types(self) -> list[str]:
        return [c.spec.type for c in self._shown]

    def _refilter(self, text: str) -> None:
        self._shown = rank(text, self._candidates)
        self.list.clear()
        for c in self._shown:
            label = f"{c.spec.display_name}"
            if c.socket:
                label += f"   → {c.socket}"
            item = QListWidgetItem(label)
            item.setToolTip(f"{c.spec.type} · {c.spec.category}\n{c.spec.description}".strip())
            self.list.addItem(item)
        if self._shown:
            self.list.setCurrentRow(0)

    def _pick(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self._shown):
            cand = self._shown[row]
            self.close_popup()
            self.chosen.emit(cand)

    def close_popup(self) -> None:
        if self.isVisible():
            self.hide()
            self.closed.emit()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.edit and event.type() == QEvent.Type.KeyPress:
            assert isinstance(event, QKeyEvent)
            key = event.key()
            if key in (Qt.Key.Key_Down, Qt.Key.Key_Up):
                n = self.list.count()
                if n:
                    step = 1 if key == Qt.Key.Key_Down else -1
                    self.list.setCurrentRow((self.list.currentRow() + step) % n)
                return True
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self._pick()
                return True
            if key == Qt.Key.Key_Escape:
                self.close_popup()
                return True
            if key == Qt.Key.Key_Tab:
                return True
        return super().eventFilter(obj, event)
