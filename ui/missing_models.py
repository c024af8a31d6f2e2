"""The bar above the canvas that offers installed stand-ins for model files the workflow names but the
user does not have.

A shared workflow names its author's files; without this bar the user finds out at Run, from a red
node, and has to know which of their files would do. Here each missing file gets one row: the node
that uses it, the closest installed files of the same family (see `nodes.model_matching`), and one
click to use the chosen one in that node or in every node that names the missing file. The bar only
shows and asks; the window turns a request into one undo step.
"""

from __future__ import annotations

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QComboBox, QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from nodes.model_matching import MissingModel

KIND_NAMES = {"checkpoints": "checkpoint", "vae": "VAE", "loras": "LoRA", "controlnet": "ControlNet"}


class MissingModelRow(QWidget):
    replaceRequested = Signal(list, str)  # [(node id, input id)], the installed file to use

    def __init__(self, missing: MissingModel, first_use_label: str, models_folder: str, parent: QWidget) -> None:
        super().__init__(parent)
        self.missing = missing
        # Message above, controls below: a long file name must never widen the window.
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        layout = QHBoxLayout()
        kind = KIND_NAMES.get(missing.kind, missing.kind)
        family = f"{missing.family_name} " if missing.family_name else ""
        where = first_use_label + (f" and {len(missing.uses) - 1} more" if len(missing.uses) > 1 else "")
        self.label = QLabel(f"{where}: {family}{kind} <b>{missing.name}</b> is not installed.")
        self.label.setToolTip(f"{missing.name} is used by {len(missing.uses)} node(s)")
        self.label.setWordWrap(True)
        outer.addWidget(self.label)
        outer.addLayout(layout)
        self.choices = QComboBox()
        self.use_here = QPushButton("Use here")
        self.use_everywhere = QPushButton(f"Use in all {len(missing.uses)}")
        if missing.candidates:
            if missing.family and not missing.same_family:  # said in the message too: a combo box cuts names
                self.label.setText(f"{self.label.text()} No {family}{kind} is installed; these are of other families:")
            for i, name in enumerate(missing.candidates):
                same = i < missing.same_family
                self.choices.addItem(name if same or not missing.family else f"{name}  (other family)", name)
            self.choices.setMinimumContentsLength(16)
            self.choices.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            self.choices.setToolTip("installed files, the same family first, closest name first")
            layout.addWidget(QLabel("Use"))
            layout.addWidget(self.choices)
            layout.addWidget(self.use_here)
            if len(missing.uses) > 1:
                layout.addWidget(self.use_everywhere)
            self.use_here.clicked.connect(lambda: self.replaceRequested.emit(missing.uses[:1], self.chosen()))
            self.use_everywhere.clicked.connect(lambda: self.replaceRequested.emit(list(missing.uses), self.chosen()))
        else:
            self.label.setText(f"{self.label.text()} No {family}{kind} is installed: put one in {models_folder}")
            open_folder = QPushButton("Open models folder")
            open_folder.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(models_folder)))
            layout.addWidget(open_folder)
        layout.addStretch(1)

    def chosen(self) -> str:
        return str(self.choices.currentData())


class MissingModelsBar(QFrame):
    """Rows for every missing model file; hidden when there are none."""

    replaceRequested = Signal(list, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("missing-models")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        # Its own colours in both themes: a warning strip with light text on dark amber.
        self.setStyleSheet(
            "#missing-models { background: #3a3220; border: 1px solid #7a6020; }"
            " #missing-models QLabel { color: #f1e7b5; }"
        )
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(8, 4, 8, 4)
        self.rows: list[MissingModelRow] = []
        self.hide()

    def show_missing(self, missing: list[MissingModel], labels: dict[int, str], models_root: str) -> None:
        """Replace the rows; `labels` names each node id for the person (its title)."""
        for row in self.rows:
            self._layout.removeWidget(row)
            row.deleteLater()
        self.rows = []
        for entry in missing:
            folder = f"{models_root}/{entry.kind}"
            row = MissingModelRow(entry, labels.get(entry.uses[0][0], "a node"), folder, self)
            row.replaceRequested.connect(self.replaceRequested)
            self._layout.addWidget(row)
            self.rows.append(row)
        self.setVisible(bool(self.rows))
