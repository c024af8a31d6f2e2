"""The run history store: round trips, filters, deletion, and a crash in the middle of recording a run.

The crash is real: a child process starts recording a run and dies (`os._exit`) between two inserts
of that run's transaction. The parent then opens the same file and must find the earlier runs intact,
no trace of the half-written one, and SQLite's own integrity check passing.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from app.history import (
    DB_NAME,
    SCHEMA_VERSION,
    HistoryError,
    HistoryStore,
    RecordedImage,
    RunRecord,
    default_path,
    describe_workflow,
)

ROOT = Path(__file__).resolve().parents[2]


def workflow(prompt: str, model: str = "sd15.safetensors", negative: str = "blurry") -> dict[str, Any]:
    """A txt2img-shaped workflow document (as `graph_to_dict` writes it)."""
    return {
        "format": "sdgraph.workflow",
        "schema_version": 1,
        "nodes": [
            {"id": 1, "type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": model}},
            {"id": 2, "type": "CLIPTextEncode", "inputs": {"text": prompt}},
            {"id": 3, "type": "CLIPTextEncode", "inputs": {"text": negative}},
            {"id": 4, "type": "KSampler", "inputs": {"seed": 1, "steps": 20}},
            {"id": 5, "type": "Note", "inputs": {"text": "a note, not a prompt"}},
        ],
        "links": [
            {"id": 1, "src": [1, "CLIP"], "dst": [2, "clip"], "type": "CLIP"},
            {"id": 2, "src": [1, "CLIP"], "dst": [3, "clip"], "type": "CLIP"},
            {"id": 3, "src": [2, "CONDITIONING"], "dst": [4, "positive"], "type": "CONDITIONING"},
            {"id": 4, "src": [3, "CONDITIONING"], "dst": [4, "negative"], "type": "CONDITIONING"},
        ],
    }


def run(prompt: str, started: float, model: str = "sd15.safetensors", images: int = 1) -> RunRecord:
    return RunRecord(
        workflow(prompt, model),
        [RecordedImage(f"/out/{prompt[:8]}_{i}.png", 512, 768, 9, b"\x89PNG thumb %d" % i) for i in range(images)],
        started=started,
        finished=started + 2.0,
    )


@pytest.fixture
def store(tmp_path: Path) -> HistoryStore:
    with HistoryStore(tmp_path / DB_NAME) as s:
        yield s


def test_the_default_file_is_in_the_home_folder(sdgraph_home_env: Path) -> None:
    assert default_path() == sdgraph_home_env / "history.sqlite3"
    with HistoryStore() as s:
        s.record(run("a cat", 100.0))
    assert (sdgraph_home_env / "history.sqlite3").is_file()


@pytest.fixture
def sdgraph_home_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("SDGRAPH_HOME", str(home))
    return home


def test_describe_finds_the_models_and_only_the_positive_prompt() -> None:
    models, prompts = describe_workflow(workflow("a red fox in snow", "dreamshaper.safetensors"))
    assert models == ["dreamshaper.safetensors"]
    assert prompts == ["a red fox in snow"]  # not the negative prompt, not the note


def test_describe_follows_conditioning_through_combiners_and_guiders() -> None:
    doc = {
        "nodes": [
            {"id": 1, "type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors"}},
            {"id": 2, "type": "CLIPTextEncode", "inputs": {"text": "a lighthouse"}},
            {"id": 3, "type": "FluxGuidance", "inputs": {"guidance": 3.5}},
            {"id": 4, "type": "BasicGuider", "inputs": {}},
            {"id": 5, "type": "PrimitiveNode", "inputs": {"value": "at dusk"}},
            {"id": 6, "type": "CLIPTextEncode", "inputs": {}},
            {"id": 7, "type": "ConditioningCombine", "inputs": {}},
        ],
        "links": [
            {"id": 1, "src": [5, "value"], "dst": [6, "text"], "type": "STRING"},
            {"id": 2, "src": [2, "CONDITIONING"], "dst": [7, "conditioning_1"], "type": "CONDITIONING"},
            {"id": 3, "src": [6, "CONDITIONING"], "dst": [7, "conditioning_2"], "type": "CONDITIONING"},
            {"id": 4, "src": [7, "CONDITIONING"], "dst": [3, "conditioning"], "type": "CONDITIONING"},
            {"id": 5, "src": [3, "CONDITIONING"], "dst": [4, "conditioning"], "type": "CONDITIONING"},
        ],
    }
    models, prompts = describe_workflow(doc)
    assert models == ["flux1-dev.safetensors"]
    assert prompts == ["a lighthouse", "at dusk"]


def test_round_trip(store: HistoryStore) -> None:
    doc = workflow("a lighthouse at dusk")
    run_id = store.record(
        RunRecord(
            doc,
            [RecordedImage("/out/a.png", 512, 768, 9, b"thumb-a"), RecordedImage("/out/b.png", 64, 32, 10, None)],
            started=1000.0,
            finished=1003.5,
        )
    )
    [listed] = store.list()
    assert (listed.id, listed.started, listed.finished, listed.status) == (run_id, 1000.0, 1003.5, "done")
    assert listed.prompt == "a lighthouse at dusk"
    assert listed.models == ("sd15.safetensors",)
    assert [(i.path, i.width, i.height, i.node_id) for i in listed.images] == [
        ("/out/a.png", 512, 768, 9),
        ("/out/b.png", 64, 32, 10),
    ]
    assert store.thumbnail(listed.images[0].id) == b"thumb-a"
    assert store.thumbnail(listed.images[1].id) is None
    assert store.workflow(run_id) == doc
    assert store.workflow(run_id + 100) is None
    assert store.models() == ["sd15.safetensors"]


def test_runs_survive_closing_and_reopening(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / DB_NAME) as s:
        first = s.record(run("one", 1.0))
        second = s.record(run("two", 2.0))
    with HistoryStore(tmp_path / DB_NAME) as s:
        assert [r.id for r in s.list()] == [second, first]
        assert s.workflow(first) == workflow("one")


def test_the_file_uses_wal_and_records_its_schema_version(store: HistoryStore) -> None:
    raw = sqlite3.connect(store.path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        raw.close()


def test_filters(store: HistoryStore) -> None:
    cat = store.record(run("A fluffy Cat on a sofa", 100.0, "sd15.safetensors"))
    dog = store.record(run("a dog on a beach", 200.0, "sdxl.safetensors"))
    cat2 = store.record(run("cat astronaut, beach", 300.0, "sdxl.safetensors", images=2))

    def ids(**kw: Any) -> list[int]:
        return [r.id for r in store.list(**kw)]

    assert ids() == [cat2, dog, cat]  # newest first
    assert ids(query="cat") == [cat2, cat]  # any case
    assert ids(query="BEACH cat") == [cat2]  # every word must appear
    assert ids(query="giraffe") == []
    assert ids(model="sdxl.safetensors") == [cat2, dog]
    assert ids(model="sdxl.safetensors", query="cat") == [cat2]
    assert ids(since=200.0) == [cat2, dog]
    assert ids(until=200.0) == [cat]
    assert ids(since=150.0, until=250.0) == [dog]
    assert ids(limit=2) == [cat2, dog]
    assert ids(limit=2, offset=2) == [cat]
    assert store.models() == ["sd15.safetensors", "sdxl.safetensors"]
    assert len(store.list(query="astronaut")[0].images) == 2


def test_the_filters_use_indexes(store: HistoryStore) -> None:
    """Listing by date or model must not scan every run once the history is long."""
    raw = sqlite3.connect(store.path)
    try:
        plan = " ".join(
            str(r[-1]) for r in raw.execute("EXPLAIN QUERY PLAN SELECT run_id FROM run_models WHERE name = ?", ("x",))
        )
        assert "run_models_name" in plan or "sqlite_autoindex" in plan
        plan = " ".join(str(r[-1]) for r in raw.execute("EXPLAIN QUERY PLAN SELECT id FROM runs WHERE started >= 5"))
        assert "runs_started" in plan
    finally:
        raw.close()


def test_delete_forgets_the_run_but_keeps_its_files(store: HistoryStore, tmp_path: Path) -> None:
    image = tmp_path / "keep.png"
    image.write_bytes(b"png")
    keep = store.record(RunRecord(workflow("kept"), [RecordedImage(str(image), 1, 1, 1, b"t")], started=1.0))
    gone = store.record(RunRecord(workflow("gone"), [RecordedImage(str(image), 1, 1, 1, b"t")], started=2.0))
    image_id = store.list(query="gone")[0].images[0].id
    assert store.delete(gone) == [str(image)]
    assert [r.id for r in store.list()] == [keep]
    assert store.workflow(gone) is None
    assert store.thumbnail(image_id) is None  # the thumbnail went with it
    assert image.is_file()
    assert store.models() == ["sd15.safetensors"]
    raw = sqlite3.connect(store.path)
    try:  # nothing of the deleted run is left behind in any table
        for table in ("workflows", "run_models", "images"):
            assert raw.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", (gone,)).fetchone()[0] == 0
    finally:
        raw.close()


def test_delete_can_remove_the_files_too(store: HistoryStore, tmp_path: Path) -> None:
    image = tmp_path / "drop.png"
    image.write_bytes(b"png")
    run_id = store.record(RunRecord(workflow("x"), [RecordedImage(str(image), 1, 1, 1, None)]))
    store.delete(run_id, delete_files=True)
    assert not image.exists()


def test_a_failed_record_leaves_nothing_behind(store: HistoryStore) -> None:
    """An error halfway through a run's inserts rolls the whole run back."""
    store.record(run("before", 1.0))
    bad = RunRecord(
        workflow("half"), [RecordedImage("/a.png", 1, 1, 1, b"t"), RecordedImage("/b.png", "wide", 1, 1, b"t")]
    )  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.record(bad)
    assert [r.prompt for r in store.list()] == ["before"]
    assert store.record(run("after", 3.0)) > 0


