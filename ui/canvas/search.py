"""The add-node search: a tiered ranking (pure functions) and the small popup that shows it.

A node matches through its display title or its ComfyUI type name, at the best of these tiers: exact,
prefix ("ksam" → KSampler), every query word starting a word of the name ("vae dec" → VAE Decode,
"vd" by initials, camel-case humps count as words), every word inside the name, and last a tight
fuzzy match (the letters in order within a short window). Letters scattered over a long name are not a
match: showing nothing beats showing noise ("reroute" must not offer Random Noise).

`compatible_specs` is the filter used when a wire is dropped on empty canvas: it keeps only node types
with a socket that `graph_engine.types.types_compatible` accepts, and says which socket the new node
will be wired through.

The popup is a child widget of the canvas (not a separate window), so it cannot lose a race with the
window manager and close before it is used (behave-graph #219). It closes on Escape, on a pick, or when
the canvas is clicked elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QFrame, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from graph_engine.node_spec import NodeRegistry, NodeSpec
from graph_engine.types import types_compatible
from ui import node_titles, theme

# Match tiers, best first. A node matches at the best tier any of its names (display title, ComfyUI
# type) reaches; within a tier the shorter matching name wins, then the menu order.
EXACT, PREFIX, WORD_START, SUBSTRING, FUZZY = 5, 4, 3, 2, 1
MIN_SUBSTRING = 3  # "ois" inside "noise" is a match, "oi" is noise
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def name_words(text: str) -> list[str]:
    """A name's words, lower case: split at spaces and punctuation and at camel-case humps, so the type
    `VAEDecode` gives ["vae", "decode"] and `KSamplerAdvanced` gives ["k", "sampler", "advanced"]."""
    return [w.lower() for w in _CAMEL.findall(text)]


def _compact(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _tight_subsequence(word: str, text: str) -> bool:
    """`word`'s letters in order inside `text`, within a short window: at most one skipped character
    for every three typed (a typo-tolerant "ksmp" → "ksamp"), never letters scattered across the name."""
    allowed = max(1, len(word) // 3)
    for start in range(len(text)):
        if text[start] != word[0]:
            continue
        i, j = 1, start + 1
        while i < len(word) and j < len(text) and j - start - i <= allowed:
            if text[j] == word[i]:
                i += 1
            j += 1
        if i == len(word) and (j - start) - len(word) <= allowed:
            return True
    return False


def _word_tier(word: str, text: str, words: list[str]) -> int | None:
    """How one query word matches one name: a word start, initials ("vd" → VAE Decode), a substring,
    a tight fuzzy match, or not at all."""
    if any(w.startswith(word) for w in words):
        return WORD_START
    initials = "".join(w[0] for w in words if w)
    if len(word) >= 2 and initials.startswith(word):
        return WORD_START
    compact = _compact(text)
    if len(word) >= MIN_SUBSTRING and (word in text.lower() or word in compact):
        return SUBSTRING
    if len(word) >= MIN_SUBSTRING and _tight_subsequence(word, compact):
        return FUZZY
    return None


def match_tier(query: str, text: str) -> int | None:
    """The best tier at which `query` matches the name `text`, or None: exact, prefix (of the name or
    of its letters, so "vaedec" finds VAEDecode), every query word a word start, or — the loosest —
    every word a substring or a tight fuzzy match. Scattered letters never match."""
    q = " ".join(query.lower().split())
    if not q:
        return None
    name = " ".join(text.lower().split())
    qc, nc = _compact(q), _compact(name)
    if q == name or (qc and qc == nc):
        return EXACT
    if name.startswith(q) or (qc and nc.startswith(qc)):
        return PREFIX
    words = name_words(text)
    tiers = [_word_tier(w, text, words) for w in q.split()]
    if any(t is None for t in tiers):
        return None
    return min(t for t in tiers if t is not None)


def fuzzy_score(query: str, text: str) -> float | None:
    """Higher is better; None when `query` does not match `text` (see `match_tier`). Shorter names
    score higher within a tier, so "ksam" puts KSampler before KSampler (Advanced)."""
    tier = match_tier(query, text)
    if tier is None:
        return None
    return tier * 1000.0 - len(text)


def spec_score(query: str, spec: NodeSpec) -> float | None:
    """A node's score: the best over its names (ComfyUI's title, sdgraph's title and its type name),
    so a person finds a node by whichever name they know, whichever one the canvas shows."""
    scores = [s for s in (fuzzy_score(query, name) for name in node_titles.search_names(spec)) if s is not None]
    return max(scores) if scores else None


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
        score = spec_score(query, c.spec)
        if score is not None:
            scored.append((-score, i, c))
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
            label = node_titles.title(c.spec)
            other = node_titles.other_title(c.spec)
            if other:
                label += f"   ({other})"
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
