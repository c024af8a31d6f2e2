"""Adding images to Load Image's input folder: created on demand, never overwriting a different file,
names that stay inside the folder (issue 10, bug 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodes.folders import import_input_image, input_dir, list_input_images, resolve_input_image, store_input_image


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "in"
    monkeypatch.setenv("SDGRAPH_INPUT_DIR", str(target))
    assert input_dir() == target
    return target


def test_store_creates_the_folder_and_never_overwrites(folder: Path) -> None:
    assert not folder.exists()
    assert store_input_image(b"one", "a.png") == "a.png"
    assert folder.is_dir()
    assert store_input_image(b"two", "a.png") == "a_1.png"
    assert store_input_image(b"three", "a.png") == "a_2.png"
    assert store_input_image(b"two", "a.png") == "a_1.png"  # the same bytes: the existing copy
    assert (folder / "a.png").read_bytes() == b"one"
    assert list_input_images() == ["a.png", "a_1.png", "a_2.png"]


@pytest.mark.parametrize("name", ["notes.txt", "", "..", "x\x00.png"])
def test_store_refuses_names_that_are_not_images(folder: Path, name: str) -> None:
    with pytest.raises(ValueError):
        store_input_image(b"x", name)


def test_a_path_in_the_name_is_reduced_to_the_file_name(folder: Path) -> None:
    assert store_input_image(b"x", "../../etc/evil.png") == "evil.png"
    assert (folder / "evil.png").is_file()
    assert not (folder.parent / "evil.png").exists()


def test_import_copies_outside_files_and_keeps_inside_ones_where_they_are(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "pics" / "cat.png"
    outside.parent.mkdir()
    outside.write_bytes(b"meow")
    assert import_input_image(outside) == "cat.png"
    inside = folder / "sub" / "dog.png"
    inside.parent.mkdir()
    inside.write_bytes(b"woof")
    assert import_input_image(inside) == "sub/dog.png"
    assert resolve_input_image("sub/dog.png") == inside.resolve()
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == ["cat.png", "dog.png"]
    with pytest.raises(FileNotFoundError):
        import_input_image(tmp_path / "missing.png")
