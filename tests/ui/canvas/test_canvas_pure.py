"""The Qt-free layers under the canvas: clipboard payloads, fuzzy search ranking, seed control."""

from __future__ import annotations

import json
import random

import pytest

from graph_engine import Graph, node
from graph_engine.serialization import graph_to_dict
from ui.canvas.search import (
    EXACT,
    FUZZY,
    PREFIX,
    SUBSTRING,
    WORD_START,
    Candidate,
    compatible_specs,
    fuzzy_score,
    match_tier,
    name_words,
    rank,
)
from ui.canvas.seed import apply_seed_control
from ui.clipboard import (
    ClipboardFormatError,
    dumps_payload,
    loads_payload,
    payload_to_records,
    restore_link,
    restore_node,
    selection_to_payload,
)


def three_nodes(registry) -> tuple[Graph, int, int, int]:
    g = Graph()
    a = g.add_node("Number", {"value": 3}, pos=(100, 50), title="A").id
    b = g.add_node("Add", {"a": 0, "b": 2}, pos=(400, 80), mode="bypass").id
    c = g.add_node("Number", {"value": 9}, pos=(100, 300)).id
    g.add_link(a, "INT", b, "a", "INT")
    g.add_link(c, "INT", b, "b", "INT")
    g.nodes[a].extra["control_after_generate"] = "fixed"
    return g, a, b, c


def test_payload_keeps_internal_links_only_and_is_json(registry) -> None:
    g, a, b, _c = three_nodes(registry)
    payload = selection_to_payload(g, [a, b])
    payload = json.loads(dumps_payload(payload))  # survives the system clipboard as text
    assert [n["id"] for n in payload["nodes"]] == [a, b]
    assert [n["pos"] for n in payload["nodes"]] == [[0, 0], [300, 30]]
    assert [(lk["src_node"], lk["dst_node"], lk["dst_input"]) for lk in payload["links"]] == [(a, b, "a")]
    assert loads_payload(dumps_payload(payload)) == payload


def test_paste_records_remap_ids_into_another_graph(registry) -> None:
    g, a, b, _ = three_nodes(registry)
    payload = selection_to_payload(g, [a, b])
    target = Graph()
    target.add_node("Number", pos=(0, 0))
    target.add_node("Number", pos=(0, 0))
    target.add_link(1, "INT", 2, "value", "INT")
    nodes, links = payload_to_records(target, payload, (1000, 500))
    assert [n["id"] for n in nodes] == [3, 4]
    assert [n["pos"] for n in nodes] == [(1000, 500), (1300, 530)]
    assert links[0]["id"] == 2 and (links[0]["src_node"], links[0]["dst_node"]) == (3, 4)
    assert target.nodes.keys() == {1, 2}  # records only; the graph is unchanged
    for rec in nodes:
        restore_node(target, rec)
    for rec in links:
        restore_link(target, rec)
    doc = graph_to_dict(target)
    pasted = {n["id"]: n for n in doc["nodes"]}
    assert pasted[3]["title"] == "A" and pasted[3]["inputs"] == {"value": 3}
    assert pasted[3]["control_after_generate"] == "fixed"  # node.extra comes along
    assert pasted[4]["mode"] == "bypass"


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"format": "other"}', '{"format": "sdgraph.clipboard", "version": 1, "nodes": {}}'],
)
def test_foreign_clipboard_text_is_refused(text: str) -> None:
    with pytest.raises(ClipboardFormatError):
        loads_payload(text)


def test_fuzzy_search_ranks_names_first(registry) -> None:
    assert fuzzy_score("ksam", "KSampler") is not None
    assert fuzzy_score("xyz", "KSampler") is None
    ranked = rank("lat", [Candidate(s) for s in registry])
    assert ranked[0].spec.type == "Latent"  # "Empty Latent": a whole word match in the name
    assert {c.spec.type for c in ranked} >= {"Latent", "Decode"}  # "Decode Latent" too
    assert rank("", [Candidate(s) for s in registry]) == [Candidate(s) for s in registry]


def _named(type_: str, title: str) -> Candidate:
    return Candidate(node(type_, display_name=title, category="noise")(lambda ctx: ()))


def test_search_tiers_exact_prefix_word_start_substring_tight_fuzzy() -> None:
    assert name_words("KSamplerAdvanced") == ["k", "sampler", "advanced"]
    assert name_words("VAEDecode") == ["vae", "decode"]
    assert name_words("VAE Encode (for Inpainting)") == ["vae", "encode", "for", "inpainting"]
    assert match_tier("ksampler", "KSampler") == EXACT
    assert match_tier("ksam", "KSampler") == PREFIX
    assert match_tier("vaedec", "VAEDecode") == PREFIX
    assert match_tier("vae dec", "VAE Decode") == PREFIX
    assert match_tier("dec lat", "Decode Latent") == WORD_START
    assert match_tier("latent empty", "Empty Latent Image") == WORD_START  # any word order
    assert match_tier("vd", "VAEDecode") == WORD_START  # initials
    assert match_tier("ampl", "KSampler") == SUBSTRING
    assert match_tier("ksmp", "KSampler") == FUZZY  # one skipped letter
    assert match_tier("reroute", "Random Noise") is None
    assert match_tier("reroute", "RandomNoise") is None
    assert match_tier("rne", "Random Noise") is None  # letters scattered over the name
    assert match_tier("kr", "KSampler") is None


