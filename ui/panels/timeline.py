"""The denoising timeline panel: scrub through a sampler run step by step.

A sampler run with recording on (`record_timeline` in the executor's settings) reports, per step, the
noisy sample x_t and the model's predicted image x̂₀ as small RGB previews, plus step, t and σ (see
`nodes.diffusion.timeline`). This panel shows one step at a time, x_t and x̂₀ side by side, with a slider to
scrub and the step's numbers underneath. Previews are approximations (a linear map of the latent);
"Decode with VAE" renders the shown step's x̂₀ properly, on the run's worker thread, through a
`decoder` the window provides (the panel knows nothing of models or torch). "Export GIF…" writes the
whole run as an animation at the image's size, one frame per timeline frame (steps + 1: the noise
start, then each step), captioned with a font that has σ (`ui.panels.timeline_export`).

`install_timeline(window)` docks the panel in the main window and keeps it attached to whichever
document is open: it turns recording and live re-runs on for the document's run controller, feeds the
panel the newest timeline after each run, and decodes through the controller's worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from graph_engine import Graph, RunResult
from ui import file_dialogs
from ui.images import qimage_from_array

if TYPE_CHECKING:
    import numpy as np  # only for annotations: numpy costs start-up time the window need not pay

    from ui.run_controller import RunController

X0_PREVIEW = "predicted x₀: the model's guess of the final image (preview)"
X0_DECODED = "predicted x₀, decoded with the VAE"

# frame, latent_scale, sampler node id -> uint8 [H, W, 3], computed off the Qt thread.
Decoder = Callable[[Mapping[str, Any], float, int | None], Awaitable["np.ndarray"]]


def ask_export_path(parent: QWidget) -> str:
    """The file to export the timeline to ("" when cancelled). A module function, so tests replace it
    rather than block on a modal dialog."""
    # a bare "timeline.gif" would start the dialog in the launch directory
    answer = file_dialogs.ask_save_file(
        parent, "Export timeline", file_dialogs.start_folder() / "timeline.gif", "Animations (*.gif *.webp)"
    )
    return "" if answer is None else str(answer[0])


class _FrameView(QLabel):
    """An image scaled to fit; tiny latent previews are enlarged as crisp pixels rather than blurred."""

    def __init__(self, placeholder: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image = QImage()
        self._placeholder = placeholder
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setMinimumSize(96, 96)
        self.setStyleSheet("background: #18191c; color: #8a8f98;")
        self.setText(placeholder)

    def set_image(self, image: QImage | None) -> None:
        self._image = image if image is not None else QImage()
        self._rescale()

    def image(self) -> QImage:
        return self._image

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._image.isNull():
            self.setPixmap(QPixmap())
            self.setText(self._placeholder)
            return
        small = self._image.width() < 128
        mode = Qt.TransformationMode.FastTransformation if small else Qt.TransformationMode.SmoothTransformation
        self.setPixmap(QPixmap.fromImage(self._image).scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio, mode))


class TimelinePanel(QWidget):
    """Shows one recorded timeline; `set_timeline()` replaces it, the slider picks the frame."""

    frameChanged = Signal(int)
    decoded = Signal(int)  # frame index whose full VAE decode is now shown
    message = Signal(str, str)  # level, text: for the window's log

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._frames: list[Mapping[str, Any]] = []
        self._record: Mapping[str, Any] | None = None
        self._latent_scale = 1.0
        self._node_id: int | None = None
        self._decoded: dict[int, QImage] = {}
        self._task: asyncio.Future[Any] | None = None
        self.decoder: Decoder | None = None

        self.title = QLabel("Run a sampler to record its timeline.")
        self.title.setWordWrap(True)
        self.x_view = _FrameView("x_t")
        self.x0_view = _FrameView("no prediction yet")
        self.x0_caption = QLabel(X0_PREVIEW)
        x_caption = QLabel("x_t: the noisy sample (preview)")
        for caption in (x_caption, self.x0_caption):
            caption.setWordWrap(True)  # long captions must not hold the dock wide (issue 10, bug 11)
        grid = QGridLayout()
        grid.addWidget(x_caption, 0, 0)
        grid.addWidget(self.x0_caption, 0, 1)
        grid.addWidget(self.x_view, 1, 0)
        grid.addWidget(self.x0_view, 1, 1)
        grid.setRowStretch(1, 1)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        self.slider.valueChanged.connect(self.set_frame)
        self.step_label = QLabel("step —")
        self.t_label = QLabel("t —")
        self.sigma_label = QLabel("σ —")
        numbers = QHBoxLayout()
        numbers.setSpacing(18)
        for label in (self.step_label, self.t_label, self.sigma_label):
            numbers.addWidget(label)
        numbers.addStretch(1)
        self.decode_button = QPushButton("Decode with VAE")
        self.decode_button.setToolTip("Render this step's predicted image with the full VAE (slower, exact)")
        self.decode_button.clicked.connect(self.request_decode)
        self.export_button = QPushButton("Export GIF…")
        self.export_button.setToolTip("Save the whole run as an animation, one frame per step")
        self.export_button.clicked.connect(self._ask_export)
        buttons = QHBoxLayout()
        buttons.addWidget(self.decode_button)
        buttons.addWidget(self.export_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(grid, 1)
        layout.addWidget(self.slider)
        layout.addLayout(numbers)
        layout.addLayout(buttons)
        self._update_buttons()

    # ---- data -----------------------------------------------------------------------------------

    @property
    def frames(self) -> Sequence[Mapping[str, Any]]:
        return self._frames

    @property
    def current(self) -> int:
        return self.slider.value()

    @property
    def steps(self) -> int:
        return max((int(f["step"]) for f in self._frames), default=0)

    def set_timeline(self, record: Mapping[str, Any] | None, node_id: int | None = None, title: str = "") -> None:
        """Show a `ctx.records["timeline"]` dict (None clears); starts at the last frame, the result."""
        self._frames = list(record["frames"]) if record else []
        self._record = record
        self._latent_scale = float(record.get("latent_scale", 1.0)) if record else 1.0
        self._node_id = node_id
        self._decoded.clear()
        n = len(self._frames)
        if n:
            self.title.setText(f"{title or 'Sampler'}: {self.steps} steps, {n} frames (frame 0 is the start noise)")
        else:
            self.title.setText("Run a sampler to record its timeline.")
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, n - 1))
        self.slider.setValue(max(0, n - 1))
        self.slider.blockSignals(False)
        self.slider.setEnabled(n > 1)
        self.set_frame(self.slider.value())

    def take_result(self, result: RunResult | None, graph: Graph | None = None) -> bool:
        """Show the newest timeline a run recorded (the last sampler that ran); False if it had none."""
        if result is None:
            return False
        for node_id in reversed(result.executed):
            record = result.records.get(node_id, {}).get("timeline")
            if record:
                node = graph.nodes.get(node_id) if graph is not None else None
                self.set_timeline(record, node_id, (node.title or node.type) if node is not None else "")
                return True
        return False

    def labels(self) -> dict[str, str]:
        """The texts under the slider, for tests and screen readers."""
        return {"step": self.step_label.text(), "t": self.t_label.text(), "sigma": self.sigma_label.text()}

    # ---- showing a frame --------------------------------------------------------------------------

    def set_frame(self, index: int) -> None:
        if not self._frames:
            self.x_view.set_image(None)
            self.x0_view.set_image(None)
            self.step_label.setText("step —")
            self.t_label.setText("t —")
            self.sigma_label.setText("σ —")
            self._update_buttons()
            return
        index = max(0, min(index, len(self._frames) - 1))
        if self.slider.value() != index:
            self.slider.setValue(index)  # comes back here through valueChanged
            return
        frame = self._frames[index]
        self.x_view.set_image(qimage_from_array(frame["preview_x"]))
        self.x0_caption.setText(X0_DECODED if index in self._decoded else X0_PREVIEW)
        if index in self._decoded:
            self.x0_view.set_image(self._decoded[index])
        elif frame.get("preview_denoised") is not None:
            self.x0_view.set_image(qimage_from_array(frame["preview_denoised"]))
        else:
            self.x0_view.set_image(None)  # frame 0: nothing predicted yet
        self.step_label.setText(f"step {frame['step']} / {self.steps}")
        self.t_label.setText(f"t {float(frame['t']):.1f}")
        self.sigma_label.setText(f"σ {float(frame['sigma']):.4f}")
        self._update_buttons()
        self.frameChanged.emit(index)

    def _update_buttons(self) -> None:
        has = bool(self._frames)
        busy = self._task is not None and not self._task.done()
        self.decode_button.setEnabled(has and self.decoder is not None and not busy)
        self.export_button.setEnabled(has)

    # ---- decode and export ------------------------------------------------------------------------

    def request_decode(self) -> asyncio.Future[Any] | None:
        """Decode the shown step with the full VAE, off the Qt thread; the result replaces its x̂₀."""
        if not self._frames or self.decoder is None:
            return None
        index = self.current
        self._task = asyncio.ensure_future(self._decode(index, self._frames[index]))
        self._update_buttons()
        return self._task

    async def _decode(self, index: int, frame: Mapping[str, Any]) -> None:
        assert self.decoder is not None
        frames = self._frames
        try:
            rgb = await self.decoder(frame, self._latent_scale, self._node_id)
        except Exception as exc:  # shown to the user, never raised into the event loop
            self.message.emit("error", f"could not decode step {frame.get('step')}: {exc}")
            return
        finally:
            self._task = None
            self._update_buttons()
        if frames is not self._frames:
            return  # a new run replaced the timeline meanwhile
        self._decoded[index] = qimage_from_array(rgb)
        if self.current == index:
            self.x0_view.set_image(self._decoded[index])
            self.x0_caption.setText(X0_DECODED)
        self.decoded.emit(index)

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the image the run decodes to: the size the animation is exported at."""
        from nodes.diffusion.timeline import timeline_image_size  # numpy + Pillow only; no torch

        return timeline_image_size(self._frames, self._record)

    def export(self, path: str | Path) -> int:
        """Write the timeline as a GIF or WebP (by suffix) at the image's size, using the full VAE decodes
        made so far (`ui.panels.timeline_export`); returns the number of frames written."""
        from ui.panels.timeline_export import export_timeline

        return export_timeline(self._frames, path, self.image_size, self._decoded)

    def _ask_export(self) -> None:
        path = ask_export_path(self)
        if not path:
            return
        try:
            n = self.export(path)
        except (OSError, ValueError) as exc:
            self.message.emit("error", f"could not export the timeline: {exc}")
            return
        self.message.emit("info", f"timeline exported: {n} frames to {path}")


