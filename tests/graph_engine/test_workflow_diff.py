"""What the run queue says a queued run changes: short phrases from two workflow graphs."""

from __future__ import annotations

from graph_engine import Graph
from graph_engine.workflow_diff import workflow_changes


def _pair() -> tuple[Graph, Graph]:
    def build() -> Graph:
        g = Graph()
        g.add_node("CLIPTextEncode", {"text": "a red fox in the snow, highly detailed"}, id=1)
        g.add_node("KSampler", {"seed": 42, "cfg": 7.0, "sampler_name": "euler"}, id=2)
        g.add_node("KSampler", {"seed": 1}, id=3)
        g.connect(1, "CONDITIONING", 2, "positive", "CONDITIONING")
        return g

    return build(), build()


def test_identical_workflows_change_nothing_even_when_nodes_moved() -> None:
    a, b = _pair()
    b.move_node(1, (300.0, 40.0))
    assert workflow_changes(a, b) == []


def test_values_are_shown_old_to_new_and_long_text_as_changed() -> None:
    a, b = _pair()
    b.set_value(2, "seed", 43)
    b.set_value(2, "cfg", 5.5)
    b.set_value(1, "text", "a blue fox in the snow, highly detailed")
    b.set_value(3, "sampler_name", "heun")
    assert workflow_changes(a, b) == [
        "CLIPTextEncode.text changed",
        "KSampler#2.cfg 7 → 5.5",
        "KSampler#2.seed 42 → 43",
        "KSampler#3.sampler_name set",
    ]


def test_nodes_modes_and_wires() -> None:
    a, b = _pair()
    b.remove_node(3)
    b.add_node("VAEDecode", {}, id=4)
    b.set_mode(2, "bypass")
    b.remove_link(next(iter(b.links)))
    assert workflow_changes(a, b) == [
        "KSampler#3 removed",
        "VAEDecode added",
        "KSampler bypass",
        "KSampler.positive unwired",
    ]
    c, d = _pair()
    d.add_node("CLIPTextEncode", {"text": "x"}, id=5)
    d.remove_link(next(iter(d.links)))
    d.connect(5, "CONDITIONING", 2, "positive", "CONDITIONING")
    assert workflow_changes(c, d) == [
        "CLIPTextEncode#5 added",
        "KSampler#2.positive wired from CLIPTextEncode#5.CONDITIONING",
    ]
