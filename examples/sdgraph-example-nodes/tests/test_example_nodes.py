"""The example pack's own tests: its nodes compute what they say, and it declares itself to sdgraph."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import sdgraph_example_nodes as pack

from graph_engine import Executor, Graph, NodeRegistry, NodeSpec, make_plan

torch = pytest.importorskip("torch")


def test_nodes_is_a_list_of_node_declarations() -> None:
    assert [spec.type for spec in pack.NODES] == ["ExampleImageGrayscale", "ExampleTextRepeat"]
    assert all(isinstance(spec, NodeSpec) for spec in pack.NODES)


def test_grayscale_is_bt601_luma_in_every_channel() -> None:
    image = torch.tensor([[[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0], [0.2, 0.4, 0.6]]]])  # 1×2×2×3
    (gray,) = pack.image_grayscale.execute(None, image=image)
    assert gray.shape == image.shape
    expected = torch.tensor([[0.299, 0.587], [0.114, 0.2 * 0.299 + 0.4 * 0.587 + 0.6 * 0.114]])
    for channel in range(3):
        torch.testing.assert_close(gray[0, :, :, channel], expected)


def test_text_repeat_runs_in_sdgraphs_executor(tmp_path: Path) -> None:
    registry = NodeRegistry(pack.NODES)
    graph = Graph()
    nid = graph.add_node("ExampleTextRepeat", {"text": "cat", "times": 3, "separator": " "}).id
    result = Executor(registry, output_dir=tmp_path).execute(make_plan(graph, registry, targets=[nid]))
    assert result.status == "done", result.error
    assert result.outputs[nid] == ("cat cat cat",)


def test_pyproject_declares_the_sdgraph_entry_point() -> None:
    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["sdgraph.nodes"] == {"example": "sdgraph_example_nodes"}
