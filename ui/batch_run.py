"""Run ▸ Batch to Folder…: Run ×N handed to the batch machinery of `sdgraph batch`, from the window.

Run ×N keeps its images in the output folder under counters, and a run that was cancelled is simply
gone. A batch to a folder is repeatable instead: the N runs become jobs named by their seeds (and a
hash of the graph), written with a manifest (`app.batch`), so asking again for the same folder runs
only what is missing: the jobs a cancel (Esc) stopped, a job that failed, a file that was deleted.
That is why the live seeds do not move on here as they do after Run ×N: the same graph and folder
name the same jobs. To make new images, change a seed or pick another folder.

An XY Sweep node's context menu has Run Cells as Batch…: the same dialog without a count, and the
node's cells become the jobs (`app.batch.jobs.xy_sweep_jobs`), one file per cell named by its values.

The dialog asks for the folder (the folder chooser starts where the window's other dialogs do), how
many runs (the Run bar's ×N), and optionally a Ray cluster's address. Ray is an optional extra: the
dialog only *looks* whether it is installed (`importlib.util.find_spec`, no import), and the backend
is started on a worker thread, so neither Ray nor torch is imported on the Qt thread. With every seed
fixed it asks what Run ×N asks (`run_bar.ask_fixed_seed`). The work runs on the document's run
controller (`RunController.run_many_as_batch`), off the Qt thread, with progress on the Run bar.
"""

from __future__ import annotations

import asyncio
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ui import file_dialogs, run_bar
from ui.run_controller import RunController, snapshot

RAY_HINT = "Ray is not installed (pip install sdgraph[cluster])"


def ray_available() -> bool:
    """Whether `import ray` would work, without importing it (it is slow and pulls in much)."""
    return importlib.util.find_spec("ray") is not None


@dataclass(frozen=True)
class BatchRequest:
    folder: Path
    count: int
    ray_address: str | None  # None: in this process, on the window's executor


class BatchDialog(QDialog):
    """Folder, number of runs, and optionally a Ray cluster; OK is enabled once a folder is given."""

    def __init__(self, parent: QWidget | None, count: int | None, *, ray: bool, title: str = "Batch to Folder") -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setObjectName("batch-dialog")
        self.folder = QLineEdit(self)
        self.folder.setObjectName("batch-folder")
        self.folder.setPlaceholderText("the folder the images and the manifest go to")
        self.choose = QPushButton("Choose…", self)
        self.choose.setObjectName("batch-choose")
        self.choose.clicked.connect(lambda _checked=False: self._choose())
        self.count = QSpinBox(self)
        self.count.setObjectName("batch-count")
        self.count.setRange(1, run_bar.MAX_RUNS)
        self.count.setValue(max(1, count or 1))
        self.use_ray = QCheckBox("On a Ray cluster", self)
        self.use_ray.setObjectName("batch-ray")
        self.address = QLineEdit("auto", self)
        self.address.setObjectName("batch-ray-address")
        self.address.setToolTip("auto (RAY_ADDRESS, else a local cluster) or a cluster address such as host:6379")
        self.use_ray.setEnabled(ray)
        self.address.setEnabled(False)
        if not ray:
            self.use_ray.setToolTip(RAY_HINT)
        self.use_ray.toggled.connect(self.address.setEnabled)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(self.choose)
        form = QFormLayout(self)
        form.addRow("Folder:", row)
        if count is not None:  # an XY Sweep's cells are as many as its values make
            form.addRow("Runs:", self.count)
        else:
            self.count.hide()
        form.addRow(self.use_ray, self.address)
        note = QLabel("Files are named by job. Asking again for the same folder runs only what is missing.", self)
        note.setWordWrap(True)
        form.addRow(note)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)
        self.folder.textChanged.connect(lambda _text: self._update_ok())
        self._update_ok()

    def _choose(self) -> None:
        current = Path(self.folder.text()) if self.folder.text().strip() else None
        chosen = file_dialogs.ask_folder(self, "Batch output folder", file_dialogs.start_folder(current))
        if chosen is not None:
            self.folder.setText(str(chosen))

    def _update_ok(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(self.folder.text().strip()))

    def request(self) -> BatchRequest:
        address = self.address.text().strip() or "auto"
        return BatchRequest(
            Path(self.folder.text().strip()).expanduser(),
            self.count.value(),
            address if self.use_ray.isChecked() and self.use_ray.isEnabled() else None,
        )


