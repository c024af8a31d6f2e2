"""sdgraph's node types.

Each module in this package declares nodes with `graph_engine.node` and lists them in `NODES`.
Declaring a node must stay cheap: modules here never import torch at import time (the window and
`sdgraph --help` must not wait for it); the torch work lives in `nodes/diffusion/` and is imported inside
`execute`.
"""

from __future__ import annotations

import importlib
import os
from functools import cache

from graph_engine import NodeRegistry

# Modules that declare built-in nodes, in menu order.
NODE_MODULES = (
    "nodes.note",
    "nodes.primitive",
    "nodes.reroute",
    "nodes.loaders",
    "nodes.conditioning",
    "nodes.conditioning_tools",
    "nodes.text_encoders",
    "nodes.latent",
    "nodes.latent_tools",
    "nodes.sampling",
    "nodes.controlnet",
    "nodes.model_sampling",
    "nodes.image",
    "nodes.image_tools",
    "nodes.upscale_model",
    "nodes.mask",
    "nodes.noise_lab",
    "nodes.sweep",
)


@cache
def builtin_registry() -> NodeRegistry:
    """Every built-in node type, plus modules named in `SDGRAPH_NODE_MODULES` (comma-separated), which
    is how extra node packs (and the tests' toy nodes) reach the runner and the window."""
    from nodes.mask_preview import with_mask_previews

    registry = NodeRegistry()
    extra = [m.strip() for m in os.environ.get("SDGRAPH_NODE_MODULES", "").split(",") if m.strip()]
    for name in (*NODE_MODULES, *extra):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name and name in NODE_MODULES:  # not written yet in this build
                continue
            raise
        for spec in module.NODES:
            registry.register(with_mask_previews(spec))  # MASK outputs shown in the editor
    return registry
