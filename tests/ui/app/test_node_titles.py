"""Issue 10: node titles as ComfyUI shows them (search finds ComfyUI's and sdgraph's names), and long
combo values (model files) shortened so their end stays visible, with the whole value as tooltip.

The window runs on the real node declarations; nodes are added the way a person adds them (Tab over
the canvas, type, Enter) and the combo is hovered with the mouse.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from app.settings import Settings
from nodes import builtin_registry
from ui import node_titles
from ui.commands import set_value_command
from ui.main_window import MainWindow

LONG_NAME = "sd_xl_base_1.0_0.9vae_fixed_very_long_name_for_testing_v2.safetensors"


@pytest.fixture(autouse=True)
def _default_titles() -> Iterator[None]:
    yield
    node_titles.set_style(node_titles.COMFYUI)  # the style is process-wide: leave the default behind


def make_window(qtbot: Any, tmp_path: Path, **settings: Any) -> MainWindow:
    win = MainWindow(builtin_registry(), Settings(output_dir=str(tmp_path / "out"), **settings))
    qtbot.addWidget(win, before_close_func=lambda w: setattr(w, "prompt_on_close", False))
    win.show()
    qtbot.waitExposed(win)
    return win


def search(win: MainWindow, text: str, *, add: bool = False) -> list[str]:
    """Tab over the canvas, type `text`; Enter adds the top match when `add`. Returns the types shown."""
    view = win.view
    QTest.mouseMove(view.viewport(), view.viewport().rect().center())
    view.setFocus()
    QTest.keyClick(view, Qt.Key.Key_Tab)
    popup = view.search_popup
    assert popup.isVisible()
    QTest.keyClicks(popup.edit, text)
    shown = popup.shown_types()
    QTest.keyClick(popup.edit, Qt.Key.Key_Return if add else Qt.Key.Key_Escape)
    return shown


def added(win: MainWindow, before: set[int]) -> int:
    (nid,) = set(win.graph.nodes) - before
    return nid


def test_titles_are_comfyuis_and_search_finds_both_names(qtbot: Any, tmp_path: Path) -> None:
    win = make_window(qtbot, tmp_path)
    assert search(win, "encode prompt")[0] == "CLIPTextEncode"  # sdgraph's name still finds it
    assert search(win, "clip text encode")[0] == "CLIPTextEncode"  # and so does ComfyUI's
    before = set(win.graph.nodes)
    search(win, "CLIP Text Encode (Prompt)", add=True)
    encode = added(win, before)
    assert win.view.node_item(encode).title_text() == "CLIP Text Encode (Prompt)"
    assert win.undo_stack.undoText() == "Add CLIP Text Encode (Prompt)"

    for typed, node_type, title in [
        ("load checkpoint", "CheckpointLoaderSimple", "Load Checkpoint"),
        ("load dual clip", "DualCLIPLoader", "DualCLIPLoader"),
        ("unet", "UNETLoader", "Load Diffusion Model"),
        ("empty latent image", "EmptyLatentImage", "Empty Latent Image"),
    ]:
        before = set(win.graph.nodes)
        assert search(win, typed, add=True)[0] == node_type
        assert win.view.node_item(added(win, before)).title_text() == title

    # The library shows the same titles, and its filter matches either name.
    library = win.library
    item = library.item_for("CLIPTextEncode")
    assert item is not None and item.text(0) == "CLIP Text Encode (Prompt)"
    library.filter.setFocus()
    QTest.keyClicks(library.filter, "encode prompt")
    assert not item.isHidden()
    assert library.item_for("KSampler").isHidden()  # type: ignore[union-attr]


def test_the_setting_brings_sdgraphs_titles_back(qtbot: Any, tmp_path: Path) -> None:
    win = make_window(qtbot, tmp_path, node_titles="sdgraph")
    before = set(win.graph.nodes)
    assert search(win, "clip text encode", add=True)[0] == "CLIPTextEncode"  # ComfyUI's name still finds it
    assert win.view.node_item(added(win, before)).title_text() == "Encode Prompt"
    assert win.library.item_for("DualCLIPLoader").text(0) == "Load Dual CLIP"  # type: ignore[union-attr]


def test_a_long_model_name_shows_its_end_and_the_whole_name_on_hover(qtbot: Any, tmp_path: Path) -> None:
    win = make_window(qtbot, tmp_path)
    before = set(win.graph.nodes)
    search(win, "load checkpoint", add=True)
    loader = added(win, before)
    win.undo_stack.push(set_value_command(win.graph, loader, "ckpt_name", LONG_NAME))
    item = win.view.node_item(loader)
    shown = item.shown_value("ckpt_name")
    assert shown != LONG_NAME and "…" in shown
    assert shown.endswith("_v2.safetensors")  # the end that tells versions apart, and the extension
    assert shown.startswith("sd_xl")

    # Hover the widget with the mouse: the tooltip is the whole name.
    view = win.view
    view.centerOn(item)
    widget = item.widget_scene_rect("ckpt_name")
    at: QPoint = view.mapFromScene(widget.center())
    QTest.mouseMove(view.viewport(), at - QPoint(20, 0))
    QTest.mouseMove(view.viewport(), at)
    qtbot.waitUntil(lambda: item.toolTip() == LONG_NAME, timeout=2000)
    # Off the widget (the title bar) it is the node's ordinary tooltip again.
    title = view.mapFromScene(item.mapToScene(item.layout.title_rect.center()))
    QTest.mouseMove(view.viewport(), title)
    qtbot.waitUntil(lambda: item.toolTip() == "", timeout=2000)