def ask_batch(
    parent: QWidget, count: int | None, graph: Any, registry: Any, title: str = "Batch to Folder"
) -> tuple[BatchRequest, bool] | None:
    """The dialog, then (with every seed fixed) Run ×N's question; None when the user cancels either.
    `count` None: an XY Sweep's cells, no count to ask and no seeds to vary."""
    from ui.canvas.seed import all_seeds_fixed

    dialog = BatchDialog(parent, count, ray=ray_available(), title=title)
    try:
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        request = dialog.request()
    finally:
        dialog.deleteLater()
    vary = False
    if count is not None and request.count > 1 and all_seeds_fixed(graph, registry):
        answer = run_bar.ask_fixed_seed(parent, request.count)
        if answer == run_bar.CANCEL:
            return None
        vary = answer == run_bar.VARY_SEED
    return request, vary


def _start_ray(workflow: dict[str, Any], address: str) -> Any:
    """On a worker thread: Ray (and what the workers' config reads) is imported here, never on the Qt thread."""
    from app.batch.ray_runner import RayBackend
    from app.batch.runner import WorkerConfig
    from app.settings import Settings

    settings = Settings.load()
    config = WorkerConfig.current(device=settings.device, precision=settings.precision, compile=None, threads=None)
    backend = RayBackend(workflow, config, address=address)
    try:
        backend.start()
    except BaseException:
        backend.close()
        raise
    return backend


async def run_batch_to_folder(
    controller: RunController, request: BatchRequest, vary_seeds: bool, log: Any, *, sweep_node: int | None = None
) -> Any:
    """Run the batch on the controller; `log(level, text)` gets the summary and where the files are.

    `sweep_node`: the jobs are that XY Sweep node's cells (`xy_sweep_jobs`: the node replaced by a
    KSampler, VAEDecode and SaveImage per cell), not N runs of the graph."""
    from app.batch.jobs import JobSpecError, xy_sweep_jobs
    from graph_engine.serialization import graph_to_dict

    loop = asyncio.get_running_loop()
    graph, workflow = snapshot(controller.graph)
    cells = None
    if sweep_node is not None:
        try:
            plain, cells = xy_sweep_jobs(graph, controller.registry, str(sweep_node))
        except JobSpecError as exc:
            log("error", f"Batch: {exc}")
            return None
        workflow = graph_to_dict(plain)
    backend = None
    if request.ray_address is not None:
        log("info", f"Batch: starting Ray workers ({request.ray_address})…")
        try:
            backend = await loop.run_in_executor(None, _start_ray, workflow, request.ray_address)
        except Exception as exc:  # Ray missing, no cluster at that address, not enough resources
            log("error", f"Batch: Ray could not start: {exc}")
            return None
    try:
        if cells is not None:
            report = await controller.run_jobs_as_batch(cells, workflow, request.folder, backend=backend)
        else:
            report = await controller.run_many_as_batch(
                request.count, request.folder, vary_seeds=vary_seeds, backend=backend, advance_seeds=False
            )
    except JobSpecError as exc:
        log("error", f"Batch: {exc}")
        return None
    finally:
        if backend is not None:
            await loop.run_in_executor(None, backend.close)
    parts = [f"{len(report.done)} made"]
    if report.skipped:
        parts.append(f"{report.skipped} already there")
    if report.failed:
        parts.append(f"{len(report.failed)} failed")
    if not report.finished:
        parts.append(f"{report.total - report.skipped - len(report.done) - len(report.failed)} not run")
    level = "info" if report.finished else "warning"
    where = f"the files are in {request.folder}"
    ask = "" if report.finished else " (ask again to run what is missing)"
    log(level, f"Batch of {report.total} job{'s' * (report.total != 1)}: {', '.join(parts)}; {where}{ask}")
    return report
