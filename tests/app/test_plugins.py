"""Node packs as a user gets them: the example pack installed with pip, or copied into custom_nodes/.

The CLI tests run `sdgraph` in subprocesses, as a user does, so import-time failures and what reaches
stderr are exactly what a person sees. The loader tests build registries in-process to check each
rule (source names, relative imports, clashes, bad NODES) without a subprocess each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app import plugins as app_plugins
from graph_engine import Graph, NodeRegistry
from graph_engine.serialization import save
from nodes import builtin_registry
from nodes.plugins import load_plugins

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "sdgraph-example-nodes"
EXAMPLE_TYPES = {"ExampleImageGrayscale", "ExampleTextRepeat"}
BROKEN = {
    "raises.py": 'raise RuntimeError("the pack needs a GPU it does not have")\n',
    "syntax.py": "def broken(:\n",
    "bad_decl.py": textwrap.dedent(
        """\
        from graph_engine import Output, node

        @node("BadDecl", outputs=[Output("NOT_A_TYPE")])
        def bad(ctx):
            return (1,)

        NODES = [bad]
        """
    ),
    "clash.py": textwrap.dedent(
        """\
        from graph_engine import Int, Output, node

        @node("KSampler", inputs=[Int("x", 1)], outputs=[Output("INT")])
        def fake_ksampler(ctx, x):
            return (x,)

        @node("ClashPackOwn", inputs=[Int("x", 1)], outputs=[Output("INT")])
        def own(ctx, x):
            return (x,)

        NODES = [fake_ksampler, own]
        """
    ),
}


def sdgraph(*args: str, home: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SDGRAPH_HOME": str(home), "SDGRAPH_NODE_MODULES": "tests.graph_engine.toy_nodes"}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


# Offline and into a folder of its own: the example needs nothing but setuptools, already here.
PIP_INSTALL = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example pack pip-installed (built as a wheel, entry point and all) into a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build") / "src"
    shutil.copytree(EXAMPLE, build, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    proc = subprocess.run(
        [*PIP_INSTALL, "--target", str(target), str(build)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(target.glob("sdgraph_example_nodes-*.dist-info/entry_points.txt"))
    return target


def copy_example_into(home: Path) -> Path:
    pack = home / "custom_nodes" / "sdgraph_example_nodes"
    shutil.copytree(EXAMPLE / "sdgraph_example_nodes", pack, ignore=shutil.ignore_patterns("__pycache__"))
    return pack


def write_broken_packs(home: Path) -> None:
    folder = home / "custom_nodes"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in BROKEN.items():
        (folder / name).write_text(text)


def listed(proc: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    assert proc.returncode == 0, proc.stderr
    return {d["type"]: d for d in json.loads(proc.stdout)}


# ---- sdgraph nodes ------------------------------------------------------------------------------


def test_an_installed_package_is_listed_with_its_package_name(installed_example: Path, tmp_path: Path) -> None:
    nodes = listed(sdgraph("nodes", "--json", home=tmp_path, pythonpath=installed_example))
    for node_type in EXAMPLE_TYPES:
        assert nodes[node_type]["source"] == "package sdgraph-example-nodes"
    assert nodes["ExampleImageGrayscale"]["category"] == "example/image"
    assert nodes["KSampler"]["source"] == "built-in"


def test_a_custom_nodes_folder_pack_is_listed_with_its_path(tmp_path: Path) -> None:
    pack = copy_example_into(tmp_path)
    proc = sdgraph("nodes", home=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    assert f"ExampleTextRepeat  (Text Repeat, example/text) [plugin: folder {pack}]" in proc.stdout.splitlines()
    nodes = listed(sdgraph("nodes", "--json", home=tmp_path))
    assert {t for t, d in nodes.items() if d["source"] == f"folder {pack}"} == EXAMPLE_TYPES


def test_sdgraph_no_plugins_starts_without_any_pack(tmp_path: Path) -> None:
    copy_example_into(tmp_path)
    write_broken_packs(tmp_path)
    env = {**os.environ, "SDGRAPH_NO_PLUGINS": "1", "SDGRAPH_HOME": str(tmp_path)}
    env.pop("SDGRAPH_NODE_MODULES", None)
    proc = subprocess.run(
        [sys.executable, "-m", "app", "nodes", "--json"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stderr == ""
    nodes = json.loads(proc.stdout)
    assert {d["source"] for d in nodes} == {"built-in"}
    assert not EXAMPLE_TYPES & {d["type"] for d in nodes}


def test_broken_packs_are_each_reported_once_in_one_line_and_the_rest_loads(tmp_path: Path) -> None:
    copy_example_into(tmp_path)
    write_broken_packs(tmp_path)
    proc = sdgraph("nodes", "--json", home=tmp_path)
    nodes = listed(proc)
    assert nodes.keys() >= EXAMPLE_TYPES and "ClashPackOwn" in nodes
    assert nodes["KSampler"]["source"] == "built-in"  # the built-in wins a clash
    assert "BadDecl" not in nodes
    lines = proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr
    folder = tmp_path / "custom_nodes"
    expected = {
        "raises.py": "failed to load: RuntimeError: the pack needs a GPU it does not have",
        "syntax.py": "failed to load: SyntaxError:",
        "bad_decl.py": "failed to load: ValueError: node 'BadDecl': output 'NOT_A_TYPE' has unknown type",
        "clash.py": "node type 'KSampler' is already taken by a built-in node; skipped",
    }
    for name, message in expected.items():
        matching = [line for line in lines if f"plugin folder {folder / name}" in line]
        assert len(matching) == 1, (name, lines)
        assert message in matching[0]
    assert len(lines) == len(expected)


# ---- sdgraph run ----------------------------------------------------------------------------------


def plugin_workflow(home: Path, tmp_path: Path) -> Path:
    """Load Image → Image Grayscale → Save Image, and Text Repeat → (toy) WriteText."""
    from PIL import Image

    (home / "input").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 8), (200, 40, 10)).save(home / "input" / "red.png")
    g = Graph()
    load = g.add_node("LoadImage", {"image": "red.png"}).id
    gray = g.add_node("ExampleImageGrayscale", {}).id
    g.add_link(load, "IMAGE", gray, "image", "IMAGE")
    out = g.add_node("SaveImage", {"filename_prefix": "gray"}).id
    g.add_link(gray, "IMAGE", out, "images", "IMAGE")
    text = g.add_node("ExampleTextRepeat", {"text": "cat", "times": 3, "separator": "-"}).id
    write = g.add_node("WriteText", {"name": "text"}).id
    g.add_link(text, "STRING", write, "value", "ANY")
    path = tmp_path / "plugin.json"
    save(g, path)
    return path


def check_outputs(out: Path) -> None:
    from PIL import Image

    (png,) = out.glob("gray*.png")
    colours = Image.open(png).convert("RGB").getcolors()
    luma = round(0.299 * 200 + 0.587 * 40 + 0.114 * 10)
    assert colours is not None and len(colours) == 1
    r, g, b = colours[0][1]
    assert r == g == b and abs(r - luma) <= 1
    assert (out / "text.txt").read_text() == repr("cat-cat-cat")


@pytest.mark.slow
def test_a_graph_with_plugin_nodes_runs_headless_from_custom_nodes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    copy_example_into(home)
    write_broken_packs(home)  # broken neighbours change nothing but one line each on stderr
    out = tmp_path / "out"
    proc = sdgraph("run", str(plugin_workflow(home, tmp_path)), "--output-dir", str(out), home=home)
    assert proc.returncode == 0, proc.stderr
    assert sum("raises.py failed to load" in line for line in proc.stderr.splitlines()) == 1
    check_outputs(out)


@pytest.mark.slow
def test_a_graph_with_plugin_nodes_runs_headless_from_an_installed_package(
    installed_example: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    out = tmp_path / "out"
    workflow = plugin_workflow(home, tmp_path)
    proc = sdgraph("run", str(workflow), "--output-dir", str(out), home=home, pythonpath=installed_example)
    assert proc.returncode == 0, proc.stderr
    check_outputs(out)
    # Without the pack the same workflow is refused before anything runs, naming the missing type.
    refused = sdgraph("validate", str(workflow), home=home)
    assert refused.returncode == 2 and "ExampleImageGrayscale" in refused.stderr


# ---- the loader, in-process -----------------------------------------------------------------------


def fake_distribution(root: Path, dist: str, module: str, value: str, code: str) -> None:
    """An installed package as pip leaves it: the module, and a dist-info naming the entry point."""
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text(textwrap.dedent(code))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[sdgraph.nodes]\nmain = {value}\n")


def test_an_entry_point_may_name_a_callable_that_returns_the_nodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = """\
        from graph_engine import Int, Output, node

        def get_nodes():
            @node("CallablePackDouble", category="callable pack", inputs=[Int("x", 2)], outputs=[Output("INT")])
            def double(ctx, x):
                return (2 * x,)
            return [double]
        """
    fake_distribution(
        tmp_path, "callable-pack", "sdgraph_test_callable_pack", "sdgraph_test_callable_pack:get_nodes", code
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = builtin_registry().copy()
    report = load_plugins(registry, None)
    assert report.problems == []
    assert registry.source("CallablePackDouble") == "package callable-pack"
    assert registry.get("CallablePackDouble").category == "callable pack"  # type: ignore[union-attr]
    assert "CallablePackDouble" not in builtin_registry()  # the built-in registry stays as it was
    assert [(p.name, p.types) for p in report.packs] == [("callable-pack", ("CallablePackDouble",))]


def test_a_folder_pack_may_import_its_own_modules_and_a_later_pack_cannot_take_its_types(tmp_path: Path) -> None:
    pack = tmp_path / "custom_nodes" / "a_pack"
    pack.mkdir(parents=True)
    (pack / "helpers.py").write_text("FACTOR = 3\n")
    (pack / "__init__.py").write_text(
        textwrap.dedent(
            """\
            from graph_engine import Int, Output, node
            from .helpers import FACTOR

            @node("PackTriple", inputs=[Int("x", 1)], outputs=[Output("INT")])
            def triple(ctx, x):
                return (FACTOR * x,)

            NODES = [triple]
            """
        )
    )
    (tmp_path / "custom_nodes" / "b_pack.py").write_text(
        "from graph_engine import Output, node\n\n"
        '@node("PackTriple", outputs=[Output("INT")])\ndef other(ctx):\n    return (0,)\n\nNODES = other\n'
    )
    (tmp_path / "custom_nodes" / "json.py").write_text("NODES = []\n")  # named like a stdlib module
    registry = NodeRegistry()
    report = load_plugins(registry, tmp_path / "custom_nodes", entry_points=False)
    assert registry.source("PackTriple") == f"folder {pack}"
    assert registry.get("PackTriple").execute(None, x=2) == (6,)  # type: ignore[union-attr]
    assert report.problems == [
        f"plugin folder {tmp_path / 'custom_nodes' / 'b_pack.py'}: node type 'PackTriple' is already taken "
        f"by folder {pack}; skipped"
    ]
    assert json.loads('{"still": "the real json"}') == {"still": "the real json"}


def test_the_app_loads_packs_once_per_user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDGRAPH_HOME", str(tmp_path))
    write_broken_packs(tmp_path)
    app_plugins.forget_loaded()
    try:
        registry, report = app_plugins.load_app_registry()
        assert app_plugins.load_app_registry() == (registry, report)  # loaded once: reported once
        assert "ClashPackOwn" in registry and "ClashPackOwn" not in builtin_registry()
        assert len(report.problems) == len(BROKEN)
    finally:
        app_plugins.forget_loaded()
