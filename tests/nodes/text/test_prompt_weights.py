"""Emphasis-syntax parser: fixed examples plus hypothesis properties (never raises, exact round trips)."""

from __future__ import annotations

import itertools
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.diffusion.text.weights import EMPHASIS, ESCAPABLE, MAX_WEIGHT, escape_prompt, parse_prompt

E = EMPHASIS


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("", []),
        ("a cat", [("a cat", 1.0)]),
        ("(word:1.2)", [("word", 1.2)]),
        ("(word)", [("word", E)]),
        ("((word))", [("word", E * E)]),
        ("[word]", [("word", 1 / E)]),
        ("a (red:1.3) [dull] cat", [("a ", 1.0), ("red", 1.3), (" ", 1.0), ("dull", 1 / E), (" cat", 1.0)]),
        ("((a:2) b)", [("a", 2 * E), (" b", E)]),
        ("(a : 0.5 )", [("a ", 0.5)]),
        ("(x:.5)", [("x", 0.5)]),
        ("(x:0)", [("x", 0.0)]),
        (r"\(not\) \[weighted\]", [("(not) [weighted]", 1.0)]),
        (r"back\\slash \: c:\path", [("back\\slash : c:\\path", 1.0)]),
        ("(unclosed", [("(unclosed", 1.0)]),
        ("oops) and]", [("oops) and]", 1.0)]),
        ("x:1.5) y", [("x:1.5) y", 1.0)]),
        ("(time: noon)", [("time: noon", E)]),
        ("(a:-1)", [("a:-1", E)]),
        ("(a [b) c]", [("a ", E), ("b", E * (1 / E)), (" c", 1 / E)]),
        ("((a)", [("(", 1.0), ("a", E)]),
        ("()", []),
        ("(a:1.5)(b:1.5)", [("ab", 1.5)]),
    ],
)
def test_examples(prompt: str, expected: list[tuple[str, float]]) -> None:
    got = parse_prompt(prompt)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected], rel=1e-12)


def test_weights_are_capped() -> None:
    assert parse_prompt("(a:" + "9" * 400 + ")") == [("a", MAX_WEIGHT)]
    assert parse_prompt("(" * 5000 + "deep" + ")" * 5000) == [("deep", MAX_WEIGHT)]


# --- properties on arbitrary text -------------------------------------------------------------------

# Bias generation toward the syntax characters so that hypothesis explores nesting and escapes.
syntaxy_text = st.text(alphabet=st.sampled_from(list("()[]:\\ .0123456789ab,é!\n")) | st.characters(), max_size=60)

EXPLICIT_ZERO = re.compile(r":\s*(0+\.?0*|\.0+)\s*\)")
SYNTAX_CHARS = set("()[]\\:.0123456789") | {" ", "\t", "\r", "\n"}


@settings(max_examples=300, deadline=None)
@given(syntaxy_text)
def test_any_string_parses_with_sane_weights(prompt: str) -> None:
    segments = parse_prompt(prompt)
    for text, weight in segments:
        assert text, "segments are never empty"
        assert math.isfinite(weight)
        assert 0.0 <= weight <= MAX_WEIGHT
        if not EXPLICIT_ZERO.search(prompt):
            assert weight > 0.0, "only an explicit (x:0) can produce weight 0"
    for (_, w1), (_, w2) in itertools.pairwise(segments):
        assert w1 != w2, "adjacent equal weights are merged"
    # Only syntax characters can disappear; nothing is invented or reordered beyond that.
    joined = "".join(t for t, _ in segments)
    for ch in set(prompt) | set(joined):
        if ch not in SYNTAX_CHARS:
            assert joined.count(ch) == prompt.count(ch), ch


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="()[]\\:"), min_size=1, max_size=40))
def test_plain_text_is_one_unit_weight_segment(text: str) -> None:
    assert parse_prompt(text) == [(text, 1.0)]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_escaped_text_round_trips(text: str) -> None:
    got = parse_prompt(escape_prompt(text))
    assert got == ([(text, 1.0)] if text else [])
    for c in ESCAPABLE:
        assert "\\" + c in escape_prompt(c)


# --- properties on generated syntax trees: exact expected text and per-character weights ------------

leaf = st.text(min_size=1, max_size=8).map(lambda s: ("text", s))
explicit_weight = st.decimals(min_value=0, max_value=20, places=2).map(lambda d: format(d, "f"))
tree = st.recursive(
    leaf,
    lambda children: st.one_of(
        st.tuples(st.just("round"), st.lists(children, min_size=1, max_size=3)),
        st.tuples(st.just("square"), st.lists(children, min_size=1, max_size=3)),
        st.tuples(st.just("weighted"), st.lists(children, min_size=1, max_size=3), explicit_weight),
    ),
    max_leaves=12,
)


def render(node: tuple, weight: float) -> tuple[str, list[tuple[str, float]]]:
    """(prompt source, expected per-leaf (text, weight)) for a generated tree."""
    kind = node[0]
    if kind == "text":
        return escape_prompt(node[1]), [(node[1], weight)]
    if kind == "round":
        w, (open_, close) = weight * E, ("(", ")")
    elif kind == "square":
        w, (open_, close) = weight * (1 / E), ("[", "]")
    else:
        w, (open_, close) = weight * float(node[2]), ("(", f":{node[2]})")
    w = min(w, MAX_WEIGHT)  # the documented cap, applied at every nesting level
    parts = [render(child, w) for child in node[1]]
    return open_ + "".join(p for p, _ in parts) + close, [leaf for _, leaves in parts for leaf in leaves]


@settings(max_examples=200, deadline=None)
@given(st.lists(tree, min_size=1, max_size=4))
def test_generated_syntax_parses_to_expected_segments(nodes: list) -> None:
    rendered = [render(n, 1.0) for n in nodes]
    prompt = "".join(p for p, _ in rendered)
    expected = [leaf for _, leaves in rendered for leaf in leaves]
    got = parse_prompt(prompt)
    # Concatenated text equals the prompt with the syntax removed.
    assert "".join(t for t, _ in got) == "".join(t for t, _ in expected)
    # Every character carries the weight of its enclosing groups.
    got_chars = [w for t, w in got for _ in t]
    want_chars = [w for t, w in expected for _ in t]
    assert got_chars == pytest.approx(want_chars, rel=1e-9, abs=1e-12)
