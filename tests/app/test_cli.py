"""The headless runner, end to end in subprocesses: exit codes, stdout/stderr, no torch for --help."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graph_engine import Graph
from graph_engine.serialization import save

ROOT = Path(__file__).parents[2]


def sdgraph(*args: str, home: Path, **kw) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SDGRAPH_HOME": str(home), "SDGRAPH_NODE_MODULES": "tests.graph_engine.toy_nodes"}
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, **kw
    )


def workflow(tmp_path: Path, *, value: int = 2, fail: bool = False, sleepy: bool = False) -> Path:
    g = Graph()
    n = g.add_node("Number", {"value": value}, title="Start").id
    mid = n
    if fail:
        mid = g.add_node("Fail", {"limit": 100}, title="Divider").id
        g.add_link(n, "INT", mid, "x", "INT")
    if sleepy:
        mid = g.add_node("Sleepy", {"steps": 400}).id
        g.add_link(n, "INT", mid, "x", "INT")
    w = g.add_node("WriteText", {"name": "result"}).id
    g.add_link(mid, "INT", w, "value", "INT")
    path = tmp_path / "w.json"
    save(g, path)
    return path


def test_help_does_not_import_torch(tmp_path):
    env = {**os.environ, "SDGRAPH_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "app", "--help"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "usage: sdgraph" in proc.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert "torch" not in imported and "PySide6" not in imported and "diffusers" not in imported


def test_run_writes_files_and_prints_their_paths(tmp_path):
    out = tmp_path / "out"
    proc = sdgraph("run", str(workflow(tmp_path)), "--output-dir", str(out), home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out / "result.txt")
    assert (out / "result.txt").read_text() == "2"
    assert "Traceback" not in proc.stderr


def test_set_overrides_by_id_and_title(tmp_path):
    out = tmp_path / "out"
    proc = sdgraph("run", str(workflow(tmp_path)), "--set", "Start.value=41", "--output-dir", str(out), home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (out / "result.txt").read_text() == "41"
    proc = sdgraph("run", str(workflow(tmp_path)), "--set", "1.value=7", "--output-dir", str(out), home=tmp_path)
    assert (out / "result.txt").read_text() == "7"


def test_invalid_arguments_and_workflow_exit_2_listing_everything(tmp_path):
    path = workflow(tmp_path)
    proc = sdgraph("run", str(path), "--set", "Nope.value=1", "--set", "Start.colour=3", "--set", "junk", home=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "sdgraph: --set: no node with id or title 'Nope'",
        "sdgraph: --set 'Start.colour=3': node 1 (Start) has no value input 'colour' (value)",
        "sdgraph: --set 'junk': expected NODE.INPUT=VALUE",
    ]
    proc = sdgraph("run", str(path), "--set", "Start.value=5000", home=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "sdgraph: node 1 (Start), input 'value': 5000 is above the maximum 1000"
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    proc = sdgraph("validate", str(bad), home=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("sdgraph: bad.json: not valid JSON")
    assert "Traceback" not in proc.stderr
    proc = sdgraph("run", str(tmp_path / "missing.json"), home=tmp_path)
    assert proc.returncode == 2 and "no such file" in proc.stderr
    proc = sdgraph("run", home=tmp_path)
    assert proc.returncode == 2  # argparse's own usage error


def test_failing_node_exits_1_and_is_named(tmp_path):
    proc = sdgraph("run", str(workflow(tmp_path, fail=True)), "--output-dir", str(tmp_path), home=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "sdgraph: node 2 (Divider): ZeroDivisionError: division by zero"
    assert "Traceback" not in proc.stderr


def test_dry_run_prints_plan_and_runs_nothing(tmp_path):
    out = tmp_path / "out"
    proc = sdgraph("run", str(workflow(tmp_path)), "--dry-run", "--output-dir", str(out), home=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == ["1\tNumber\tStart", "2\tWriteText\tWriteText"]
    assert not out.exists()


def test_validate_ok(tmp_path):
    proc = sdgraph("validate", str(workflow(tmp_path)), home=tmp_path)
    assert proc.returncode == 0 and "valid (2 nodes)" in proc.stdout


def test_nodes_json_lists_inputs(tmp_path):
    proc = sdgraph("nodes", "--json", home=tmp_path)
    assert proc.returncode == 0
    specs = {s["type"]: s for s in json.loads(proc.stdout)}
    assert specs["Number"]["inputs"] == [
        {"id": "value", "type": "INT", "optional": False, "default": 1, "min": -1000, "max": 1000, "step": 1}
    ]
    assert specs["WriteText"]["output_node"] is True
    text = sdgraph("nodes", home=tmp_path).stdout
    assert "Number  (Number, math)" in text and "in   value: INT = 1 [-1000, 1000]" in text


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_interrupt_exits_130(tmp_path):
    env = {**os.environ, "SDGRAPH_HOME": str(tmp_path), "SDGRAPH_NODE_MODULES": "tests.graph_engine.toy_nodes"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "run", str(workflow(tmp_path, sleepy=True)), "--output-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    # Interrupt once the sleepy node is running (the line before it says its predecessor is done): a fixed
    # sleep raced the start-up on a loaded machine.
    while "Start: done" not in (line := proc.stderr.readline()):
        assert line, "the run ended before it could be interrupted"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not (tmp_path / "result.txt").exists()


def test_settings_model_roots_are_used(tmp_path):
    """A model root named in settings.json is where `sdgraph validate` looks for checkpoints."""
    doc = json.loads((ROOT / "workflows" / "txt2img.json").read_text())
    for node in doc["nodes"]:
        if node["type"] == "CheckpointLoaderSimple":
            node["inputs"]["ckpt_name"] = "mine.safetensors"
    path = tmp_path / "w.json"
    path.write_text(json.dumps(doc))
    env = {**os.environ, "SDGRAPH_HOME": str(tmp_path / "home")}
    run = lambda: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "app", "validate", str(path)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    proc = run()
    assert proc.returncode == 2 and "'mine.safetensors' is not available" in proc.stderr
    root = tmp_path / "elsewhere"
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "mine.safetensors").write_bytes(b"")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "settings.json").write_text(json.dumps({"extra_model_roots": [str(root)]}))
    proc = run()
    assert proc.returncode == 0, proc.stderr


def test_a_bare_name_opens_the_shipped_template_but_a_file_wins(tmp_path, monkeypatch):
    from app.cli import UsageError, resolve_workflow
    from nodes.shipped import workflows_dir

    monkeypatch.chdir(tmp_path)
    assert resolve_workflow("txt2img") == str(workflows_dir() / "txt2img.json")
    assert resolve_workflow("sdxl.json") == str(workflows_dir() / "sdxl.json")
    (tmp_path / "txt2img").write_text("{}")
    assert resolve_workflow("txt2img") == "txt2img"  # a file in the current folder is never shadowed
    assert resolve_workflow("sub/missing.json") == "sub/missing.json"  # a path is a path: its error names it
    with pytest.raises(UsageError) as err:
        resolve_workflow("txt2im")
    (message,) = err.value.messages
    assert "no template of that name" in message and "txt2img" in message and "flux_dev" in message


def test_ctrl_c_while_reading_the_workflow_exits_130_without_a_traceback(tmp_path, monkeypatch, capsys):
    """Ctrl+C before `run` installs its handler (during imports or while reading) is still one line."""
    import app.cli as cli

    def interrupted(path: str) -> str:
        raise KeyboardInterrupt

    monkeypatch.setenv("SDGRAPH_HOME", str(tmp_path))
    monkeypatch.setattr(cli, "resolve_workflow", interrupted)
    assert cli.main(["validate", str(workflow(tmp_path))]) == 130
    assert capsys.readouterr().err == "sdgraph: interrupted\n"