def test_a_crash_in_the_middle_of_recording_leaves_the_history_intact(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    child = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from app.history import HistoryStore, RecordedImage, RunRecord

        class DiesHalfway(RecordedImage):
            @property
            def width(self):  # read inside record()'s transaction, after the run row went in
                os._exit(3)
            @width.setter
            def width(self, value):
                pass

        store = HistoryStore({str(path)!r})
        for i in range(2):
            store.record(RunRecord({{"nodes": [], "n": i}}, [RecordedImage(f"/{{i}}.png", 8, 8, 1, b"t")], started=i))
        store.record(RunRecord({{"nodes": [], "n": 99}}, [RecordedImage("/ok.png", 8, 8, 1, b"t"),
                                                     DiesHalfway("/x.png", 8, 8, 1, b"t")], started=5))
        print("not reached")
        """
    )
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "not reached" not in proc.stdout
    assert Path(str(path) + "-wal").exists()  # died with the WAL open: no clean close happened
    with HistoryStore(path) as s:
        runs = s.list()
        assert [(r.started, len(r.images)) for r in runs] == [(1.0, 1), (0.0, 1)]
        assert [s.workflow(r.id) for r in runs] == [{"nodes": [], "n": 1}, {"nodes": [], "n": 0}]
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert s._conn.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 2
        s.record(run("after the crash", 10.0))
        assert len(s.list()) == 3


def test_a_damaged_file_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(HistoryError, match="damaged"):
        HistoryStore(path)
    assert path.read_bytes().startswith(b"this is not")  # left as it was


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    HistoryStore(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    raw.commit()
    raw.close()
    with pytest.raises(HistoryError, match="newer sdgraph"):
        HistoryStore(path)


def test_the_store_imports_neither_qt_nor_torch() -> None:
    code = (
        "import sys, app.history;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'PySide6', 'numpy'});"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_json_is_stored_as_text(store: HistoryStore) -> None:
    """Another program (a future HTTP server, sqlite3 on the command line) can read the graph as JSON."""
    run_id = store.record(run("readable", 1.0))
    raw = sqlite3.connect(store.path)
    try:
        text = raw.execute("SELECT json FROM workflows WHERE run_id = ?", (run_id,)).fetchone()[0]
    finally:
        raw.close()
    assert json.loads(text) == workflow("readable")


def test_a_locked_or_closed_history_says_so_instead_of_crashing_the_caller(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    store = HistoryStore(path, timeout=0.1)
    store.record(run("one", 1.0))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process is writing and does not let go
    try:
        with pytest.raises(HistoryError, match="could not be added"):
            store.record(run("two", 2.0))
        with pytest.raises(HistoryError, match="could not be changed"):
            store.delete(1)
        assert [r.prompt for r in store.list()] == ["one"]  # WAL: reading goes on while another writes
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.record(run("two", 2.0)) > 0
    store.close()
    with pytest.raises(HistoryError, match="could not be listed"):
        store.list()
