"""Every shipped template opens with no node drawn over another.

A template is the first graph a new user sees; a node hidden under its neighbour hides its sockets and
widgets (found on the real window: the upscale hires-fix template put Upscale Image under Second pass).
What is compared is what the canvas draws — each node's body, title bar to bottom edge — after the
widgets have sized the nodes, not the positions in the file.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from nodes.shipped import workflows_dir
from tests.ui.app.test_document_formats import make_window

TEMPLATES = sorted(p.name for p in workflows_dir().glob("*.json"))


@pytest.mark.parametrize("name", TEMPLATES)
def test_no_node_covers_another_in_a_template(name: str, qtbot: Any, tmp_path: Path, sdgraph_home: Path) -> None:
    window = make_window(qtbot, sdgraph_home, tmp_path)
    assert window.open_template(workflows_dir() / name)
    view = window.view

    def label(nid: int) -> str:
        node = window.graph.nodes[nid]
        r = rects[nid]
        return f"{nid} {node.title or node.type} at ({r.x():.0f}, {r.y():.0f}) size {r.width():.0f}×{r.height():.0f}"

    rects = {nid: view.node_item(nid).body_scene_rect() for nid in window.graph.nodes}
    clashes = [
        (label(a), label(b)) for a, b in itertools.combinations(sorted(rects), 2) if rects[a].intersects(rects[b])
    ]
    assert clashes == []