# ---- wiring into the window ---------------------------------------------------------------------


def find_vae_source(graph: Graph, sampler_id: int | None) -> tuple[int, str] | None:
    """Which node output holds the VAE that decodes this sampler's latents.

    Follow the sampler's LATENT downstream to the first node that also takes a VAE (VAE Decode) and use
    that VAE; failing that, any VAE in the graph. None when the graph has no VAE at all.
    """
    if sampler_id is not None and sampler_id in graph.nodes:
        seen = {sampler_id}
        frontier = [sampler_id]
        while frontier:
            nid = frontier.pop(0)
            for link in graph.links.values():
                if link.src_node != nid or link.type != "LATENT" or link.dst_node in seen:
                    continue
                vae_link = graph.link_into(link.dst_node, "vae")
                if vae_link is not None:
                    return vae_link.src_node, vae_link.src_output
                seen.add(link.dst_node)
                frontier.append(link.dst_node)
    for link in sorted(graph.links.values(), key=lambda lk: lk.id):
        if link.type == "VAE":
            return link.src_node, link.src_output
    return None


def worker_decoder(controller: RunController) -> Decoder:
    """A `Decoder` that fetches the VAE through the controller's executor (a cached checkpoint costs
    nothing) and decodes on the controller's worker thread, after any run in progress."""

    async def decode(frame: Mapping[str, Any], latent_scale: float, sampler_id: int | None) -> np.ndarray:
        from ui.run_controller import snapshot

        graph, _ = snapshot(controller.graph)
        source = find_vae_source(graph, sampler_id)
        if source is None:
            raise LookupError("the graph has no VAE to decode with")
        node_id, output_id = source

        def work() -> np.ndarray:
            from nodes.diffusion.timeline import decode_frame  # torch is imported on the worker, not here

            result = controller.executor.run(graph, targets=[node_id])
            if result.status != "done" or node_id not in result.outputs:
                why = str(result.error) if result.error else result.status
                raise RuntimeError(f"the VAE could not be loaded: {why}")
            spec = controller.registry.get(graph.nodes[node_id].type)
            assert spec is not None
            vae = result.outputs[node_id][spec.output_index(output_id)]
            return decode_frame(vae, frame, latent_scale)

        return await controller.call_in_worker(work)

    return decode