def test_search_ranks_by_tier_and_shows_nothing_rather_than_noise() -> None:
    items = [
        _named("RandomNoise", "Random Noise"),
        _named("KSamplerAdvanced", "KSampler (Advanced)"),
        _named("KSampler", "KSampler"),
        _named("Reroute", "Reroute"),
        _named("VAEEncode", "VAE Encode"),
        _named("VAEDecode", "VAE Decode"),
        _named("LatentDecoder", "Decoder of Latents"),
    ]
    types = lambda q: [c.spec.type for c in rank(q, items)]  # noqa: E731
    assert types("reroute") == ["Reroute"]
    assert types("reroute") == types("Reroute")
    assert types("ksam") == ["KSampler", "KSamplerAdvanced"]
    assert types("vae dec") == ["VAEDecode"]
    assert types("dec")[0] == "LatentDecoder"  # title prefix before a later word start
    assert types("dec")[1] == "VAEDecode"
    assert types("qqq") == []
    assert types("noise") == ["RandomNoise"]  # the category is not a name: it does not match


def test_compatible_specs_filters_by_type_rule(registry) -> None:
    from_latent = {c.spec.type: c.socket for c in compatible_specs(registry, "LATENT", from_output=True)}
    assert from_latent == {"Decode": "samples", "Sampler": "latent", "Show": "value"}
    into_image = {c.spec.type: c.socket for c in compatible_specs(registry, "IMAGE", from_output=False)}
    assert into_image == {"Decode": "IMAGE"}
    from_int = {c.spec.type: c.socket for c in compatible_specs(registry, "INT", from_output=True)}
    assert from_int["Add"] == "a" and from_int["Sampler"] == "seed" and "Note" not in from_int


@pytest.mark.parametrize(
    ("mode", "start", "expected"),
    [("fixed", 42, 42), ("increment", 42, 43), ("decrement", 42, 41), ("decrement", 0, 2**32 - 1)],
)
def test_apply_seed_control(registry, mode: str, start: int, expected: int) -> None:
    g = Graph()
    s = g.add_node("Sampler", registry.get("Sampler").default_values() | {"seed": start}).id
    g.nodes[s].extra["control_after_generate"] = mode
    apply_seed_control(g, s, registry)
    assert g.nodes[s].values["seed"] == expected
    assert g.nodes[s].values["steps"] == 20  # only control_after_generate inputs move


def test_randomize_is_the_default_and_stays_in_range(registry) -> None:
    g = Graph()
    s = g.add_node("Sampler", registry.get("Sampler").default_values()).id
    changed = apply_seed_control(g, s, registry, rng=random.Random(1))
    assert set(changed) == {"seed"} and 0 <= changed["seed"] <= 2**32 - 1
    assert changed["seed"] != 42


def test_seed_fed_by_a_wire_is_left_alone(registry) -> None:
    g = Graph()
    n = g.add_node("Number", {"value": 5}).id
    s = g.add_node("Sampler", registry.get("Sampler").default_values()).id
    g.add_link(n, "INT", s, "seed", "INT")
    assert apply_seed_control(g, s, registry) == {}
    assert g.nodes[s].values["seed"] == 42


def test_void_pyside_calls_no_longer_endanger_none() -> None:
    """Regression: PySide6 6.12 on Python 3.11 drops a reference from None per void call (a fatal abort)."""
    import sys

    from PySide6.QtCore import QPointF

    from ui.canvas import make_none_immortal

    make_none_immortal()
    p = QPointF()
    for _ in range(1000):
        p.setX(1.0)
    assert sys.getrefcount(None) > 1 << 30 or sys.version_info >= (3, 12) or not _leaks()


def _leaks() -> bool:
    from ui.canvas.pyside_fix import void_calls_leak_none

    return void_calls_leak_none()


def test_editor_rect_grows_inside_its_node_and_never_past_it() -> None:
    from PySide6.QtCore import QRect, QSize

    from ui.canvas.editors import fit_rect

    node = QRect(100, 100, 200, 150)
    minimum = QSize(280, 150)
    assert fit_rect(QRect(110, 140, 40, 20), QSize(80, 22), node) == QRect(110, 140, 80, 22)  # room: grows
    # too tall and wide for the node: moved up and left inside it, then cut at its edges
    assert fit_rect(QRect(110, 180, 180, 60), minimum, node) == QRect(100, 100, 200, 150)
    assert fit_rect(QRect(110, 200, 180, 40), QSize(180, 80), node) == QRect(110, 170, 180, 80)
    assert fit_rect(QRect(110, 140, 40, 20), minimum, None) == QRect(110, 140, 280, 150)
