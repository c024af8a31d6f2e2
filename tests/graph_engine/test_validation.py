"""Validation reports every problem at once, each naming node id, title and input."""

from __future__ import annotations

import pytest

from graph_engine import Graph, NodeRegistry, Output, can_connect, node, validate
from graph_engine.node_spec import Int, Socket
from graph_engine.types import TYPES, types_compatible
from tests.graph_engine import toy_nodes


def test_type_table_has_the_documented_types():
    expected = {
        "MODEL",
        "CLIP",
        "VAE",
        "CONDITIONING",
        "LATENT",
        "IMAGE",
        "MASK",
        "GUIDER",
        "CONTROL_NET",
        "UPSCALE_MODEL",
        "SAMPLER",
        "SIGMAS",
        "NOISE",
        "INT",
        "FLOAT",
        "STRING",
        "BOOLEAN",
        "COMBO",
        "ANY",
    }
    assert set(TYPES) == expected


@pytest.mark.parametrize(
    ("out", "inp", "reason"),
    [
        ("LATENT", "LATENT", None),
        ("LATENT", "IMAGE", "LATENT cannot feed IMAGE"),
        ("INT", "FLOAT", "INT cannot feed FLOAT"),
        ("IMAGE", "ANY", None),
        ("ANY", "MODEL", None),
        ("STRING", "COMBO", None),
    ],
)
def test_types_compatible(out, inp, reason):
    assert types_compatible(out, inp) == reason


def test_can_connect_gives_reasons():
    reg = toy_nodes.registry()
    g = Graph()
    blob = g.add_node("Blob").id
    img = g.add_node("ImageSink").id
    a = g.add_node("Number").id
    add = g.add_node("Add").id
    add2 = g.add_node("Add").id
    g.add_link(a, "INT", add, "a", "INT")
    g.add_link(add, "INT", add2, "a", "INT")
    assert can_connect(g, reg, a, "INT", add, "b")
    v = can_connect(g, reg, blob, "LATENT", img, "image")
    assert not v and v.reason == "LATENT cannot feed IMAGE"
    v = can_connect(g, reg, add2, "INT", add, "b")
    assert not v and v.reason == "would make a cycle"
    assert can_connect(g, reg, add, "INT", add, "b").reason == "a node cannot feed itself"
    assert "no input 'nope'" in can_connect(g, reg, a, "INT", add, "nope").reason
    # Replacing the link into add2.a by one from Number is fine (the old link does not count).
    assert can_connect(g, reg, a, "INT", add2, "a")


def test_every_problem_reported_at_once_with_node_title_and_input():
    reg = toy_nodes.registry()
    g = Graph()
    n = g.add_node("Number", {"value": 5000}, title="Too big").id  # above max 1000
    add = g.add_node("Add", {"bias": "x"}).id  # wrong type for bias, input b missing
    g.add_link(n, "INT", add, "a", "INT")
    ghost = g.add_node("Frobnicate", title="Ghost").id
    ch = g.add_node("Choose", {"mode": "medium", "label": 3}).id
    blob = g.add_node("Blob").id
    img = g.add_node("ImageSink").id
    g.add_link(blob, "LATENT", img, "image", "LATENT")  # a file could contain such a link
    s1, s2, s3 = g.add_node("Show").id, g.add_node("Show").id, g.add_node("Show").id
    g.add_link(add, "INT", s1, "value", "INT")
    g.add_link(ghost, "INT", s2, "value", "INT")
    g.add_link(ch, "STRING", s3, "value", "STRING")
    problems = validate(g, reg)
    text = sorted(str(p) for p in problems)
    assert text == sorted(
        [
            f"node {n} (Too big), input 'value': 5000 is above the maximum 1000",
            f"node {add} (Add), input 'b': required INT input is not connected",
            f"node {add} (Add), input 'bias': expected a whole number, got 'x'",
            f"node {ghost} (Ghost): node type 'Frobnicate' is not installed",
            f"node {ch} (Choose), input 'mode': 'medium' is not one of the choices ('fast', 'slow')",
            f"node {ch} (Choose), input 'label': expected text, got 3",
            f"node {img} (ImageSink), input 'image': LATENT cannot feed IMAGE (from node {blob})",
        ]
    )
    codes = {p.code for p in problems}
    assert codes == {"bad_value", "missing_input", "unknown_type", "type_mismatch"}


def test_cycle_is_reported():
    reg = toy_nodes.registry()
    g = Graph()
    a = g.add_node("Add").id
    b = g.add_node("Add").id
    s = g.add_node("Show").id
    n = g.add_node("Number").id
    g.add_link(n, "INT", a, "b", "INT")
    g.add_link(n, "INT", b, "b", "INT")
    g.add_link(a, "INT", b, "a", "INT")
    g.add_link(b, "INT", a, "a", "INT")  # a file can hold what the editor would refuse
    g.add_link(b, "INT", s, "value", "INT")
    problems = validate(g, reg)
    assert [p.code for p in problems] == ["cycle"]
    assert "is part of a cycle" in str(problems[0]) and f"{a} (Add)" in str(problems[0])


def test_no_output_node():
    g = Graph()
    g.add_node("Number")
    problems = validate(g, toy_nodes.registry())
    assert [p.code for p in problems] == ["no_output"]
    assert "no active output node" in str(problems[0])


def test_problems_off_the_execution_path_do_not_block():
    reg = toy_nodes.registry()
    g = Graph()
    n = g.add_node("Number").id
    s = g.add_node("Show").id
    g.add_link(n, "INT", s, "value", "INT")
    g.add_node("Frobnicate")  # an unknown placeholder feeding nothing
    g.add_node("Add")  # half-built, feeds nothing
    assert validate(g, reg) == []


def test_optional_inputs_and_defaults():
    reg = toy_nodes.registry()
    g = Graph()
    ch = g.add_node("Choose", {}).id  # defaults: first choice, "x"
    s = g.add_node("Show").id
    g.add_link(ch, "STRING", s, "value", "STRING")
    assert validate(g, reg) == []


def test_float_values_for_int_inputs():
    inp = Int("n", 1, min=0, max=10)
    assert inp.check_value(3.0) == (3, None)
    assert inp.check_value(3.5)[1] == "expected a whole number, got 3.5"
    assert inp.check_value(True)[1] == "expected a whole number, got True"
    assert inp.check_value(float("nan"))[1] == "expected a whole number, got nan"


def test_node_declaration_rejects_mistakes():
    with pytest.raises(ValueError, match="duplicate input ids"):
        node("X", inputs=[Int("a"), Int("a")])(lambda ctx, a: ())
    with pytest.raises(ValueError, match="unknown type 'PICTURE'"):
        node("X", inputs=[Socket("a", "PICTURE")])(lambda ctx, a: ())
    with pytest.raises(ValueError, match="registered twice"):
        spec = node("X", outputs=[Output("INT")])(lambda ctx: (1,))
        NodeRegistry([spec, node("X")(lambda ctx: ())])