def attach(panel: TimelinePanel, controller: RunController, *, live: bool = True) -> None:
    """Point the panel at one document's run controller: record timelines, show them, decode, go live."""
    controller.executor.settings["record_timeline"] = True
    controller.set_live(live)
    controller.finished.connect(lambda result: panel.take_result(result, controller.graph))
    panel.decoder = worker_decoder(controller)
    panel.set_timeline(None)


def install_timeline(window: Any) -> tuple[TimelinePanel, QDockWidget]:
    """Dock a timeline panel in `ui.main_window.MainWindow` (tabbed with the images) and keep it attached
    to the open document, with a toggle in the View menu. Uses only the window's public surface:
    `controller`, `documentChanged`, `menuBar()`, and `images_dock` and `log` where present. Call it
    after the window has its first document."""
    panel = TimelinePanel(window)
    dock = QDockWidget("Timeline", window)
    dock.setObjectName("dock-timeline")
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    images_dock = getattr(window, "images_dock", None)
    if images_dock is not None:
        window.tabifyDockWidget(images_dock, dock)
        images_dock.raise_()
    view_menu = next((a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == "View"), None)
    if view_menu is not None:
        view_menu.addAction(dock.toggleViewAction())
    log = getattr(window, "log", None)
    if log is not None:
        panel.message.connect(lambda level, text: log.add(level, text))

    def follow() -> None:
        attach(panel, window.controller)

    window.documentChanged.connect(follow)
    follow()
    return panel, dock


__all__ = ["Decoder", "TimelinePanel", "attach", "find_vae_source", "install_timeline", "worker_decoder"]
