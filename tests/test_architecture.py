"""The layering rules hold: graph_engine imports neither Qt nor torch, ui never imports torch,
and the code is ruff-clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is not installed in this environment"
    return found


def test_import_contracts():
    proc = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_graph_engine_imports_without_torch_or_qt():
    code = (
        "import sys, graph_engine, graph_engine.serialization, graph_engine.executor, app.cli, nodes;"
        "nodes.builtin_registry();"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'PySide6', 'diffusers', 'transformers'});"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_clean():
    proc = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_graph_engine_is_mypy_strict_clean():
    proc = subprocess.run([_tool("mypy"), "graph_engine"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
