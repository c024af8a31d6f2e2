"""`pip install .` gives a working sdgraph: the wheel carries its configs, vocabularies and templates.

The wheel is built from a copy of the checkout (so no `build/` or `*.egg-info` lands in it), installed into
a fresh venv, and everything after that runs from a folder outside the checkout with that venv's
interpreter: `sdgraph --help`, `sdgraph nodes --json`, reading a shipped template, the CLIP vocabulary, a
tokenizer and a model config through `nodes.shipped`, and the demo (`scripts/demo.py --python`) end to end.
Nothing is downloaded: the wheel goes in with `--no-deps --no-index`, and the fresh venv sees this
interpreter's site-packages (torch, diffusers, Qt) through a `.pth` file, after its own, so sdgraph itself
can only come from the wheel.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    # Offline means no build isolation: the build backend must be in this interpreter (the dev extra has it).
    pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="setuptools is not installed here"),
]

# Top-level entries of the checkout that are not part of what `pip install .` builds from.
NOT_SOURCE = {"tests", "docs", "bench", "build", "dist", "output"}


def _ignore(folder: str, names: list[str]) -> set[str]:
    """What to leave out of the copy: the checkout's own state at the top, caches everywhere."""
    skipped = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
    if Path(folder).resolve() == ROOT:
        skipped |= {n for n in names if n.startswith(".") or n in NOT_SOURCE}
    return skipped


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """A fresh venv with the wheel in it: (its python, an environment for it, a folder outside the checkout)."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=_ignore)
    dist = base / "dist"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"SDGRAPH_HOME": str(base / "home"), "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1"}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist)], base, env)
    (wheel,) = dist.glob("sdgraph-*.whl")

    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], base, env)
    python = venv / "bin" / "python"
    target = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base, env).stdout.strip()
    )
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (target / "sdgraph_test_deps.pth").write_text("".join(f"{p}\n" for p in deps), encoding="utf-8")
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], base, env)
    outside = base / "elsewhere"
    outside.mkdir()
    return python, env, outside


def test_the_wheel_ships_the_data_and_the_installed_copy_is_what_runs(installed):
    python, env, outside = installed
    probe = """
import gzip, json, sys
import app, nodes
from app.documents import open_document
from nodes.diffusion.text.vocab import load_vocab
from nodes.diffusion.text.llm_vocab import T5_DIR, QWEN3_DIR
from nodes.diffusion.checkpoint.detect import CONFIG_ROOT
from nodes.shipped import resources_dir, workflows_dir

graph = open_document(workflows_dir() / "txt2img.json").graph
encoder, merges = load_vocab()
print(json.dumps({
    "app": app.__file__, "nodes": nodes.__file__, "resources": str(resources_dir()), "workflows": str(workflows_dir()),
    "templates": sorted(p.name for p in workflows_dir().glob("*.json")),
    "types": sorted(n.type for n in graph.nodes.values()),
    "vocab": len(encoder), "merges": len(merges),
    "t5": sorted(p.name for p in T5_DIR.iterdir()), "qwen3": (QWEN3_DIR / "tokenizer_config.json").is_file(),
    "sd1_unet": json.loads((CONFIG_ROOT / "sd1" / "unet" / "config.json").read_text())["_class_name"],
}))
"""
    found = json.loads(_run([str(python), "-c", probe], outside, env).stdout)
    site = str(python.parents[1])
    for key in ("app", "nodes", "resources", "workflows"):
        assert found[key].startswith(site), (key, found[key])  # the wheel's copy, not the checkout's
        assert not found[key].startswith(str(ROOT)), (key, found[key])
    assert found["templates"] == sorted(p.name for p in (ROOT / "workflows").glob("*.json"))
    assert {"CheckpointLoaderSimple", "KSampler", "SaveImage"} <= set(found["types"])
    assert found["vocab"] == 49408 and found["merges"] == 48894
    assert "tokenizer.json.gz" in found["t5"] and found["qwen3"]
    assert found["sd1_unet"] == "UNet2DConditionModel"


def test_the_installed_command_line_works_outside_the_checkout(installed):
    python, env, outside = installed
    sdgraph = str(python.parent / "sdgraph")
    assert "run" in _run([sdgraph, "--help"], outside, env).stdout
    listed = json.loads(_run([sdgraph, "nodes", "--json"], outside, env).stdout)
    names = {entry["type"] for entry in listed}
    assert {"KSampler", "CheckpointLoaderSimple", "VAEDecode"} <= names
    # A template by name: the installed sdxl.json is read (its checkpoint is named), no path needed.
    by_name = subprocess.run(
        [sdgraph, "run", "sdxl", "--dry-run"], cwd=outside, env=env, capture_output=True, text=True, timeout=120
    )
    assert by_name.returncode == 2 and "sd_xl_base_1.0.safetensors" in by_name.stderr, by_name.stderr


def test_the_demo_runs_on_the_installed_wheel(installed, tmp_path):
    python, env, _ = installed
    home = tmp_path / "demo-home"
    result = _run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--python", str(python), "--home", str(home)],
        tmp_path,
        env,
        timeout=300,
    )
    (written,) = (home / "output").glob("txt2img_*.png")
    assert result.stdout.strip() == str(written)
    assert str(python.parents[1]) in result.stderr  # the template came from the installed package
