"""Fault injection (issue 14): bad output folders, full disks and SIGKILL lose and corrupt nothing.

Each fault is made real rather than described: a full disk is `ENOSPC` raised by the write of the
file in `atomic_write` (or SQLite's own "disk is full" via `max_page_count`), a kill is SIGKILL sent
to a child process held inside the critical section (between the temp file and the rename, or inside
a history transaction). Every test then checks the old file byte for byte, that no partial file is
visible, and that the program (or the next one) carries on.
"""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import graph_engine.serialization as serialization
from app.history import HistoryError, HistoryStore, RecordedImage, RunRecord
from graph_engine import Executor, Graph, NodeRegistry
from graph_engine.serialization import atomic_write, save
from nodes.image import save_image
from tests.app.fault_nodes import solid_image
from ui.autosave import Autosaver, AutosaveStore

ROOT = Path(__file__).parents[2]
POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and /proc are POSIX")


# ---- helpers ----------------------------------------------------------------------------------------


@pytest.fixture
def disk_full(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], None]]:
    """`disk_full(True)`: every `atomic_write` fails with ENOSPC while writing its temp file's bytes.

    The temp file is opened with `os.fdopen` inside `atomic_write`; the wrapper's `write` raises as the
    kernel would when the disk is full, after the temp exists (the worst moment: there is something
    to clean up). `disk_full(False)` frees the disk again.
    """
    real_fdopen = os.fdopen
    state = {"full": False}

    class FullDisk:
        def __init__(self, f: Any) -> None:
            self._f = f

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self._f.close()

        def __getattr__(self, name: str) -> Any:
            return getattr(self._f, name)

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        f = real_fdopen(fd, *args, **kwargs)
        return FullDisk(f) if state["full"] else f

    monkeypatch.setattr(serialization.os, "fdopen", fdopen)
    yield lambda full: state.__setitem__("full", full)


def visible(folder: Path) -> list[str]:
    """Every entry of the folder, hidden temp files included: nothing partial may be left there."""
    return sorted(p.name for p in folder.iterdir())


def image_graph(shade: int = 100, prefix: str = "keep") -> Graph:
    g = Graph()
    src = g.add_node("SolidImage", {"shade": shade, "size": 16}).id
    out = g.add_node("SaveImage", {"filename_prefix": prefix}).id
    g.add_link(src, "IMAGE", out, "images", "IMAGE")
    return g


def image_registry() -> NodeRegistry:
    return NodeRegistry([solid_image, save_image])


