"""sdgraph's node types.

Each module in this package declares nodes with `graph_engine.node` and lists them in `NODES`.
Declaring a node must stay cheap: modules here never import torch at import time (the window and
`sdgraph --help` must not wait for it); the torch work lives in `nodes/sd/` and is imported inside
`execute`.
"""

from __future__ import annotations

import importlib
from functools import cache

from graph_engine import NodeRegistry

# Modules that declare built-in nodes, in menu order.
NODE_MODULES = (
    "nodes.note",
    "nodes.loaders",
    "nodes.conditioning",
    "nodes.latent",
    "nodes.sampling",
    "nodes.image",
)


@cache
def builtin_registry() -> NodeRegistry:
    """Every built-in node type. Cached: the registry is immutable once built."""
    registry = NodeRegistry()
    for name in NODE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not written yet in this build
                continue
            raise
        for spec in module.NODES:
            registry.register(spec)
    return registry
