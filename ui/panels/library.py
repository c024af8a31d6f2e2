"""The node library: every registered node type, grouped by category, filterable as you type.

Double-clicking a type (or pressing Enter on it) asks the window to add it at the centre of the view;
dragging it out carries the type name as `NODE_TYPE_MIME`, which the window accepts when it is
dropped on the canvas. The panel reads the registry only; it never touches a graph.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtWidgets import QLineEdit, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from graph_engine import NodeRegistry
from ui import node_titles

NODE_TYPE_MIME = "application/x-sdgraph-node-type"
_TYPE_ROLE = Qt.ItemDataRole.UserRole
_NAMES_ROLE = Qt.ItemDataRole.UserRole + 1  # every name the filter matches: both titles and the type


class _Tree(QTreeWidget):
    def mimeData(self, items: Sequence[QTreeWidgetItem]) -> QMimeData:  # type: ignore[override]
        mime = QMimeData()
        types = [t for item in items if (t := item.data(0, _TYPE_ROLE))]
        if types:
            mime.setData(NODE_TYPE_MIME, types[0].encode())
            mime.setText(types[0])
        return mime

    def mimeTypes(self) -> list[str]:
        return [NODE_TYPE_MIME]


def _pack_name(source: str) -> str:
    """The short name a row shows: the package's name, or the pack's folder or file name."""
    kind, _, where = source.partition(" ")
    return where.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] if kind == "folder" else where or source


class NodeLibraryPanel(QWidget):
    addNodeRequested = Signal(str)  # node type

    def __init__(self, registry: NodeRegistry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.registry = registry
        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText("Filter nodes…")
        self.filter.setClearButtonEnabled(True)
        self.tree = _Tree(self)
        self.tree.setHeaderHidden(True)
        self.tree.setDragEnabled(True)
        self.tree.setDragDropMode(QTreeWidget.DragDropMode.DragOnly)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.filter)
        layout.addWidget(self.tree)
        self.filter.textChanged.connect(self._apply_filter)
        self.filter.returnPressed.connect(self._add_first_visible)
        self.tree.itemActivated.connect(self._activated)
        self.rebuild()

    def rebuild(self) -> None:
        """Refill from the registry (node packs may register types after the window opened)."""
        self.tree.clear()
        categories: dict[str, QTreeWidgetItem] = {}
        # ComfyUI's "_for_testing"-style categories go last rather than first
        for spec in sorted(self.registry, key=lambda sp: sp.category.startswith("_")):
            if spec.category not in categories:
                cat = QTreeWidgetItem([spec.category])
                cat.setFlags(Qt.ItemFlag.ItemIsEnabled)
                self.tree.addTopLevelItem(cat)
                categories[spec.category] = cat
            item = QTreeWidgetItem([node_titles.title(spec)])
            item.setData(0, _TYPE_ROLE, spec.type)
            item.setData(0, _NAMES_ROLE, " ".join(node_titles.search_names(spec)))
            other = node_titles.other_title(spec)
            source = self.registry.source(spec.type)
            lines = (other and f"also: {other}", spec.description or spec.type, source and f"plugin: {source}")
            item.setToolTip(0, "\n".join(t for t in lines if t))
            if source:  # a node pack's type: said in its row, not only in the tooltip
                item.setText(0, f"{item.text(0)} (plugin: {_pack_name(source)})")
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled)
            categories[spec.category].addChild(item)
        self.tree.expandAll()
        self._apply_filter(self.filter.text())

    def type_items(self) -> list[QTreeWidgetItem]:
        items = []
        for i in range(self.tree.topLevelItemCount()):
            cat = self.tree.topLevelItem(i)
            items.extend(cat.child(j) for j in range(cat.childCount()))
        return items

    def item_for(self, node_type: str) -> QTreeWidgetItem | None:
        return next((it for it in self.type_items() if it.data(0, _TYPE_ROLE) == node_type), None)

    def _apply_filter(self, text: str) -> None:
        needle = text.strip().lower()
        for i in range(self.tree.topLevelItemCount()):
            cat = self.tree.topLevelItem(i)
            cat_match = needle in cat.text(0).lower()
            visible = 0
            for j in range(cat.childCount()):
                item = cat.child(j)
                hay = f"{item.text(0)} {item.data(0, _NAMES_ROLE)}".lower()  # both titles and the type
                show = not needle or cat_match or needle in hay
                item.setHidden(not show)
                visible += show
            cat.setHidden(visible == 0)

    def _add_first_visible(self) -> None:
        for item in self.type_items():
            if not item.isHidden() and not item.parent().isHidden():
                self.addNodeRequested.emit(item.data(0, _TYPE_ROLE))
                return

    def _activated(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        node_type = item.data(0, _TYPE_ROLE)
        if node_type:
            self.addNodeRequested.emit(node_type)
