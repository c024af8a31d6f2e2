"""Preferences: everything `settings.json` holds that a person would change, in one dialog.

The dialog edits a copy and hands back a new `Settings` only on OK, so Cancel (or closing it) changes
nothing; the window then saves the file and applies what changed (model folders, the executor's device
and precision) to the open document. Fields are named as in `app/settings.py`, so the dialog and the
file never disagree.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.settings import Settings


def _qt_folder(parent: QWidget | None, caption: str, start: str) -> str:
    return QFileDialog.getExistingDirectory(parent, caption, start)


def _qt_file(parent: QWidget | None, caption: str, start: str) -> str:
    return QFileDialog.getOpenFileName(parent, caption, start, "YAML (*.yaml *.yml);;All files (*)")[0]


# The "Browse…" buttons' dialogs, replaceable by tests (a native modal dialog cannot be driven offscreen).
browse_folder = _qt_folder
browse_file = _qt_file

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = (
    ("exact", "Exact (float32; the reference results)"),
    ("fast", "Fast (bf16/fp16 where the device computes it natively)"),
)


class PreferencesDialog(QDialog):
    """Device, precision, memory budgets, model folders and output folder."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.setObjectName("preferences")
        self._settings = settings
        form = QFormLayout()

        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setCurrentText(settings.device if settings.device in DEVICES else "auto")
        self.device.setToolTip("Where models run; auto picks CUDA, then MPS, then the CPU")
        form.addRow("&Device", self.device)

        self.precision = QComboBox()
        for key, label in PRECISIONS:
            self.precision.addItem(label, key)
        self.precision.setCurrentIndex(max(0, self.precision.findData(settings.precision)))
        form.addRow("&Precision", self.precision)

        self.theme = QComboBox()
        self.theme.addItems(["dark", "light"])
        self.theme.setCurrentText(settings.theme if settings.theme in ("dark", "light") else "dark")
        form.addRow("&Theme", self.theme)

        self.compile = QCheckBox("Compile the denoiser for each image size (slow first run, faster after)")
        self.compile.setChecked(settings.compile)
        form.addRow("", self.compile)

        self.model_budget = _megabytes(settings.model_budget_mb, "automatic (70 % of memory)")
        self.model_budget.setToolTip("Memory for loaded models; the least recently used are freed beyond it")
        form.addRow("&Model memory budget", self.model_budget)
        self.vram_budget = _megabytes(settings.vram_budget_mb, "whatever the card has")
        self.vram_budget.setToolTip("GPU only: idle models move to the CPU beyond this")
        form.addRow("&VRAM budget", self.vram_budget)
        self.cache_budget = _megabytes(settings.cache_budget_mb, "none")
        self.cache_budget.setToolTip("Memory for node results kept so that unchanged nodes do not run again")
        form.addRow("&Result cache", self.cache_budget)

        self.model_roots = QPlainTextEdit("\n".join(settings.extra_model_roots))
        self.model_roots.setPlaceholderText("One folder per line, each with checkpoints/, loras/, vae/, …")
        self.model_roots.setTabChangesFocus(True)
        self.model_roots.setFixedHeight(72)
        form.addRow("Extra model &folders", self.model_roots)
        self.comfy_paths = _path_row(settings.comfyui_extra_model_paths, "ComfyUI extra_model_paths.yaml", folder=False)
        form.addRow("Com&fyUI model paths", self.comfy_paths)
        self.a1111 = _path_row(settings.a1111_install, "an AUTOMATIC1111 / Forge folder", folder=True)
        form.addRow("&A1111 install", self.a1111)
        self.output = _path_row(settings.output_dir, "default: the output folder in sdgraph's data folder", folder=True)
        form.addRow("&Output folder", self.output)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def result_settings(self) -> Settings:
        """The settings as edited (a new object; the one passed in is untouched)."""
        roots = [line.strip() for line in self.model_roots.toPlainText().splitlines() if line.strip()]
        return replace(
            self._settings,
            device=self.device.currentText(),
            precision=str(self.precision.currentData()),
            theme=self.theme.currentText(),
            compile=self.compile.isChecked(),
            model_budget_mb=self.model_budget.value(),
            vram_budget_mb=self.vram_budget.value(),
            cache_budget_mb=self.cache_budget.value(),
            extra_model_roots=roots,
            comfyui_extra_model_paths=_text(self.comfy_paths),
            a1111_install=_text(self.a1111),
            output_dir=_text(self.output),
            recent_files=list(self._settings.recent_files),
            extra=dict(self._settings.extra),
        )


def _megabytes(value: int, zero_means: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(0, 1024 * 1024)
    box.setSingleStep(512)
    box.setSuffix(" MB")
    box.setSpecialValueText(f"0 — {zero_means}")
    box.setValue(max(0, int(value)))
    return box


def _path_row(value: str, placeholder: str, *, folder: bool) -> QWidget:
    row = QWidget()
    edit = QLineEdit(value)
    edit.setObjectName("path")
    edit.setPlaceholderText(placeholder)
    browse = QPushButton("Browse…")

    def pick() -> None:
        chosen = (browse_folder if folder else browse_file)(row, placeholder, edit.text())
        if chosen:
            edit.setText(chosen)

    browse.clicked.connect(pick)
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    layout.addWidget(browse)
    return row


def _text(row: QWidget) -> str:
    edit = row.findChild(QLineEdit, "path")
    assert edit is not None
    return edit.text().strip()
