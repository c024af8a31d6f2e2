"""Opening the run history: open the SQLite file and list 1,000 past runs.

Target (issue 10): the history opens 1,000 past runs in under 0.5 s. The file is filled first with
1,000 runs of the shipped txt2img workflow, each with one image and a 37 KB noise thumbnail, so listing
must skip the heavy parts (workflows and thumbnails live in their own tables for that). Also timed:
a filtered listing, and the thumbnails of one screenful (what the gallery reads when it opens).

    .venv/bin/python bench/history.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from app.history import HistoryStore, RecordedImage, RunRecord

RUNS = 1000
WORKFLOW = json.loads((Path(__file__).parents[1] / "workflows" / "txt2img.json").read_text(encoding="utf-8"))


def noise_png() -> bytes:
    """A 128×96 PNG of noise: as big as a thumbnail of a detailed image gets, and it must decode."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.frombytes("RGB", (128, 96), os.urandom(128 * 96 * 3)).save(buffer, "PNG")
    return buffer.getvalue()


def fill(path: Path) -> None:
    words = ["cat", "lighthouse", "forest", "astronaut", "city", "portrait", "mountain", "river"]
    thumb = noise_png()
    with HistoryStore(path) as store:
        for i in range(RUNS):
            doc = json.loads(json.dumps(WORKFLOW))
            for node in doc["nodes"]:
                if node.get("title") == "Positive prompt":
                    node["inputs"]["text"] = f"a {words[i % len(words)]} number {i}, detailed"
                if node["type"] == "CheckpointLoaderSimple":
                    node["inputs"]["ckpt_name"] = f"model_{i % 5}.safetensors"
            image = RecordedImage(f"/out/sdgraph_{i:05}.png", 512, 512, 7, thumb)
            store.record(RunRecord(doc, [image], started=1.7e9 + i * 60, finished=1.7e9 + i * 60 + 20))


def timed(fn, repeats: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.sqlite3"
        t = time.perf_counter()
        fill(path)
        print(f"recorded {RUNS} runs in {time.perf_counter() - t:.2f} s ({path.stat().st_size / 1e6:.1f} MB)")

        def open_and_list() -> None:
            with HistoryStore(path) as store:
                assert len(store.list()) == RUNS

        def filtered() -> None:
            with HistoryStore(path) as store:
                store.list(query="lighthouse detailed", model="model_1.safetensors")

        def first_screen() -> None:
            with HistoryStore(path) as store:
                for run in store.list(limit=40):
                    store.thumbnail(run.images[0].id)

        seconds = timed(open_and_list)
        print(f"open + list {RUNS} runs:          {seconds * 1000:7.1f} ms  (target < 500 ms)")
        print(f"open + filtered list:             {timed(filtered) * 1000:7.1f} ms")
        print(f"open + 40 runs with thumbnails:   {timed(first_screen) * 1000:7.1f} ms")
        panel = panel_seconds(path)
        if panel is not None:
            print(f"History panel shown, 1st screen:  {panel * 1000:7.1f} ms  (target < 500 ms)")
        if max(seconds, panel or 0.0) >= 0.5:
            raise SystemExit("over the 0.5 s target")


def panel_seconds(path: Path) -> float | None:
    """The dock as the user sees it: store opened, runs listed, gallery painted with its thumbnails."""
    try:
        from PySide6.QtWidgets import QApplication
    except ImportError:
        return None
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QApplication.instance() or QApplication([])
    from ui.panels.history import HistoryPanel

    def once() -> None:
        store = HistoryStore(path)
        panel = HistoryPanel(store)
        panel.resize(340, 700)
        panel.show()
        panel.gallery.viewport().repaint()  # paints now: the thumbnails on screen are read here
        app.processEvents()
        assert panel.item_count() == RUNS and panel.model.thumbnails_loaded > 0
        panel.close()
        panel.detach()
        store.close()
        panel.deleteLater()
        app.processEvents()

    return timed(once)


if __name__ == "__main__":
    main()
