"""MASK outputs shown in the editor: a node that makes a mask reports it as grey pictures.

An IMAGE reaches the editor as files an output node wrote (Preview/Save Image). A mask has no output node
of its own, so every node with a MASK output reports its first mask, as 8-bit grey arrays ``[H, W]``
(0 → black, 1 → white; a batch gives up to `MAX_PREVIEWS` pictures), under ``ui["mask_previews"]``. The
editor draws them in the node and in the preview panel (``ui.mask_previews``); the headless runner
ignores them. The conversion from torch happens here, on the run's thread, because the UI never imports
torch.

Nodes opt out by showing a picture already: Load Image (an ``image_file`` input shows the file) would
otherwise grow a black square for every opaque picture. The wrapper is applied where the built-in
registry is assembled (`nodes.builtin_registry`), so node modules keep returning plain tuples and tests
that call a node's ``execute`` directly see what they always saw.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from graph_engine import ExecutionContext, NodeOutput
from graph_engine.node_spec import NodeSpec

PREVIEW_KEY = "mask_previews"
MAX_PREVIEWS = 4


def mask_preview_arrays(mask: Any) -> list[Any]:
    """uint8 grey pictures of a MASK ``[B, H, W]`` (or ``[H, W]``), one per batch item, at most `MAX_PREVIEWS`."""
    import numpy as np

    array = mask.detach().float().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask, np.float32)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        return []
    grey = (np.clip(array[:MAX_PREVIEWS], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return [np.ascontiguousarray(item) for item in grey]


def previews_masks(spec: NodeSpec) -> bool:
    """Whether the editor should show this node's MASK output (see the module docstring)."""
    if spec.virtual or not any(o.type == "MASK" for o in spec.outputs):
        return False
    return not any(i.display == "image_file" for i in spec.inputs)


def with_mask_previews(spec: NodeSpec) -> NodeSpec:
    """The same node type, also reporting its first MASK output under ``ui["mask_previews"]``."""
    if not previews_masks(spec):
        return spec
    index = next(i for i, o in enumerate(spec.outputs) if o.type == "MASK")
    inner = spec.execute
    count = len(spec.outputs)

    def execute(ctx: ExecutionContext, **kwargs: Any) -> NodeOutput:
        out = inner(ctx, **kwargs)
        ui: dict[str, Any] = {}
        if isinstance(out, NodeOutput):
            ui = dict(out.ui)
            out = out.values
        if not isinstance(out, tuple):
            out = (out,) if count == 1 else tuple(out)
        if len(out) == count:  # a wrong count is the executor's to report, naming the node
            ui[PREVIEW_KEY] = mask_preview_arrays(out[index])
        return NodeOutput(out, ui)

    execute.__doc__ = inner.__doc__
    execute.__wrapped__ = inner  # type: ignore[attr-defined]
    return replace(spec, execute=execute)
