"""`/view` and `/upload/*`: files by name inside the output, input and temp folders, never outside them.

A client names a file as ComfyUI does: `filename`, `subfolder` and `type` (output | input | temp).
Names are checked before the disk is touched (no `..`, no absolute path, no separators in `filename`,
no NUL) and the resolved path must still lie inside its folder, so a symlink that points out of it is
treated as absent. Uploads must decode as an image (Pillow reads the header and verifies the data)
and keep an image suffix, so Load Image can list them; a name already taken by a different file gets
` (1)`, ` (2)`, … unless `overwrite` is set, and the same bytes uploaded twice reuse the first file.
Every write goes through `atomic_write` (a temp file and a rename).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from graph_engine.serialization import atomic_write
from nodes.folders import IMAGE_SUFFIXES, is_image_name


class FileRefused(Exception):
    """A request for a file that is refused; `status` is the HTTP code (400 bad name, 404 not there)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Folders:
    output: Path
    input: Path
    temp: Path

    def root(self, kind: str) -> Path:
        roots = {"output": self.output, "input": self.input, "temp": self.temp}
        if kind not in roots:
            raise FileRefused(400, f"type must be one of output, input, temp (got {kind[:40]!r})")
        return roots[kind]


def check_name(filename: str, subfolder: str = "") -> None:
    if not filename or filename in (".", "..") or any(c in filename for c in "/\\\x00"):
        raise FileRefused(400, f"filename must be a plain file name (got {filename[:80]!r})")
    if subfolder:
        parts = PurePosixPath(subfolder).parts
        if subfolder.startswith(("/", "\\")) or "\\" in subfolder or "\x00" in subfolder or ".." in parts:
            raise FileRefused(400, f"subfolder must be a relative folder without '..' (got {subfolder[:80]!r})")
        if len(subfolder) > 2 and subfolder[1] == ":":  # a Windows drive
            raise FileRefused(400, f"subfolder must be a relative folder (got {subfolder[:80]!r})")


def resolve(root: Path, subfolder: str, filename: str, *, must_exist: bool = True) -> Path:
    """The file's path inside `root`; `FileRefused` for a bad name, a missing file or a way out."""
    check_name(filename, subfolder)
    base = root.resolve()
    path = (base / subfolder / filename).resolve() if subfolder else (base / filename).resolve()
    if not path.is_relative_to(base):  # a symlink leading out of the folder
        raise FileRefused(404, f"no file {filename!r} in {subfolder or 'the folder'}")
    if must_exist and not path.is_file():
        raise FileRefused(404, f"no file {filename!r} in {subfolder or 'the folder'}")
    return path


def check_image(data: bytes, filename: str) -> None:
    """Refuse anything Pillow cannot read as an image, and names Load Image would not list."""
    from PIL import Image, UnidentifiedImageError

    if not is_image_name(filename):
        raise FileRefused(400, f"{filename!r} does not have an image file suffix ({', '.join(IMAGE_SUFFIXES)})")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise FileRefused(400, f"{filename!r} is not an image Pillow can read ({type(exc).__name__})") from None


def store_upload(root: Path, subfolder: str, filename: str, data: bytes, *, overwrite: bool) -> str:
    """Write an uploaded file; returns the name it was stored under (ComfyUI's "name (1).png" on a clash)."""
    check_name(filename, subfolder)
    folder = resolve(root, subfolder, "probe", must_exist=False).parent
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = Path(filename).stem, Path(filename).suffix
    name = filename
    for n in range(1, 10_000):
        target = resolve(root, subfolder, name, must_exist=False)
        if overwrite or not target.exists():
            break
        if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
            return name
        name = f"{stem} ({n}){suffix}"
    else:
        raise FileRefused(409, f"no free name for {filename!r}")
    atomic_write(target, data)
    return name
