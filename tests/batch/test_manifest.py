"""The manifest: durable appends, torn lines ignored, and "done" checked against the files present."""

from __future__ import annotations

import json

from app.batch.manifest import MANIFEST_NAME, Manifest


def record(job: str, *files: tuple[str, int], status: str = "done") -> dict:
    return {"job": job, "status": status, "files": [{"name": n, "bytes": b} for n, b in files]}


def test_done_needs_the_files_with_their_recorded_sizes(tmp_path):
    m = Manifest(tmp_path)
    (tmp_path / "a.png").write_bytes(b"12345")
    (tmp_path / "b.png").write_bytes(b"123")
    (tmp_path / "c.png").write_bytes(b"1")
    m.append(record("a", ("a.png", 5)))
    m.append(record("b", ("b.png", 4)))  # size differs: the file was replaced
    m.append(record("c", ("c.png", 1)))
    m.append(record("gone", ("gone.png", 1)))
    m.append(record("f", status="failed"))
    assert m.done() == {"a", "c"}
    assert m.done(["a", "b"]) == {"a"}
    (tmp_path / "c.png").unlink()
    assert m.done() == {"a"}


def test_a_later_record_wins_and_names_cannot_leave_the_folder(tmp_path):
    m = Manifest(tmp_path)
    (tmp_path / "x.png").write_bytes(b"xx")
    m.append(record("x", status="failed"))
    m.append(record("x", ("x.png", 2)))
    assert m.done() == {"x"}
    m.append(record("y", ("../x.png", 2)))
    m.append(record("z", (".hidden", 2)))
    assert m.done() == {"x"}


def test_a_torn_last_line_is_skipped_and_the_next_append_starts_a_new_line(tmp_path):
    m = Manifest(tmp_path)
    (tmp_path / "a.png").write_bytes(b"a")
    m.append(record("a", ("a.png", 1)))
    with open(tmp_path / MANIFEST_NAME, "a") as f:
        f.write('{"job": "b", "status": "do')  # a writer killed mid-line
    assert [r["job"] for r in m.records()] == ["a"]
    (tmp_path / "c.png").write_bytes(b"c")
    m.append(record("c", ("c.png", 1)))
    lines = (tmp_path / MANIFEST_NAME).read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["job"] == "c"
    assert m.done() == {"a", "c"}


def test_no_manifest_means_nothing_done(tmp_path):
    assert Manifest(tmp_path / "new").done() == set()