def start_child(script: str, *args: str, home: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "SDGRAPH_HOME": str(home),
        "SDGRAPH_NODE_MODULES": "tests.app.fault_nodes",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_at(proc: subprocess.Popen[str], marker: Path, timeout: float = 90.0) -> None:
    """SIGKILL the child once it has written `marker` (it then sleeps inside its critical section)."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the child ended ({proc.returncode}) before the injected point:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the child never reached the injected point")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


# Patched into a child: the next rename of a file whose name ends in `sys.argv[2]` first writes the
# marker `sys.argv[1]` and sleeps, so the temp file is complete but not yet in place when the kill comes.
HOLD_BEFORE_RENAME = """
import os, sys, time
_marker, _suffix, _real_replace = sys.argv[1], sys.argv[2], os.replace
def _replace(src, dst, *a, **k):
    if str(dst).endswith(_suffix):
        open(_marker, "w").close()
        time.sleep(120)
    return _real_replace(src, dst, *a, **k)
os.replace = _replace
"""


# ---- 1. the output folder is checked before anything runs -----------------------------------------------


def sdgraph(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SDGRAPH_HOME": str(home), "SDGRAPH_NODE_MODULES": "tests.graph_engine.toy_nodes"}
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def sleepy_workflow(tmp_path: Path) -> Path:
    """Number -> Sleepy (about 4 s) -> WriteText: a run that reached the nodes would take seconds."""
    g = Graph()
    n = g.add_node("Number", {"value": 2}).id
    s = g.add_node("Sleepy", {"steps": 400}).id
    w = g.add_node("WriteText", {"name": "result"}).id
    g.add_link(n, "INT", s, "x", "INT")
    g.add_link(s, "INT", w, "value", "INT")
    path = tmp_path / "w.json"
    save(g, path)
    return path


@pytest.mark.parametrize("case", ["file", "parent_is_a_file", "read_only"])
def test_run_refuses_an_unusable_output_folder_before_any_node_runs(tmp_path: Path, case: str) -> None:
    if case == "read_only" and (os.name != "posix" or os.geteuid() == 0):
        pytest.skip("root (or a non-POSIX system) may write into a read-only folder")
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    folder = {
        "file": blocker,
        "parent_is_a_file": blocker / "images",
        "read_only": tmp_path / "locked",
    }[case]
    if case == "read_only":
        folder.mkdir()
        folder.chmod(0o555)
    started = time.monotonic()
    proc = sdgraph("run", str(sleepy_workflow(tmp_path)), "--output-dir", str(folder), home=tmp_path)
    took = time.monotonic() - started
    if case == "read_only":
        folder.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(folder) in lines[0], proc.stderr
    assert {"file": "is a file", "parent_is_a_file": "cannot be created", "read_only": "not writable"}[case] in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert took < 30  # the 4 s Sleepy node never ran (the interpreter's start is the rest)
    assert blocker.read_text() == "not a folder"


def test_output_folder_check_makes_a_missing_folder_and_clears_killed_writers_temps(tmp_path: Path) -> None:
    from app.output_folder import output_folder_problem

    folder = tmp_path / "a" / "b"
    assert output_folder_problem(folder) is None and folder.is_dir()
    # A temp of a writer on this machine that no longer exists (pid 2**22 + 1 is above any pid_max).
    stale = folder / (serialization.temp_prefix("x_00001_.png", pid=2**22 + 1) + "abc123.tmp")
    foreign = folder / ".x_00002_.png.abcdef-1.abc123.tmp"  # another machine's writer, maybe still going
    stale.write_bytes(b"half a png")
    kept = folder / "x_00001_.png"
    kept.write_bytes(b"png")
    foreign.write_bytes(b"being written elsewhere")
    assert output_folder_problem(folder) is None
    assert visible(folder) == [foreign.name, "x_00001_.png"]
    day_old = time.time() - 2 * serialization.STALE_TEMP_AGE_S
    os.utime(foreign, (day_old, day_old))
    assert serialization.remove_stale_temps(folder) == [foreign] and visible(folder) == ["x_00001_.png"]


# ---- 2. a full disk ----------------------------------------------------------------------------------


def test_save_image_on_a_full_disk_fails_the_run_naming_the_file_and_keeps_older_images(
    tmp_path: Path, disk_full: Callable[[bool], None]
) -> None:
    out = tmp_path / "out"
    first = Executor(image_registry(), output_dir=out).run(image_graph(10))
    assert first.status == "done"
    (kept,) = visible(out)
    before = (out / kept).read_bytes()

    disk_full(True)
    failed = Executor(image_registry(), output_dir=out).run(image_graph(20))
    assert failed.status == "failed" and failed.error is not None
    message = str(failed.error)
    assert str(out / "keep_00002_.png") in message and "no space left" in message.lower(), message
    assert "Traceback" not in message and "OSError" not in message
    assert visible(out) == [kept] and (out / kept).read_bytes() == before  # no partial file, no temp

    disk_full(False)  # space was freed: the same process saves again
    again = Executor(image_registry(), output_dir=out).run(image_graph(30))
    assert again.status == "done"
    assert visible(out) == [kept, "keep_00002_.png"] and (out / kept).read_bytes() == before


def test_atomic_write_on_a_full_disk_keeps_the_old_file_and_names_it(
    tmp_path: Path, disk_full: Callable[[bool], None]
) -> None:
    target = tmp_path / "flow.json"
    atomic_write(target, "old contents")
    disk_full(True)
    with pytest.raises(OSError) as info:
        atomic_write(target, "new contents that do not fit")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert "no space left" in str(info.value).lower() and str(target) in str(info.value)
    assert target.read_bytes() == b"old contents" and visible(tmp_path) == ["flow.json"]
    disk_full(False)
    atomic_write(target, "new contents")
    assert target.read_text() == "new contents"


def test_autosave_on_a_full_disk_reports_the_file_and_keeps_the_last_autosave(
    qapp: Any, tmp_path: Path, disk_full: Callable[[bool], None]
) -> None:
    store = AutosaveStore(tmp_path / "autosave")
    store.start_session()
    graph = Graph()
    graph.add_node("Number", {"value": 1})
    saver = Autosaver(store, interval_ms=3_600_000)
    failures: list[str] = []
    saver.failed.connect(failures.append)
    saver.track(graph, None, lambda: True)
    path = saver.save_if_dirty()
    assert path is not None
    before = path.read_bytes()

    graph.add_node("Number", {"value": 2})
    disk_full(True)
    assert saver.save_if_dirty() is None
    assert len(failures) == 1 and str(path) in failures[0] and "no space left" in failures[0].lower(), failures
    assert path.read_bytes() == before
    assert not [p for p in visible(store.root) if p.endswith(".tmp")]

    disk_full(False)  # the next tick writes the change
    assert saver.save_if_dirty() == path
    assert path.read_bytes() != before and len(serialization.load(path).nodes) == 2
    saver.stop()


def record(store: HistoryStore, n: int, thumbnail_kb: int = 4) -> int:
    image = RecordedImage(f"/images/{n}.png", 64, 64, node_id=1, thumbnail=os.urandom(thumbnail_kb * 1024))
    return store.record(RunRecord({"nodes": [], "n": n}, [image], prompts=[f"prompt {n}"]))


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def test_history_on_a_full_disk_keeps_every_earlier_run_and_carries_on(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    store = HistoryStore(path)
    record(store, 1)
    # SQLite writes through its own C code; a page limit is how it meets a full disk (SQLITE_FULL).
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(HistoryError) as info:
        record(store, 2, thumbnail_kb=256)
    assert str(path) in str(info.value) and "no space left" in str(info.value).lower(), info.value
    assert store.count() == 1 and store.workflow(store.list()[0].id) == {"nodes": [], "n": 1}
    store._conn.execute("PRAGMA max_page_count=1073741823")  # space was freed
    record(store, 3)
    assert store.count() == 2
    store.close()
    assert integrity(path) == "ok"


# ---- 3. killed at any point --------------------------------------------------------------------------


@POSIX_ONLY
def test_killed_while_saving_a_workflow_leaves_the_old_file_and_the_next_save_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "flow.json"
    old = Graph()
    old.add_node("Number", {"value": 1})
    save(old, target)
    before = target.read_bytes()
    marker = tmp_path / "marker"
    child = start_child(
        HOLD_BEFORE_RENAME
        + """
from graph_engine import Graph
from graph_engine.serialization import save
g = Graph()
for i in range(50):
    g.add_node("Number", {"value": i})
save(g, sys.argv[3])
""",
        str(marker),
        "flow.json",
        str(target),
        home=tmp_path,
    )
    kill_at(child, marker)
    assert target.read_bytes() == before
    leftovers = [p for p in visible(tmp_path) if p.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".flow.json.")  # hidden: no document shows it
    assert [p for p in visible(tmp_path) if p.endswith(".json")] == ["flow.json"]
    # The next start: the next save of that file (or any cleanup of the folder) removes the dead writer's temp.
    save(old, target)
    assert visible(tmp_path) == ["flow.json", "marker"] and target.read_bytes() == before


@POSIX_ONLY
def test_killed_during_a_run_leaves_no_partial_image_and_the_next_run_works(tmp_path: Path) -> None:
    out = tmp_path / "out"
    workflow = tmp_path / "w.json"
    save(image_graph(50, "shot"), workflow)
    marker = tmp_path / "marker"
    child = start_child(
        HOLD_BEFORE_RENAME
        + """
from app.cli import main
raise SystemExit(main(["run", sys.argv[3], "--output-dir", sys.argv[4]]))
""",
        str(marker),
        ".png",
        str(workflow),
        str(out),
        home=tmp_path,
    )
    kill_at(child, marker)
    assert not [p for p in visible(out) if p.endswith(".png")]  # no image, in particular no half one
    assert len([p for p in visible(out) if p.endswith(".tmp")]) == 1
    proc = subprocess.run(
        [sys.executable, "-m", "app", "run", str(workflow), "--output-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "SDGRAPH_HOME": str(tmp_path), "SDGRAPH_NODE_MODULES": "tests.app.fault_nodes"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out / "shot_00001_.png")
    assert visible(out) == ["shot_00001_.png"]  # the killed run's temp went when the next run checked the folder


@POSIX_ONLY
def test_killed_inside_a_history_write_leaves_a_sound_database_without_half_a_run(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    marker = tmp_path / "marker"
    child = start_child(
        """
import os, sys, time
from app.history import HistoryStore, RecordedImage, RunRecord
store = HistoryStore(sys.argv[1])
def run(n):
    images = [RecordedImage(f"/i/{n}-{k}.png", 8, 8, 1, os.urandom(200_000)) for k in range(4)]
    store.record(RunRecord({"n": n}, images, prompts=[str(n)]))
run(1)
run(2)
thumbnails = [0]
def hold(statement):
    # SQLite calls this as each statement starts: at run 3's third thumbnail we are deep inside its
    # transaction (the run, its workflow and two images written, nothing committed); hold there.
    if statement.startswith("INSERT INTO thumbnails"):
        thumbnails[0] += 1
        if thumbnails[0] == 3:
            open(sys.argv[2], "w").close()
            time.sleep(120)
store._conn.set_trace_callback(hold)
run(3)
print("run 3 committed before the kill", flush=True)
time.sleep(120)
""",
        str(path),
        str(marker),
        home=tmp_path,
    )
    kill_at(child, marker)
    assert integrity(path) == "ok"
    store = HistoryStore(path)
    runs = store.list()
    assert sorted(store.workflow(r.id)["n"] for r in runs) == [1, 2]  # all of runs 1 and 2, none of run 3
    assert all(len(r.images) == 4 for r in runs)
    record(store, 4)  # and it keeps working
    assert store.count() == 3
    store.close()
    assert integrity(path) == "ok"


@POSIX_ONLY
def test_killed_while_autosaving_the_next_start_offers_the_last_complete_autosave(tmp_path: Path) -> None:
    root = tmp_path / "autosave"
    marker = tmp_path / "marker"
    child = start_child(
        """
import os, sys, time
from graph_engine import Graph
from ui.autosave import AutosaveStore
store = AutosaveStore(sys.argv[2])
store.start_session()
g = Graph()
g.add_node("Number", {"value": 7})
name = store.name_for(None)
store.write(g, name, None)
g.add_node("Number", {"value": 8})
_suffix_hit = name + ".json"  # the second write of the graph itself (its manifest comes after)
_real = os.replace
_marker = sys.argv[1]
def _hold(src, dst, *a, **k):
    if str(dst).endswith(_suffix_hit):
        open(_marker, "w").close()
        time.sleep(120)
    return _real(src, dst, *a, **k)
os.replace = _hold
store.write(g, name, None)
""",
        str(marker),
        str(root),
        home=tmp_path,
    )
    kill_at(child, marker)
    assert len([p for p in visible(root) if p.endswith(".tmp")]) == 1
    store = AutosaveStore(root)
    store.start_session()  # the next start
    assert not [p for p in visible(root) if p.endswith(".tmp")]
    (offered,) = store.recoverable()
    assert offered.display_name == "Untitled"
    graph = offered.load()  # the complete first autosave, not a torn second one
    assert [n.values["value"] for n in graph.nodes.values()] == [7]
    store.forget_crashed_sessions()
    assert store.recoverable() == []
    store.end_session()


# ---- 5. validate and --dry-run check what they can up front ----------------------------------------


def aliased_workflow(tmp_path: Path) -> Path:
    g = Graph()
    c = g.add_node("Choose", {"mode": "gone", "label": "x"}).id
    show = g.add_node("Show").id
    g.add_link(c, "STRING", show, "value", "ANY")
    path = tmp_path / "choose.json"
    save(g, path)
    return path


def test_validate_takes_model_alias_like_run(tmp_path: Path) -> None:
    path = aliased_workflow(tmp_path)
    before = path.read_bytes()
    bad = sdgraph("validate", str(path), home=tmp_path)
    assert bad.returncode == 2 and "gone" in bad.stderr
    good = sdgraph("validate", str(path), "--model-alias", "gone=fast", home=tmp_path)
    assert good.returncode == 0, good.stderr
    assert "valid" in good.stdout
    assert path.read_bytes() == before  # an alias changes what is checked, never the file


@pytest.mark.parametrize("command", [("validate",), ("run", "--dry-run")])
def test_cuda_where_there_is_none_is_refused_before_running(tmp_path: Path, command: tuple[str, ...]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = sdgraph(*command, str(sleepy_workflow(tmp_path)), "--device", "cuda", home=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sdgraph: --device cuda:") and "CUDA" in lines[0], proc.stderr
    assert proc.stdout == ""
