"""Load Image on the canvas: choose a file anywhere, paste an image, drop one, see it (issue 10, bug 4).

Everything goes through real input: clicks on the node's painted "Choose file…" button and combo, Ctrl+V
with an image on the system clipboard, drag-enter + drop events on the viewport. The file dialog is
`ui.input_images.choose_image_file`, replaced here so no modal dialog blocks the test. Images always
end up *in* the input folder under a name no other file has; a workflow only ever names them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from canvas_helpers import click, vp
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QGuiApplication, QImage, QUndoStack
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

import ui.input_images as input_images
from graph_engine import Graph, NodeRegistry
from nodes.folders import input_dir, resolve_input_image
from nodes.image import load_image
from tests.ui.canvas.conftest import make_registry
from ui.canvas import GraphView
from ui.clipboard import selection_to_payload, write_system_clipboard


@pytest.fixture
def home(sdgraph_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SDGRAPH_INPUT_DIR", raising=False)
    return sdgraph_home


@pytest.fixture
def registry() -> NodeRegistry:
    reg = make_registry()
    reg.register(load_image)  # the real Load Image declaration
    return reg


@pytest.fixture
def view(qtbot: Any, graph: Graph, registry: NodeRegistry, home: Path) -> Iterator[GraphView]:
    stack = QUndoStack()
    v = GraphView(graph, registry, stack)
    v._test_stack = stack  # type: ignore[attr-defined]
    v.resize(1000, 700)
    qtbot.addWidget(v)
    v.show()
    qtbot.waitExposed(v)
    v.activateWindow()
    v.setFocus()
    v.resetTransform()
    v.centerOn(v.viewport().width() / 2 - 40, v.viewport().height() / 2 - 40)
    yield v
    QGuiApplication.clipboard().clear()


def png(path: Path, color: str, size: tuple[int, int] = (64, 48)) -> Path:
    image = QImage(size[0], size[1], QImage.Format.Format_RGB32)
    image.fill(QColor(color))
    path.parent.mkdir(parents=True, exist_ok=True)
    assert image.save(str(path), "PNG")
    return path


def answer_dialog(monkeypatch: pytest.MonkeyPatch, path: Path | None) -> list[object]:
    """Replace the modal file dialog: it answers `path` and records that it was asked."""
    asked: list[object] = []

    def choose(parent: object) -> Path | None:
        asked.append(parent)
        return path

    monkeypatch.setattr(input_images, "choose_image_file", choose)
    return asked


def button_center(view: GraphView, node_id: int) -> QPointF:
    item = view.node_item(node_id)
    row = item.layout.widgets["image"]
    assert row.button_rect is not None
    return item.mapToScene(row.button_rect.center())


def drop(view: GraphView, mime: QMimeData, at: QPoint) -> bool:
    buttons, mods = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(at, Qt.DropAction.CopyAction, mime, buttons, mods)
    QApplication.sendEvent(view.viewport(), enter)
    if not enter.isAccepted():
        return False
    event = QDropEvent(QPointF(at), Qt.DropAction.CopyAction, mime, buttons, mods)
    QApplication.sendEvent(view.viewport(), event)
    return event.isAccepted()


def test_choose_file_button_copies_the_image_in_and_selects_it(
    view: GraphView, graph: Graph, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = home / "input"
    assert not folder.exists()  # created on demand, not before
    nid = view.add_node_at("LoadImage", (40, 40))
    item = view.node_item(nid)
    assert str(input_dir()) in item.toolTip()  # the node says where its images live
    assert item.layout.image_rect is None  # nothing chosen yet, nothing shown

    picked = png(tmp_path / "elsewhere" / "cat.png", "#ff0000")
    asked = answer_dialog(monkeypatch, picked)
    click(view, button_center(view, nid))

    assert asked == [view]
    assert graph.nodes[nid].values["image"] == "cat.png"
    copied = folder / "cat.png"
    assert copied.read_bytes() == picked.read_bytes() and picked.exists()  # a copy; the original stays
    # the node now shows the picture, with the image's aspect ratio
    assert item.layout.image_rect is not None
    assert item.layout.image_rect.width() / item.layout.image_rect.height() == pytest.approx(64 / 48, rel=0.02)
    # one undo step takes the choice back (the copied file stays, it may be used elsewhere)
    view.undo_stack.undo()
    assert graph.nodes[nid].values.get("image") in (None, "")
    assert view.node_item(nid).layout.image_rect is None


def test_choosing_a_different_file_with_a_taken_name_never_overwrites(
    view: GraphView, graph: Graph, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    existing = png(home / "input" / "photo.png", "#0000ff")
    before = existing.read_bytes()
    nid = view.add_node_at("LoadImage", (40, 40))
    assert graph.nodes[nid].values["image"] == "photo.png"  # the folder's image is the default

    other = png(tmp_path / "a" / "photo.png", "#00ff00")
    answer_dialog(monkeypatch, other)
    click(view, button_center(view, nid))
    assert existing.read_bytes() == before
    assert graph.nodes[nid].values["image"] == "photo_1.png"
    assert (home / "input" / "photo_1.png").read_bytes() == other.read_bytes()

    # the same bytes again reuse their copy instead of piling up photo_2.png
    click(view, button_center(view, nid))
    assert graph.nodes[nid].values["image"] == "photo_1.png"
    assert sorted(p.name for p in (home / "input").iterdir()) == ["photo.png", "photo_1.png"]

    # a cancelled dialog changes nothing
    answer_dialog(monkeypatch, None)
    click(view, button_center(view, nid))
    assert graph.nodes[nid].values["image"] == "photo_1.png"


def test_the_combo_menu_offers_choose_file_and_names_the_folder(
    view: GraphView, graph: Graph, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qtbot: Any
) -> None:
    nid = view.add_node_at("LoadImage", (40, 40))
    item = view.node_item(nid)
    click(view, item.mapToScene(item.layout.widgets["image"].rect.center()))
    menu = view.active_menu
    assert menu is not None
    texts = [a.text() for a in menu.actions()]
    assert texts[0] == "Choose file…"
    assert any(str(input_dir()) in t for t in texts)  # "(no images in <folder>)"
    answer_dialog(monkeypatch, png(tmp_path / "dog.png", "#123456"))
    menu.actions()[0].trigger()
    assert graph.nodes[nid].values["image"] == "dog.png"


def test_ctrl_v_with_an_image_on_the_clipboard_adds_a_load_image_node(
    view: GraphView, graph: Graph, home: Path
) -> None:
    image = QImage(40, 30, QImage.Format.Format_RGB32)
    image.fill(QColor("#336699"))
    QGuiApplication.clipboard().setImage(image)
    at = QPointF(300, 200)
    QTest.mouseMove(view.viewport(), vp(view, at))
    QTest.keyClick(view, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)

    [node] = graph.nodes.values()
    assert node.type == "LoadImage"
    assert node.pos == pytest.approx((at.x(), at.y()), abs=1.5)
    name = node.values["image"]
    assert name.endswith(".png") and "/" not in name
    saved = QImage(str(resolve_input_image(name)))
    assert (saved.width(), saved.height()) == (40, 30)
    assert saved.pixelColor(5, 5) == QColor("#336699")
    assert view.node_item(node.id).layout.image_rect is not None  # shown in the node


def test_ctrl_v_still_pastes_copied_nodes_first(view: GraphView, graph: Graph, home: Path) -> None:
    nid = graph.add_node("Number", {"value": 5}, pos=(0, 0)).id
    write_system_clipboard(selection_to_payload(graph, [nid]))
    QTest.mouseMove(view.viewport(), vp(view, (300, 200)))
    QTest.keyClick(view, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert sorted(n.type for n in graph.nodes.values()) == ["Number", "Number"]
    assert not (home / "input").exists()


def test_dropping_an_image_file_adds_a_load_image_node_at_the_drop_point(
    view: GraphView, graph: Graph, home: Path, tmp_path: Path
) -> None:
    src = png(tmp_path / "drops" / "bird.png", "#00aa00", (32, 64))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(src))])
    at = QPointF(250, 180)
    assert drop(view, mime, vp(view, at))

    [node] = graph.nodes.values()
    assert node.type == "LoadImage" and node.values["image"] == "bird.png"
    assert node.pos == pytest.approx((at.x(), at.y()), abs=1.5)
    assert (home / "input" / "bird.png").read_bytes() == src.read_bytes()
    rect = view.node_item(node.id).layout.image_rect
    assert rect is not None and rect.height() > rect.width()  # a tall picture, drawn tall

    # dropped onto that node, another image replaces its picture instead of adding a node
    other = png(tmp_path / "drops" / "fish.png", "#0000aa")
    mime2 = QMimeData()
    mime2.setUrls([QUrl.fromLocalFile(str(other))])
    item = view.node_item(node.id)
    assert drop(view, mime2, view.mapFromScene(item.mapToScene(item.layout.title_rect.center())))
    assert len(graph.nodes) == 1 and graph.nodes[node.id].values["image"] == "fish.png"


def test_a_dropped_non_image_is_refused(view: GraphView, graph: Graph, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(text))])
    drop(view, mime, vp(view, (200, 200)))
    assert graph.nodes == {}


@pytest.mark.parametrize("name", ["../secret.png", "/etc/passwd.png", "sub/../../x.png"])
def test_workflow_names_never_leave_the_input_folder(view: GraphView, graph: Graph, home: Path, name: str) -> None:
    """A workflow naming a file outside the folder shows nothing and still fails to load it."""
    outside = png(home / "secret.png", "#ffffff")
    assert outside.exists()
    nid = graph.add_node("LoadImage", {"image": name}, pos=(0, 0)).id
    assert view.node_item(nid).layout.image_rect is None
    with pytest.raises(ValueError):
        resolve_input_image(name)
