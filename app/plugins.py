"""The registry the program runs with: the built-in nodes plus every node pack (see `nodes.plugins`).

`nodes.builtin_registry()` stays the built-in types only, so tests and tools get the same nodes on any
machine; the entry points here (the CLI, the window, opening ComfyUI files) use `app_registry()`.
Packs are loaded once per process and user data folder, so each broken pack is reported once.
`SDGRAPH_NO_PLUGINS=1` starts without any pack, for when one misbehaves in a way loading cannot catch.
"""

from __future__ import annotations

import os
from pathlib import Path

from graph_engine import NodeRegistry
from nodes.plugins import PluginReport, load_plugins

_loaded: dict[str, tuple[NodeRegistry, PluginReport]] = {}


def custom_nodes_dir() -> Path:
    """`custom_nodes/` in the user data folder: where folder packs go."""
    from app.settings import home_dir

    return home_dir() / "custom_nodes"


def plugins_disabled() -> bool:
    return os.environ.get("SDGRAPH_NO_PLUGINS", "").strip().lower() in ("1", "true", "yes", "on")


def load_app_registry() -> tuple[NodeRegistry, PluginReport]:
    """The built-in nodes plus the packs, and what loading them reported (the same objects each call)."""
    from nodes import builtin_registry

    folder = custom_nodes_dir()
    key = f"{folder}|{plugins_disabled()}"
    if key not in _loaded:
        registry = builtin_registry().copy()
        report = PluginReport() if plugins_disabled() else load_plugins(registry, folder)
        _loaded[key] = (registry, report)
    return _loaded[key]


def app_registry() -> NodeRegistry:
    return load_app_registry()[0]


def forget_loaded() -> None:
    """Load again on the next call (a test that installs a pack after the registry was built)."""
    _loaded.clear()
