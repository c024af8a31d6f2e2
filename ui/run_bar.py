"""The Run bar above the canvas: a Run button, how many runs (×N), and the whole run's progress.

Running used to be a menu entry and Ctrl+Enter, and the only progress was each node's own bar on the
canvas, so a person could not tell how far a run (or a Run ×N) had got, or how long it would still
take. The bar shows one progress bar for everything that was asked for and a clock: "0:12 elapsed,
~0:30 left", updated while running and cleared when the last queued run ends.

How far a run is comes from the run controller's per-node notifications: the engine announces the
nodes it plans to run (state "queued"), each ends "done" or "cached", and a node that reports steps (a
sampler) counts as that fraction of one node while it runs. For Run ×N the fraction is over all N
runs: run k of N adds (k - 1)/N. The estimate is the elapsed time scaled by what is left; it is shown
once a little of the work is done, so the first guess is not wild.

The bar knows nothing of documents: the window `attach`es it to the open document's controller and
turns `runRequested(count)` into runs; `batchRequested(count)` (the "To folder…" button beside ×N) into
Run ▸ Batch to Folder…, whose progress counts jobs ("job 2 of 3") from the controller's `batchProgress`.
Before Run ×N on a graph whose seeds are all "fixed" it asks `ask_fixed_seed` (a module function, so
tests and other front ends can answer it): N runs of one seed are one image and N - 1 cache hits,
which is rarely what someone clicking ×N wants.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import Qt, QTimer, Signal, SignalInstance
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QWidget,
)

from ui.run_controller import RunController

PROGRESS_RANGE = 1000  # the bar's maximum: fractions to a tenth of a percent
CLOCK_INTERVAL_MS = 250  # the elapsed time ticks even while no event arrives
MIN_FRACTION_FOR_ESTIMATE = 0.02
MAX_RUNS = 1000

BUTTON_STYLE = """
QPushButton { background: #2e7d32; color: #ffffff; border: 1px solid #1b5e20; border-radius: 4px;
              padding: 4px 18px; }
