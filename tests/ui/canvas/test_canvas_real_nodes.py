"""The canvas with the real node registry (`nodes.builtin_registry`), driven by real key and mouse
events: the add-node search over the real node names (issue 10, bug 12)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from canvas_helpers import vp
from PySide6.QtCore import Qt
from PySide6.QtGui import QUndoStack
from PySide6.QtTest import QTest

from graph_engine import Graph, NodeRegistry
from nodes import builtin_registry
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
    assert [popup.list.item(i).text() for i in range(popup.list.count())] == [
        view.registry.get(t).display_name for t in shown
    ]
    QTest.keyClick(popup.edit, Qt.Key.Key_Escape)
    assert not popup.isVisible()
    return shown


def test_search_shows_nothing_rather_than_noise(real_view: GraphView) -> None:
    shown = search_for(real_view, "reroute")
    assert "RandomNoise" not in shown
    assert shown == [t for t in shown if "reroute" in t.lower()]  # Reroute itself, if it exists, or nothing


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
    assert search_for(real_view, "vae dec") == ["VAEDecode"]
    assert "KSamplerAdvanced" in search_for(real_view, "ksam")
    assert not {"RandomNoise", "KarrasScheduler"} & set(search_for(real_view, "ksam"))


def test_enter_adds_the_top_match(real_view: GraphView) -> None:
    QTest.mouseMove(real_view.viewport(), vp(real_view, (150, 150)))
    QTest.keyClick(real_view, Qt.Key.Key_Tab)
    QTest.keyClicks(real_view.search_popup.edit, "vae dec")
    QTest.keyClick(real_view.search_popup.edit, Qt.Key.Key_Return)
    (node,) = real_view.graph.nodes.values()
    assert node.type == "VAEDecode"
