"""Fixtures for the canvas tests: a tiny pure-Python node registry and a shown, exposed `GraphView`.

The registry is defined here, not taken from `nodes/`, so the tests say exactly which sockets exist:
Number (INT widget -> INT), Add (two INT widgets -> INT), Show (an output node taking ANY),
Latent/Image/Decode for LATENT and IMAGE sockets, Sampler for every widget kind, and the real Note.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Iterator

import pytest
from PySide6.QtGui import QUndoStack

from graph_engine import Graph, NodeRegistry, node
from graph_engine.node_spec import Boolean, Combo, Float, Int, Output, Socket, String
from nodes.note import note
from ui.canvas import GraphView

SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m"]


def _noop(ctx: object, **kw: object) -> tuple[()]:
    return ()


def make_registry() -> NodeRegistry:
    specs = [
        node("Number", category="math", inputs=[Int("value", 1, min=0, max=100)], outputs=[Output("INT")])(_noop),
        node(
            "Add",
            category="math",
            inputs=[Int("a", 0, min=-1000, max=1000), Int("b", 0, min=-1000, max=1000)],
            outputs=[Output("INT")],
        )(_noop),
        node("Show", category="output", output_node=True, inputs=[Socket("value", "ANY")])(_noop),
        node("Latent", display_name="Empty Latent", category="latent", outputs=[Output("LATENT")])(_noop),
        node(
            "Decode",
            display_name="Decode Latent",
            category="latent",
            inputs=[Socket("samples", "LATENT")],
            outputs=[Output("IMAGE")],
        )(_noop),
        node("Image", display_name="Image Sink", category="image", inputs=[Socket("image", "IMAGE")])(_noop),
        node(
            "Sampler",
            display_name="KSampler",
            category="sampling",
            inputs=[
                Socket("latent", "LATENT"),
                Int("seed", 42, min=0, max=2**32 - 1, control_after_generate=True),
                Int("steps", 20, min=1, max=150),
                Float("cfg", 7.0, min=0.0, max=30.0, step=0.5),
                Combo("sampler", lambda: list(SAMPLERS)),
                Boolean("tiled", False),
                String("prompt", "a cat", multiline=True),
            ],
            outputs=[Output("LATENT")],
        )(_noop),
        note,
    ]
    return NodeRegistry(specs)


@pytest.fixture
def registry() -> NodeRegistry:
    return make_registry()


@pytest.fixture
def graph() -> Graph:
    return Graph()


@pytest.fixture
def view(qtbot, graph: Graph, registry: NodeRegistry) -> Iterator[GraphView]:
    stack = QUndoStack()
    v = GraphView(graph, registry, stack)
    v._test_stack = stack  # type: ignore[attr-defined]  # keep the stack alive as long as the view
    v.resize(1000, 700)
    qtbot.addWidget(v)
    v.show()
    qtbot.waitExposed(v)
    v.activateWindow()
    v.setFocus()
    # a fixed, known transform: scene (0, 0) at the viewport's top-left corner, zoom 1
    v.resetTransform()
    v.centerOn(v.viewport().width() / 2 - 40, v.viewport().height() / 2 - 40)
    yield v
