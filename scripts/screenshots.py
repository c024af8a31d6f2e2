"""Screenshots of the editor for the README: the default graph, a run in progress, a finished run, the
History dock after a few more runs, the Queue dock with waiting variations, and the Models dock.

Real Stable Diffusion weights are not available here, so the run uses a tiny SD1-shaped checkpoint
with seeded random weights (`tests/support/tiny_sd.py`) written into a throwaway home folder; the
window, the canvas, the run controller and the nodes are the real ones. The picture the run makes is
noise-like (random weights); everything around it is what a user sees with a real model.

    .venv/bin/python scripts/screenshots.py            # writes docs/screenshots/*.png

Offscreen by default (QT_QPA_PLATFORM=offscreen), so it runs on a machine without a display.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY_CKPT = "tiny-random-sd15"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--window", default="1600x1000", help="window size, WxH")
    parser.add_argument("--image", type=int, default=256, help="generated image size (square)")
    parser.add_argument("--steps", type=int, default=24)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    home = Path(tempfile.mkdtemp(prefix="sdgraph-screenshots-"))
    os.environ["SDGRAPH_HOME"] = str(home)
    sys.path.insert(0, str(ROOT))

    import qasync
    from PySide6.QtWidgets import QApplication

    from app.gui import make_app
    from app.settings import Settings
    from nodes import builtin_registry
    from tests.support.tiny_sd import make_tiny
    from ui.commands import set_value_command
    from ui.main_window import MainWindow

    app = make_app()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    make_tiny("sd1", home / "models" / "checkpoints", name=TINY_CKPT, seed=0)

    width, height = (int(v) for v in args.window.lower().split("x"))
    window = MainWindow(builtin_registry(), Settings(output_dir=str(home / "output")))
    window.resize(width, height)
    window.apply_default_dock_sizes()  # as a first start at this size would lay them out
    if not window.load_default():
        print("workflows/txt2img.json did not load; the screenshots show an empty editor", file=sys.stderr)
    graph = window.graph
    by_type = {n.type: n.id for n in graph.nodes.values()}
    edits = {
        "CheckpointLoaderSimple": {"ckpt_name": f"{TINY_CKPT}.safetensors"},
        "EmptyLatentImage": {"width": args.image, "height": args.image},
        "KSampler": {"steps": args.steps, "seed": 42},
    }
    for node_type, values in edits.items():
        if node_type in by_type:
            for key, value in values.items():
                window.undo_stack.push(set_value_command(graph, by_type[node_type], key, value))
    window.undo_stack.setClean()
    window.show()
    args.out.mkdir(parents=True, exist_ok=True)

    def settle(seconds: float = 0.3) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            QApplication.processEvents()
            time.sleep(0.01)

    def shot(name: str) -> None:
        path = args.out / name
        window.grab().save(str(path))
        print(f"wrote {path}")

    settle()
    window.view.fit_all()
    settle()
    shot("editor.png")

    sampler = by_type.get("KSampler")
    captured: list[bool] = []

    async def run_and_capture() -> object:
        task = window.run()
        while not task.done():
            item = window.view.node_item(sampler) if sampler is not None else None
            progress = item.progress if item is not None else None
            if not captured and progress and progress[0] >= max(2, progress[1] // 2):
                await asyncio.sleep(0.12)  # let the throttled preview catch up
                shot("running.png")
                captured.append(True)
            await asyncio.sleep(0.01)
        return task.result()

    result = loop.run_until_complete(run_and_capture())
    settle(0.5)
    shot("after-run.png")
    if not captured:
        print("the sampler finished before a mid-run screenshot could be taken; try more --steps", file=sys.stderr)
    status = getattr(result, "status", None)
    print(f"run: {status}" + (f" ({result.error})" if getattr(result, "error", None) else ""))  # type: ignore[attr-defined]
    history_ok = shoot_history(window, loop, settle, shot, by_type, set_value_command)
    queue_ok = shoot_queue(window, loop, settle, shot, by_type, set_value_command)
    models_ok = shoot_models(window, home, settle, shot)
    mask_ok = shoot_mask_editor(window, settle, args.out)
    window.close_without_prompt()
    return 0 if status == "done" and captured and history_ok and queue_ok and models_ok and mask_ok else 1


def shoot_history(window, loop, settle, shot, by_type, set_value_command) -> bool:  # type: ignore[no-untyped-def]
    """Three more runs with other prompts (short ones), then the History dock in front."""
    encoders = [n.id for n in window.graph.nodes.values() if n.type == "CLIPTextEncode"]
    prompts = ["a lighthouse on a cliff at dusk", "a red fox in fresh snow", "an astronaut riding a horse"]
    if "KSampler" in by_type:
        window.undo_stack.push(set_value_command(window.graph, by_type["KSampler"], "steps", 6))
    for prompt in prompts:
        if encoders:
            window.undo_stack.push(set_value_command(window.graph, encoders[0], "text", prompt))
        result = loop.run_until_complete(window.run())
        if getattr(result, "status", None) != "done":
            return False
    window.history_dock.raise_()
    settle(0.5)
    shot("history.png")
    return window.history.item_count() == len(prompts) + 1


def shoot_queue(window, loop, settle, shot, by_type, set_value_command) -> bool:  # type: ignore[no-untyped-def]
    """A run going and three variations queued behind it (a seed, a prompt, a cfg), the queue paused."""
    from PySide6.QtCore import Qt

    graph, sampler = window.graph, by_type.get("KSampler")
    encoders = [n.id for n in graph.nodes.values() if n.type == "CLIPTextEncode"]
    if sampler is None or not encoders:
        return False
    window.undo_stack.push(set_value_command(graph, sampler, "steps", 40))
    graph.set_extra(sampler, "control_after_generate", "fixed")  # the seed changes below are the user's
    tasks = [window.run()]
    for key, node, value in (
        ("seed", sampler, 1234),
        ("text", encoders[0], "a lighthouse on a cliff at dawn, oil painting"),
        ("cfg", sampler, 4.5),
    ):
        window.undo_stack.push(set_value_command(graph, node, key, value))
        tasks.append(window.run())

    async def until_running() -> None:
        while not (window.controller.running and window.controller.queued == 3):
            await asyncio.sleep(0.01)

    loop.run_until_complete(until_running())
    window.controller.set_paused(True)
    window.queue_dock.raise_()
    window.resizeDocks([window.queue_dock], [230], Qt.Orientation.Vertical)
    settle(0.5)
    shot("queue.png")
    ok = window.queue.list.count() == 3
    window.controller.cancel_all()
    window.controller.set_paused(False)
    for task in tasks:
        loop.run_until_complete(task)
    window.log_dock.raise_()
    window.resizeDocks([window.log_dock], [140], Qt.Orientation.Vertical)
    return ok


def shoot_models(window, home, settle, shot) -> bool:  # type: ignore[no-untyped-def]
    """The Models dock over tiny models of every kind (FLUX.1, Z-Image, SD3.5, text encoders, VAE)."""
    from PySide6.QtCore import Qt

    from tests.support.model_root import write_flow_files

    write_flow_files(home / "models")
    window.models.refresh()
    end = time.perf_counter() + 60
    while window.models.pending and time.perf_counter() < end:
        settle(0.1)
    window.models_dock.raise_()
    window.resizeDocks([window.models_dock], [420], Qt.Orientation.Horizontal)
    settle(0.5)
    shot("models.png")
    return window.models.pending == 0


def shoot_mask_editor(window, settle, out: Path) -> bool:  # type: ignore[no-untyped-def]
    """The inpaint template's Load Image in the mask editor, a stroke painted over a drawn landscape."""
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QColor, QImage, QLinearGradient, QPainter
    from PySide6.QtTest import QTest

    from nodes.folders import input_dir
    from ui.commands import set_value_command
    from ui.mask_editor import open_mask_editor

    picture = QImage(640, 448, QImage.Format.Format_RGB32)
    p = QPainter(picture)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    sky = QLinearGradient(0, 0, 0, 448)
    sky.setColorAt(0, QColor(40, 70, 140))
    sky.setColorAt(1, QColor(240, 170, 110))
    p.fillRect(picture.rect(), sky)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(255, 225, 150))
    p.drawEllipse(QPointF(470, 170), 46, 46)
    for colour, y, bumps in ((QColor(70, 90, 110), 300, 3), (QColor(40, 70, 60), 350, 5)):
        p.setBrush(colour)
        for i in range(bumps + 1):
            p.drawEllipse(QPointF(i * 640 / bumps, y + 40), 640 / bumps * 0.75, 110)
        p.drawRect(0, y + 40, 640, 448)
    p.end()
    input_dir().mkdir(parents=True, exist_ok=True)
    picture.save(str(input_dir() / "landscape.png"))

    if window.doc is not None:  # the earlier shots edited the graph: no "save changes?" box here
        window.doc.undo.setClean()
        window.doc.modified_outside_undo = False
    window.open_template(Path(__file__).resolve().parents[1] / "workflows" / "inpaint.json")
    settle()
    graph = window.graph
    load = next(n.id for n in graph.nodes.values() if n.type == "LoadImage")
    window.undo_stack.push(set_value_command(graph, load, "image", "landscape.png"))
    dialog = open_mask_editor(window.view, graph, window.undo_stack, load)
    if dialog is None:
        return False
    dialog.resize(900, 720)
    settle()
    dialog.size_slider.setValue(70)
    canvas = dialog.canvas
    path = [QPointF(395 + 6 * i, 165 - 40 * math.sin(i / 8)) for i in range(26)]
    points = [canvas.to_widget(q).toPoint() for q in path]
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[0])
    for point in points[1:]:
        QTest.mouseMove(canvas, point)
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, points[-1])
    QTest.mouseMove(canvas, points[-1] + QPoint(90, 60))  # the brush outline, away from the stroke
    settle()
    path_out = out / "mask_editor.png"
    dialog.grab().save(str(path_out))
    print(f"wrote {path_out}")
    dialog.done(0)  # closed without the "discard your painting?" question
    return True


if __name__ == "__main__":
    raise SystemExit(main())
