"""The model code's warnings reach the window's Log: logged on the run's worker thread (as loaders do),
shown on the window's thread; after the window shuts down, none arrive."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from tests.ui.app.test_document_formats import make_window


def test_a_warning_logged_on_a_worker_thread_appears_in_the_log(qtbot: Any, tmp_path: Path, sdgraph_home: Path) -> None:
    window = make_window(qtbot, sdgraph_home, tmp_path)
    message = "flux1-dev.safetensors (23.8 GB) is larger than the model budget (12.0 GB): streaming its layers"
    worker = threading.Thread(target=logging.getLogger("nodes.diffusion.loading").warning, args=("%s", message))
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: any(message in text for text, _ in window.log.entries()), timeout=3000)
    logging.getLogger("nodes.diffusion.loading").info("loaded in 2.1 s")  # below WARNING: not shown
    logging.getLogger("graph_engine").warning("not the model code's")  # other loggers: not shown
    qtbot.wait(50)
    assert not any("loaded in" in text or "model code" in text for text, _ in window.log.entries())

    window.shutdown()
    logging.getLogger("nodes").warning("after the window closed")
    qtbot.wait(50)
    assert not any("after the window closed" in text for text, _ in window.log.entries())
