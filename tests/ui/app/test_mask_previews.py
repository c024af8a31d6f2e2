"""MASK outputs are shown like images: run SolidMask (0.25) → Convert Mask to Image → Preview Image from the
window with the real Ctrl+Return, and the mask node shows a grey picture of its mask (0.25 → 64) in the
node and in the preview panel; a second run, all cached, shows it again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QImage

from app.settings import Settings
from nodes import builtin_registry
from ui.autosave import AutosaveStore
from ui.commands import connect_command, set_value_command
from ui.images import qimage_to_array
from ui.main_window import MainWindow


@pytest.fixture
def window(qtbot: Any, tmp_path: Path, sdgraph_home: Path) -> MainWindow:
    store = AutosaveStore(sdgraph_home / "autosave")
    store.start_session()
    win = MainWindow(builtin_registry(), Settings(output_dir=str(tmp_path / "out")), autosave=store)
    qtbot.addWidget(win, before_close_func=lambda w: setattr(w, "prompt_on_close", False))
    win.show()
    qtbot.waitExposed(win)
    win.new_document()
    return win


def run_from_keyboard(window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop) -> Any:
    results: list[Any] = []
    window.controller.finished.connect(results.append)
    window.view.setFocus()
    qtbot.keyClick(window.view.viewport(), Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)

    async def until_done() -> None:
        deadline = time.perf_counter() + 120
        while not results and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)

    qloop.run_until_complete(until_done())
    window.controller.finished.disconnect(results.append)
    (result,) = results
    assert result.status == "done", result.error
    return result


def test_a_mask_is_previewed_in_its_node_and_the_preview_panel(
    window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    ids = {}
    for role, type_, pos in [
        ("mask", "SolidMask", (0, 0)),
        ("to_image", "MaskToImage", (300, 0)),
        ("preview", "PreviewImage", (550, 0)),
    ]:
        nid = window.add_node(type_, QPointF(*pos))
        assert nid is not None
        ids[role] = nid
    for key, value in {"value": 0.25, "width": 40, "height": 24}.items():
        window.undo_stack.push(set_value_command(window.graph, ids["mask"], key, value))
    window.undo_stack.push(connect_command(window.graph, ids["mask"], "MASK", ids["to_image"], "mask", "MASK"))
    window.undo_stack.push(connect_command(window.graph, ids["to_image"], "IMAGE", ids["preview"], "images", "IMAGE"))
    previews: list[tuple[int, QImage]] = []
    window.controller.previewChanged.connect(lambda nid, img: previews.append((nid, img)))

    run_from_keyboard(window, qtbot, qloop)

    (picture,) = window.view.node_item(ids["mask"]).images
    pixels = qimage_to_array(picture)
    assert pixels.shape == (24, 40, 3)
    assert np.all(pixels == 64)  # round(0.25 · 255), grey
    assert [nid for nid, _ in previews] == [ids["mask"]]
    assert np.all(qimage_to_array(previews[0][1]) == 64)
    # Only the mask node gained a mask picture; the IMAGE node in between shows none.
    assert window.view.node_item(ids["to_image"]).images == []
    assert len(window.view.node_item(ids["preview"]).images) == 1

    # Run again: everything is cached, and the mask is shown from the cached result.
    window.view.node_item(ids["mask"]).set_images([])
    previews.clear()
    result = run_from_keyboard(window, qtbot, qloop)
    assert ids["mask"] in result.cached
    (again,) = window.view.node_item(ids["mask"]).images
    assert np.all(qimage_to_array(again) == 64)
    assert [nid for nid, _ in previews] == [ids["mask"]]