QPushButton:hover { background: #388e3c; }
QPushButton:pressed { background: #1b5e20; }
"""


# What to do about Run ×N with every seed fixed.
VARY_SEED = "vary"
RUN_ANYWAY = "anyway"
CANCEL = "cancel"
VARY_TEXT = "Vary the seed"
ANYWAY_TEXT = "Run anyway"


def ask_fixed_seed(parent: QWidget | None, count: int) -> str:
    """Every seed is fixed: vary it per run (VARY_SEED), run as asked (RUN_ANYWAY) or not (CANCEL)."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle(f"Run ×{count}")
    box.setText(
        f"Every seed in this graph is fixed, so the {count} runs would make the same image {count} times "
        f"(all but the first straight from the cache)."
    )
    box.setInformativeText("Vary the seed adds one to it for each run; the seed controls stay fixed.")
    vary = box.addButton(VARY_TEXT, QMessageBox.ButtonRole.AcceptRole)
    anyway = box.addButton(ANYWAY_TEXT, QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(vary)
    box.exec()
    clicked = box.clickedButton()
    return VARY_SEED if clicked is vary else RUN_ANYWAY if clicked is anyway else CANCEL


def clock(seconds: float) -> str:
    """0:07, 1:05, 1:02:03: a duration as people read it on a timer."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def time_text(elapsed: float, fraction: float) -> str:
    """ "0:12 elapsed, ~0:30 left", or only the elapsed time while too little is done to guess."""
    text = f"{clock(elapsed)} elapsed"
    if MIN_FRACTION_FOR_ESTIMATE <= fraction < 1.0:
        text += f", ~{clock(elapsed / fraction * (1.0 - fraction))} left"
    return text


@dataclass
class RunProgress:
    """How much of one run is done, from the per-node states and step counts (no Qt)."""

    planned: set[int] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)
    steps: dict[int, float] = field(default_factory=dict)  # running node -> fraction of its steps

    def node_state(self, node_id: int, state: str) -> None:
        if state == "queued":
            self.planned.add(node_id)
        elif state in ("done", "cached", "error"):
            self.planned.add(node_id)
            self.finished.add(node_id)
            self.steps.pop(node_id, None)

    def node_steps(self, node_id: int, step: int, total: int) -> None:
        if total > 0 and node_id not in self.finished:
            self.steps[node_id] = min(1.0, max(0.0, step / total))

    @property
    def fraction(self) -> float:
        if not self.planned:
            return 0.0
        done = len(self.finished & self.planned) + sum(f for n, f in self.steps.items() if n in self.planned)
        return min(1.0, done / len(self.planned))


class RunBar(QWidget):
    """Run, ×N and the overall progress of what is running and queued."""

    runRequested = Signal(int)  # how many runs the user asked for
    batchRequested = Signal(int)  # the ×N count, for Run ▸ Batch to Folder…

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("run-bar")
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 4, 6, 4)
        row.setSpacing(6)
        self.run_button = QPushButton("▶  Run", self)
        self.run_button.setObjectName("run-button")
        font = QFont(self.run_button.font())
        font.setBold(True)
        self.run_button.setFont(font)
        self.run_button.setStyleSheet(BUTTON_STYLE)
        self.run_button.setToolTip("Run the graph (Ctrl+Enter); while a run is going this queues more")
        self.count = QSpinBox(self)
        self.run_button.clicked.connect(lambda _checked=False: self.runRequested.emit(self.count.value()))
        self.count.setObjectName("run-count")
        self.count.setRange(1, MAX_RUNS)
        self.count.setPrefix("× ")
        self.count.setToolTip("How many runs one click queues (seed controls step between them)")
        self.batch_button = QPushButton("To folder…", self)
        self.batch_button.setObjectName("run-batch")
        self.batch_button.setToolTip("Run ×N as a batch into a folder, named by job; asking again skips what is done")
        self.batch_button.clicked.connect(lambda _checked=False: self.batchRequested.emit(self.count.value()))
        self.progress = QProgressBar(self)
        self.progress.setRange(0, PROGRESS_RANGE)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(12)
        self.time_label = QLabel("", self)
        self.time_label.setObjectName("run-time")
        # never wider than the room left: a narrow window keeps its docks, the text is cut instead
        self.time_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.progress.setMinimumWidth(60)
        self.time_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        row.addWidget(self.run_button)
        row.addWidget(self.count)
        row.addWidget(self.batch_button)
        row.addWidget(self.progress, 3)
        row.addWidget(self.time_label, 2)

        self._controller: RunController | None = None
        self._run = RunProgress()
        self._active = False  # a batch of runs (one or more) is going
        self._going = False  # one run of it is between started and finished
        self._index = 0  # which run of the batch is going, from 1
        self._total = 0  # how many runs the batch has (grows when more are queued meanwhile)
        self._since = 0.0
        self._clock = QTimer(self)
        self._clock.setInterval(CLOCK_INTERVAL_MS)
        self._clock.timeout.connect(self._refresh)

    # ---- wiring ---------------------------------------------------------------------------------

    def attach(self, controller: RunController) -> None:
        """Follow this controller's runs (the open document's); the previous one is let go."""
        old = self._controller
        if old is not None:
            for signal, slot in self._connections(old):
                with contextlib.suppress(RuntimeError, TypeError):  # the old controller may be gone
                    signal.disconnect(slot)
        self._controller = controller
        for signal, slot in self._connections(controller):
            signal.connect(slot)
        self._clear()

    def _connections(self, c: RunController) -> list[tuple[SignalInstance, Callable[..., None]]]:
        return [
            (c.started, self._run_started),
            (c.finished, self._run_finished),
            (c.nodeStateChanged, self._node_state),
            (c.nodeProgress, self._node_steps),
            (c.queueChanged, self._queue_changed),
            (c.batchProgress, self._batch_progress),
            (c.batchFinished, self._batch_finished),
        ]

    # ---- what the bar shows -----------------------------------------------------------------------

    @property
    def fraction(self) -> float:
        """The share of everything asked for that is done, 0…1."""
        if not self._active or self._total <= 0:
            return 0.0
        return min(1.0, (self._index - 1 + self._run.fraction) / self._total)

    def _queued(self) -> int:
        return self._controller.queued if self._controller is not None else 0

    def _run_started(self) -> None:
        if not self._active:
            self._active = True
            self._index = 0
            self._since = time.perf_counter()
            self._clock.start()
        self._index += 1
        self._going = True
        self._total = max(self._total, self._index + self._queued())
        self._run = RunProgress()
        self._refresh()

    def _run_finished(self, _result: object) -> None:
        if not self._active:
            return
        self._going = False
        self._run = RunProgress(finished={0}, planned={0})  # this run counts as whole until the next starts
        self._refresh()
        QTimer.singleShot(0, self._clear_when_idle)  # once the controller has given the next run its turn

    def _queue_changed(self, queued: int) -> None:
        if not self._active:
            return
        # More runs queued meanwhile grow the batch, dropped ones shrink it; between two runs the one
        # that was just taken from the queue is about to start and still counts.
        self._total = self._index + queued + (0 if self._going else 1)
        self._refresh()
        if not self._going:
            QTimer.singleShot(0, self._clear_when_idle)

    def _clear_when_idle(self) -> None:
        """After the last run, or when the rest of a batch was dropped: nothing left to show."""
        if self._active and not self._going and (self._controller is None or self._controller.idle):
            self._clear()

    def _node_state(self, node_id: int, state: str) -> None:
        if self._active:
            self._run.node_state(node_id, state)

    def _node_steps(self, node_id: int, step: int, total: int) -> None:
        if self._active:
            self._run.node_steps(node_id, step, total)

    def _refresh(self) -> None:
        if not self._active:
            return
        fraction = self.fraction
        self.progress.setValue(round(fraction * PROGRESS_RANGE))
        text = time_text(time.perf_counter() - self._since, fraction)
        if self._total > 1:
            text = f"run {self._index} of {self._total} · {text}"
        self.time_label.setText(text)

    def _batch_progress(self, finished: int, total: int) -> None:
        """A batch to a folder counts whole jobs: those done before (skipped) count from the start."""
        if not self._active:
            self._active = True
            self._since = time.perf_counter()
        fraction = finished / total if total else 1.0
        self.progress.setValue(round(fraction * PROGRESS_RANGE))
        self.time_label.setText(f"job {finished} of {total} · {time_text(time.perf_counter() - self._since, fraction)}")

    def _batch_finished(self, _report: object) -> None:
        self._clear()

    def _clear(self) -> None:
        self._active = self._going = False
        self._index = self._total = 0
        self._run = RunProgress()
        self._clock.stop()
        self.progress.setValue(0)
        self.time_label.setText("")
