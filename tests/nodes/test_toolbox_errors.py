"""Bad input to the toolbox nodes, run as a graph: one clear message naming the node and the input."""

from __future__ import annotations

from pathlib import Path

from graph_engine import Executor, Graph, validate
from nodes import builtin_registry
from nodes.folders import input_dir
from tests.support.graphs import txt2img_graph
from tests.support.model_root import TINY_NAMES, write_test_image


def run(g: Graph, tmp_path: Path):
    assert validate(g, builtin_registry()) == []
    return Executor(builtin_registry(), output_dir=tmp_path / "out").run(g)


def one_line(text: str) -> None:
    assert "Traceback" not in text and "\n" not in text.strip()


def test_mask_of_another_shape_than_the_image(tmp_path, monkeypatch):
    monkeypatch.setenv("SDGRAPH_INPUT_DIR", str(tmp_path / "in"))
    write_test_image(input_dir() / "example.png")
    g = Graph()
    load = g.add_node("LoadImage", {"image": "example.png"}).id
    mask = g.add_node("SolidMask", {"value": 1.0, "width": 64, "height": 32}).id
    comp = g.add_node("ImageCompositeMasked", {"x": 0, "y": 0, "resize_source": False}).id
    save = g.add_node("SaveImage", {"filename_prefix": "x"}).id
    g.add_link(load, "IMAGE", comp, "destination", "IMAGE")
    g.add_link(load, "IMAGE", comp, "source", "IMAGE")
    g.add_link(mask, "MASK", comp, "mask", "MASK")
    g.add_link(comp, "IMAGE", save, "images", "IMAGE")
    result = run(g, tmp_path)
    assert result.status == "failed"
    assert result.error.node_id == comp and result.error.input == "mask"
    text = str(result.error)
    one_line(text)
    assert "64x32" in text and "64x64" in text


def test_crop_outside_the_image(tmp_path, monkeypatch):
    monkeypatch.setenv("SDGRAPH_INPUT_DIR", str(tmp_path / "in"))
    write_test_image(input_dir() / "example.png")
    g = Graph()
    load = g.add_node("LoadImage", {"image": "example.png"}).id
    crop = g.add_node("ImageCrop", {"width": 16, "height": 16, "x": 80, "y": 0}).id
    save = g.add_node("SaveImage", {"filename_prefix": "x"}).id
    g.add_link(load, "IMAGE", crop, "image", "IMAGE")
    g.add_link(crop, "IMAGE", save, "images", "IMAGE")
    result = run(g, tmp_path)
    assert result.status == "failed" and result.error.node_id == crop and result.error.input == "x"
    one_line(str(result.error))


def test_regional_mask_of_another_shape_stops_the_sampler(tiny_models, tmp_path):
    g, ids = txt2img_graph(TINY_NAMES["sd1"], prompt="a cat", steps=2, seed=1)
    g.set_value(ids["empty"], "width", 64)
    g.set_value(ids["empty"], "height", 64)
    mask = g.add_node("SolidMask", {"value": 1.0, "width": 64, "height": 32}).id
    setm = g.add_node("ConditioningSetMask", {"strength": 1.0, "set_cond_area": "default"}).id
    g.add_link(mask, "MASK", setm, "mask", "MASK")
    g.add_link(ids["pos"], "CONDITIONING", setm, "conditioning", "CONDITIONING")
    g.remove_link(g.link_into(ids["ks"], "positive").id)  # the masked prompt replaces the plain one
    g.add_link(setm, "CONDITIONING", ids["ks"], "positive", "CONDITIONING")
    result = run(g, tmp_path)
    assert result.status == "failed" and result.error.node_id == ids["ks"]
    text = str(result.error)
    one_line(text)
    assert "Set Mask" in text and "64x32" in text
