"""Third-party node packs: installed packages and the `custom_nodes/` folder.

A pack exposes `NODES`, a list of node types declared with the same `graph_engine.node` decorator the
built-in nodes use (or a callable returning that list). It reaches sdgraph in one of two ways:

- an installed package declaring an entry point in the group `sdgraph.nodes`, whose value is a module
  with `NODES`, or `module:attribute` naming the list or the callable;
- a subfolder of `<user data folder>/custom_nodes/` with an `__init__.py`, or a single `.py` file there.

`load_plugins` adds them to a registry. It never raises: a pack that fails to import (a syntax error, an
exception at import, a node declaration error) or that declares something other than nodes is reported
in one line and skipped, so one broken pack never takes the program down. A type name already taken
(by a built-in node, or an earlier pack) keeps its first owner; the pack's node is reported as skipped.

This module lives in `nodes/`, not `graph_engine/`: a pack may import torch at its top, and the engine
must stay free of it. The app decides where the folder is (`app.plugins`), so this module never
reads settings.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graph_engine import NodeRegistry, NodeSpec

ENTRY_POINT_GROUP = "sdgraph.nodes"
# Folder packs are imported as submodules of this synthetic package, so a pack named like a real module
# ("json", "utils") never shadows it, and a pack's relative imports (`from . import helpers`) work.
FOLDER_PACKAGE = "sdgraph_custom_nodes"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginPack:
    """One pack that loaded: where it came from and the node types it added."""

    name: str  # the distribution name, or the folder / file name
    source: str  # "package <name>" or "folder <path>": what `sdgraph nodes` and the library show
    types: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # types it declared that were already taken


@dataclass
class PluginReport:
    """What loading found: the packs that loaded and one line per problem, meant for a person."""

    packs: list[PluginPack] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _one_line(exc: BaseException) -> str:
    """An exception as a person reads it in a log line: its kind and message, never a traceback."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _node_list(value: Any, where: str) -> list[Any]:
    """`NODES` as a list: a list or tuple as it is, a callable called (a pack may build its nodes)."""
    if isinstance(value, types.ModuleType):
        if not hasattr(value, "NODES"):
            raise LookupError(f"{where} has no NODES list")
        value = value.NODES
    if callable(value) and not isinstance(value, NodeSpec):
        value = value()
    if isinstance(value, NodeSpec):
        return [value]
    if not isinstance(value, list | tuple):
        raise TypeError(f"NODES must be a list of nodes, got {type(value).__name__}")
    return list(value)


def _register_pack(
    registry: NodeRegistry, report: PluginReport, name: str, source: str, load: Callable[[], Any]
) -> None:
    try:
        specs = _node_list(load(), source)
    except (Exception, SystemExit) as exc:  # a pack calling sys.exit() at import must not end the app
        log.debug("plugin %s failed to load", source, exc_info=True)
        report.problems.append(f"plugin {source} failed to load: {_one_line(exc)}")
        return
    added: list[str] = []
    skipped: list[str] = []
    for index, spec in enumerate(specs):
        if not isinstance(spec, NodeSpec):
            got = type(spec).__name__
            report.problems.append(f"plugin {source}: NODES[{index}] is not a node made with @node ({got}); skipped")
            continue
        if spec.type in registry:
            owner = registry.source(spec.type)
            taken = f"by {owner}" if owner else "by a built-in node"
            report.problems.append(f"plugin {source}: node type {spec.type!r} is already taken {taken}; skipped")
            skipped.append(spec.type)
            continue
        registry.register(spec, source=source)
        added.append(spec.type)
    report.packs.append(PluginPack(name, source, tuple(added), tuple(skipped)))


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    """The group's entry points, once each (a package on sys.path twice is still one package)."""
    seen: set[tuple[str, str, str]] = set()
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ""
        key = (dist, ep.name, ep.value)
        if key not in seen:
            seen.add(key)
            found.append(ep)
    return found


def _folder_package(folder: Path) -> None:
    """The synthetic parent package of folder packs, pointed at this folder."""
    parent = sys.modules.get(FOLDER_PACKAGE)
    if parent is None:
        parent = types.ModuleType(FOLDER_PACKAGE, "node packs from the custom_nodes folder")
        sys.modules[FOLDER_PACKAGE] = parent
    parent.__path__ = [str(folder)]


def _import_path(module_name: str, path: Path, package_dir: Path | None) -> types.ModuleType:
    """Import one file (or a package's __init__.py) under `module_name`; a failed import leaves nothing behind."""
    spec = importlib.util.spec_from_file_location(
        module_name, path, submodule_search_locations=[str(package_dir)] if package_dir else None
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _folder_packs(folder: Path, report: PluginReport) -> Iterable[tuple[str, Path, Path | None]]:
    """(name, file to import, package folder or None) for each pack in the folder, by name."""
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith((".", "_")):  # hidden files, __pycache__
            continue
        if entry.is_dir():
            init = entry / "__init__.py"
            if init.is_file():
                yield entry.name, init, entry
            else:
                report.problems.append(f"plugin folder {entry}: not a node pack (it has no __init__.py); skipped")
        elif entry.suffix == ".py" and entry.is_file():
            yield entry.stem, entry, None


def load_plugins(
    registry: NodeRegistry,
    custom_nodes: Path | None = None,
    *,
    entry_points: bool = True,
) -> PluginReport:
    """Add every pack's nodes to `registry` (installed packages first, then the folder, each by name)
    and report what happened. Never raises for a pack's fault."""
    report = PluginReport()
    if entry_points:
        try:
            found = _entry_points()
        except Exception as exc:  # broken metadata somewhere on sys.path
            report.problems.append(f"plugins: installed packages could not be listed: {_one_line(exc)}")
            found = []
        for ep in sorted(found, key=lambda e: (e.dist.name if e.dist else "", e.name)):
            dist = ep.dist.name if ep.dist is not None else ep.name
            _register_pack(registry, report, dist, f"package {dist}", ep.load)
    if custom_nodes is not None and custom_nodes.is_dir():
        _folder_package(custom_nodes)
        for name, path, package_dir in _folder_packs(custom_nodes, report):
            module_name = f"{FOLDER_PACKAGE}.{name}"

            def load(module_name: str = module_name, path: Path = path, package_dir: Path | None = package_dir) -> Any:
                return _import_path(module_name, path, package_dir)

            _register_pack(registry, report, name, f"folder {package_dir or path}", load)
    return report
