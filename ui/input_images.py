"""Images for Load Image: picking a file, pasting, dropping, and the thumbnail a node shows.

Load Image reads images by name from the input folder (`nodes.folders.input_dir`), and a workflow
stores only that name, never a path, so a shared workflow cannot read files outside the folder. The
editor's ways of adding an image therefore all end the same way: the image is stored in the input
folder under a free name (`nodes.folders.store_input_image`: never over a different file) and the node
gets that name. The folder is created then, not before; the node's tooltip says where it is.

`choose_image_file` is the one place a modal file dialog opens; it is a module function so tests (and
any embedding program) replace it instead of blocking on a dialog.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMimeData, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QImage, QImageReader
from PySide6.QtWidgets import QFileDialog, QWidget

from graph_engine.node_spec import Input, NodeSpec
from nodes.folders import (
    IMAGE_SUFFIXES,
    ensure_input_dir,
    import_input_image,
    input_dir,
    resolve_input_image,
    store_input_image,
)

IMAGE_FILE = "image_file"  # the `Input.display` hint of an input that names an image in the input folder
THUMB_MAX = 512  # thumbnails are read scaled down to at most this many pixels on their long side

_last_folder: Path | None = None
_thumbs: dict[tuple[str, int, int], QImage] = {}


def is_image_input(inp: Input) -> bool:
    return inp.type == "COMBO" and inp.display == IMAGE_FILE


def image_inputs(spec: NodeSpec | None) -> list[Input]:
    """The inputs of `spec` that name an input-folder image (Load Image's `image`)."""
    return [] if spec is None else [i for i in spec.inputs if is_image_input(i)]


def folder_hint() -> str:
    """What the node's tooltip says about where its images live and how to add one."""
    return (
        f"Images come from the input folder:\n{input_dir()}\n"
        "Choose file…, paste an image (Ctrl+V) or drop one on the canvas to copy it there."
    )


def choose_image_file(parent: QWidget | None) -> Path | None:
    """Ask for an image anywhere on disk (a modal dialog); None when cancelled. Tests replace this."""
    global _last_folder
    start = _last_folder if _last_folder is not None and _last_folder.is_dir() else Path.home()
    pattern = " ".join(f"*{s}" for s in IMAGE_SUFFIXES)
    path, _ = QFileDialog.getOpenFileName(parent, "Choose an image", str(start), f"Images ({pattern})")
    if not path:
        return None
    _last_folder = Path(path).parent
    return Path(path)


def import_file(path: str | Path) -> str:
    """Copy an image into the input folder (or use it where it is, if it is there); its name there."""
    return import_input_image(path)


def store_qimage(image: QImage, prefix: str = "pasted") -> str:
    """Save a pasted image as a PNG in the input folder; returns its name there."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise OSError("the pasted image could not be encoded as PNG")
    buffer.close()
    return store_input_image(bytes(data.data()), f"{prefix}_{time.strftime('%Y%m%d-%H%M%S')}.png")


def image_files(urls: Iterable[QUrl]) -> list[Path]:
    """The local image files among dropped or copied URLs."""
    paths = [Path(u.toLocalFile()) for u in urls if u.isLocalFile()]
    return [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


def mime_has_image(mime: QMimeData | None) -> bool:
    """Whether a drop or the clipboard carries an image: image files, or image data."""
    if mime is None:
        return False
    if mime.hasUrls() and image_files(mime.urls()):
        return True
    return mime.hasImage()


def store_from_mime(mime: QMimeData) -> list[str]:
    """Put the images a drop or the clipboard carries into the input folder; their names there.

    Files win over image data: a file manager's copy also offers an icon as image data.
    """
    files = image_files(mime.urls()) if mime.hasUrls() else []
    if files:
        return [import_file(p) for p in files]
    if mime.hasImage():
        image = mime.imageData()
        if isinstance(image, QImage) and not image.isNull():
            return [store_qimage(image)]
    return []


def thumbnail(name: object) -> QImage:
    """A scaled-down picture of the input image `name`; a null image if it is missing or unreadable.

    Cached by path, modification time and size, so a node redraws without re-reading its file and an
    edited file shows its new picture.
    """
    if not isinstance(name, str) or not name:
        return QImage()
    try:
        path = resolve_input_image(name)
        st = path.stat()
    except (OSError, ValueError):
        return QImage()
    key = (str(path), st.st_mtime_ns, st.st_size)
    cached = _thumbs.get(key)
    if cached is not None:
        return cached
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    size = reader.size()
    if size.isValid() and max(size.width(), size.height()) > THUMB_MAX:
        reader.setScaledSize(size.scaled(THUMB_MAX, THUMB_MAX, Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    if len(_thumbs) > 64:
        _thumbs.clear()
    _thumbs[key] = image
    return image


def open_input_folder() -> None:
    """Show the input folder in the file manager (creating it first, so there is something to show)."""
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(ensure_input_dir())))
