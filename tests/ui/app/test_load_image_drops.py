"""Image files dropped on the window's canvas (issue 10, bug 4): a plain image becomes a Load Image
node where it lands; a PNG that carries a workflow still opens as its graph, unless it is dropped onto a
Load Image node, which takes it as its picture (so a generated image can feed img2img)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gui_toy_nodes import chain, toy_registry
from PIL import Image, PngImagePlugin
from PySide6.QtCore import QMimeData, QPoint, QUrl
from PySide6.QtWidgets import QMessageBox

from app.settings import Settings
from graph_engine import Graph
from graph_engine.serialization import PNG_WORKFLOW_KEY, graph_to_dict
from nodes.image import load_image
from tests.ui.app.test_main_window import answer_next_box, drag_and_drop
from ui.autosave import AutosaveStore
from ui.main_window import MainWindow


@pytest.fixture
def window(qtbot: Any, tmp_path: Path, sdgraph_home: Path, monkeypatch: pytest.MonkeyPatch) -> MainWindow:
    monkeypatch.delenv("SDGRAPH_INPUT_DIR", raising=False)
    store = AutosaveStore(sdgraph_home / "autosave")
    store.start_session()
    registry = toy_registry()
    registry.register(load_image)
    win = MainWindow(registry, Settings(output_dir=str(tmp_path / "out")), autosave=store, templates_dir=tmp_path / "t")
    qtbot.addWidget(win, before_close_func=lambda w: setattr(w, "prompt_on_close", False))
    win.show()
    qtbot.waitExposed(win)
    return win


def urls(path: Path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    return mime


def workflow_png(path: Path) -> tuple[Path, Graph]:
    graph = Graph()
    chain(graph)
    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_WORKFLOW_KEY, json.dumps(graph_to_dict(graph)))
    Image.new("RGB", (24, 16), (200, 10, 10)).save(path, pnginfo=info)
    return path, graph


def test_a_plain_image_dropped_on_the_canvas_becomes_a_load_image_node(
    window: MainWindow, qtbot: Any, tmp_path: Path, sdgraph_home: Path
) -> None:
    src = tmp_path / "plain.png"
    Image.new("RGB", (20, 30), (0, 120, 0)).save(src)
    at = QPoint(220, 160)
    assert drag_and_drop(window.view.viewport(), urls(src), at)
    qtbot.wait(20)  # a workflow would open on the next event-loop turn; nothing must
    [node] = window.graph.nodes.values()
    assert node.type == "LoadImage" and node.values["image"] == "plain.png"
    scene = window.view.mapToScene(at)
    assert node.pos == pytest.approx((scene.x(), scene.y()), abs=1.5)
    assert (sdgraph_home / "input" / "plain.png").read_bytes() == src.read_bytes()
    assert window.path is None and window.is_dirty()


def test_a_workflow_png_opens_on_empty_canvas_but_feeds_a_load_image_node(
    window: MainWindow, qtbot: Any, tmp_path: Path, sdgraph_home: Path
) -> None:
    path, graph = workflow_png(tmp_path / "generated.png")
    nid = window.add_node("LoadImage")
    assert nid is not None
    item = window.view.node_item(nid)
    onto = window.view.mapFromScene(item.mapToScene(item.layout.title_rect.center()))
    assert drag_and_drop(window.view.viewport(), urls(path), onto)
    qtbot.wait(20)
    assert [n.type for n in window.graph.nodes.values()] == ["LoadImage"]
    assert window.graph.nodes[nid].values["image"] == "generated.png"
    assert (sdgraph_home / "input" / "generated.png").is_file()

    vp = window.view.viewport()
    corners = [QPoint(20, 20), QPoint(vp.width() - 20, 20), QPoint(20, vp.height() - 20)]
    corners.append(QPoint(vp.width() - 20, vp.height() - 20))
    # a corner the node (grown by its picture) does not cover
    empty = next(c for c in corners if not item.sceneBoundingRect().contains(window.view.mapToScene(c)))
    assert window.view.image_input_at(empty) is None
    seen: list[str] = []
    answer_next_box(qtbot, QMessageBox.StandardButton.Discard, seen)  # "save the changes first?"
    assert drag_and_drop(window.view.viewport(), urls(path), empty)
    qtbot.waitUntil(lambda: sorted(n.type for n in window.graph.nodes.values()) != ["LoadImage"], timeout=3000)
    assert sorted(n.type for n in window.graph.nodes.values()) == sorted(n.type for n in graph.nodes.values())
    assert len(seen) == 1
