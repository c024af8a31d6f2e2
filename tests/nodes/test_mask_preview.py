"""Every built-in node with a MASK output reports grey pictures of its mask for the editor, except Load Image
(its file is shown already); node modules' own specs stay unwrapped."""

from __future__ import annotations

import numpy as np
import torch

from graph_engine import ExecutionContext, Executor, Graph, NodeOutput, ResultCache, make_plan
from nodes import builtin_registry
from nodes.mask import solid_mask
from nodes.mask_preview import MAX_PREVIEWS, PREVIEW_KEY, mask_preview_arrays, previews_masks

CTX = ExecutionContext(node_id=1, title="test")


def test_which_nodes_preview_their_masks() -> None:
    registry = builtin_registry()
    previewing = {spec.type for spec in registry if previews_masks(spec)}
    assert {"SolidMask", "LoadImageMask", "ImageToMask", "GrowMask", "ImagePadForOutpaint"} <= previewing
    assert "LoadImage" not in previewing and "MaskToImage" not in previewing
    assert solid_mask.execute(CTX, 0.5, 4, 3)[0].shape == (1, 3, 4)  # the module's spec: a plain tuple


def test_the_grey_pictures_are_the_mask() -> None:
    mask = torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]).repeat(MAX_PREVIEWS + 2, 1, 1)
    mask[1] = 2.0  # out of range: clamped
    pictures = mask_preview_arrays(mask)
    assert len(pictures) == MAX_PREVIEWS
    assert pictures[0].dtype == np.uint8 and pictures[0].tolist() == [[0, 64], [128, 255]]
    assert pictures[1].tolist() == [[255, 255], [255, 255]]


def test_a_graph_run_reports_the_mask_of_a_two_output_node() -> None:
    registry = builtin_registry()
    g = Graph()
    solid = g.add_node("SolidMask", {"value": 1.0, "width": 8, "height": 8}).id
    to_image = g.add_node("MaskToImage").id
    pad = g.add_node("ImagePadForOutpaint", {"left": 4, "top": 0, "right": 0, "bottom": 0, "feathering": 0}).id
    g.add_link(solid, "MASK", to_image, "mask", "MASK")
    g.add_link(to_image, "IMAGE", pad, "image", "IMAGE")
    result = Executor(registry, cache=ResultCache()).execute(make_plan(g, registry, [pad]))
    assert result.status == "done", result.error
    (padded_mask,) = result.ui[pad][PREVIEW_KEY]
    assert padded_mask.shape == (8, 12)
    assert (padded_mask[:, :4] == 255).all() and (padded_mask[:, 4:] == 0).all()  # the new margin is masked
    assert PREVIEW_KEY not in result.ui.get(to_image, {})
    assert isinstance(registry.get("SolidMask").execute(CTX, value=0.5, width=2, height=2), NodeOutput)
