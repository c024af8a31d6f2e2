"""The canvas with the real node registry (`nodes.builtin_registry`), driven by real key and mouse
events: the add-node search over the real node names (issue 10, bug 12), and the prompt editors of the
default graph's two stacked Encode Prompt nodes (bug 9)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from canvas_helpers import vp
from PySide6.QtCore import QPointF, QRect, Qt
from PySide6.QtGui import QUndoStack
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QPlainTextEdit, QWidget

from graph_engine import Graph, NodeRegistry
from nodes import builtin_registry
from ui import node_titles
from ui.canvas import GraphView


@pytest.fixture
def real_registry() -> NodeRegistry:
    return builtin_registry()


@pytest.fixture
def real_view(qtbot, real_registry: NodeRegistry) -> Iterator[GraphView]:
    stack = QUndoStack()
    v = GraphView(Graph(), real_registry, stack)
    v._test_stack = stack  # type: ignore[attr-defined]  # keep the stack alive as long as the view
    v.resize(1000, 700)
    qtbot.addWidget(v)
    v.show()
    qtbot.waitExposed(v)
    v.activateWindow()
    v.setFocus()
    v.resetTransform()
    v.centerOn(v.viewport().width() / 2 - 40, v.viewport().height() / 2 - 40)
    yield v


def search_for(view: GraphView, text: str) -> list[str]:
    """Open the search with Tab over the canvas, type `text` key by key, return the types shown."""
    QTest.mouseMove(view.viewport(), vp(view, (200, 200)))
    view.setFocus()
    QTest.keyClick(view, Qt.Key.Key_Tab)
    popup = view.search_popup
    assert popup.isVisible()
    QTest.keyClicks(popup.edit, text)
    shown = popup.shown_types()
    # each row shows the title the canvas uses (ComfyUI's by default), then the other name if it differs
    labels = [popup.list.item(i).text() for i in range(popup.list.count())]
    specs = [view.registry.get(t) for t in shown]
    assert [label.split("   (")[0] for label in labels] == [node_titles.title(s) for s in specs]
    assert all(node_titles.other_title(s) in label for s, label in zip(specs, labels, strict=True))
    QTest.keyClick(popup.edit, Qt.Key.Key_Escape)
    assert not popup.isVisible()
    return shown


def test_search_shows_nothing_rather_than_noise(real_view: GraphView) -> None:
    shown = search_for(real_view, "reroute")
    assert "RandomNoise" not in shown
    assert shown == ["Reroute"]  # the Reroute node itself, and nothing that merely sounds alike


@pytest.mark.parametrize(
    ("typed", "first"),
    [
        ("ksam", "KSampler"),
        ("ks", "KSampler"),
        ("vae dec", "VAEDecode"),
        ("vd", "VAEDecode"),
        ("KSampler", "KSampler"),
        ("CLIPTextEncode", "CLIPTextEncode"),  # the ComfyUI type name, whose title is "Encode Prompt"
        ("encode prompt", "CLIPTextEncode"),
        ("empty lat", "EmptyLatentImage"),
        ("checkpoint", "CheckpointLoaderSimple"),
    ],
)
def test_search_ranks_exact_prefix_and_word_starts_first(real_view: GraphView, typed: str, first: str) -> None:
    shown = search_for(real_view, typed)
    assert shown and shown[0] == first


def test_vae_dec_does_not_offer_unrelated_nodes(real_view: GraphView) -> None:
    shown = search_for(real_view, "vae dec")
    assert shown[0] == "VAEDecode" and set(shown) <= {"VAEDecode", "VAEDecodeTiled"}  # decoders only
    assert "KSamplerAdvanced" in search_for(real_view, "ksam")
    assert not {"RandomNoise", "KarrasScheduler"} & set(search_for(real_view, "ksam"))


def test_enter_adds_the_top_match(real_view: GraphView) -> None:
    QTest.mouseMove(real_view.viewport(), vp(real_view, (150, 150)))
    QTest.keyClick(real_view, Qt.Key.Key_Tab)
    QTest.keyClicks(real_view.search_popup.edit, "vae dec")
    QTest.keyClick(real_view.search_popup.edit, Qt.Key.Key_Return)
    (node,) = real_view.graph.nodes.values()
    assert node.type == "VAEDecode"


# ---- prompt editors of stacked nodes (bug 9) -------------------------------------------------------


def click_where_the_user_sees(view: GraphView, scene_pos: QPointF) -> QWidget:
    """A click as the window system delivers it: to the topmost widget at that spot of the viewport (an
    open inline editor included), not straight to the viewport underneath. Returns the widget clicked."""
    at = vp(view, scene_pos)
    target = view.viewport().childAt(at) or view.viewport()
    local = target.mapFrom(view.viewport(), at) if target is not view.viewport() else at
    QTest.mouseMove(target, local)
    QTest.mouseClick(target, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, local)
    return target


def node_rect_on_screen(view: GraphView, node_id: int) -> QRect:
    item = view.node_item(node_id)
    return view.mapFromScene(item.mapRectToScene(item.layout.rect)).boundingRect()


@pytest.mark.parametrize("zoom", [1.0, 0.6, 0.35])
def test_clicking_the_lower_prompt_types_into_the_lower_node(
    real_view: GraphView, real_registry: NodeRegistry, zoom: float
) -> None:
    """The default graph's layout: two Encode Prompt nodes one above the other. The upper one's editor
    must not cover the lower one, at any zoom (a fitted default graph is zoomed out)."""
    graph = real_view.graph
    defaults = real_registry.get("CLIPTextEncode").default_values()
    upper = graph.add_node("CLIPTextEncode", defaults | {"text": "a cat"}, pos=(420, 60)).id
    lower = graph.add_node("CLIPTextEncode", defaults | {"text": "blurry"}, pos=(420, 300)).id
    real_view.resetTransform()
    real_view.scale(zoom, zoom)
    real_view.centerOn(QPointF(520, 250))
    upper_prompt = real_view.node_item(upper).widget_scene_rect("text")
    lower_prompt = real_view.node_item(lower).widget_scene_rect("text")

    click_where_the_user_sees(real_view, upper_prompt.center())
    first = QApplication.focusWidget()
    assert isinstance(first, QPlainTextEdit)
    assert node_rect_on_screen(real_view, upper).contains(first.geometry())  # inside its own node
    first.selectAll()
    QTest.keyClicks(first, "a red fox")

    click_where_the_user_sees(real_view, QPointF(lower_prompt.center().x(), lower_prompt.top() + 6))
    second = QApplication.focusWidget()
    assert isinstance(second, QPlainTextEdit) and second is not first
    assert node_rect_on_screen(real_view, lower).contains(second.geometry())
    second.selectAll()
    QTest.keyClicks(second, "low quality")
    QTest.keyClick(second, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)

    assert graph.nodes[upper].values["text"] == "a red fox"
    assert graph.nodes[lower].values["text"] == "low quality"


def test_an_editor_near_the_view_edge_stays_inside_its_node(real_view: GraphView, real_registry: NodeRegistry) -> None:
    graph = real_view.graph
    nid = graph.add_node("CLIPTextEncode", real_registry.get("CLIPTextEncode").default_values(), pos=(0, 0)).id
    real_view.resetTransform()
    real_view.scale(0.5, 0.5)
    real_view.centerOn(QPointF(100, 60))
    item = real_view.node_item(nid)
    click_where_the_user_sees(real_view, item.widget_scene_rect("text").center())
    editor = QApplication.focusWidget()
    assert isinstance(editor, QPlainTextEdit)
    node_rect = node_rect_on_screen(real_view, nid)
    assert node_rect.contains(editor.geometry())
    # and it still takes the whole prompt area (not shrunk to nothing)
    prompt = real_view.mapFromScene(item.widget_scene_rect("text")).boundingRect()
    assert editor.geometry().height() >= prompt.height() - 1 and editor.geometry().width() >= prompt.width() - 1
    QTest.keyClicks(editor, "never kept")
    QTest.keyClick(editor, Qt.Key.Key_Escape)
    assert not editor.isVisible()
    assert graph.nodes[nid].values["text"] == ""
