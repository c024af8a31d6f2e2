"""Pixels into Qt: numpy previews and PNG files on disk as `QImage`s.

The engine speaks numpy (a node's live preview is a uint8 array [H, W, 3]) and files (an output node
reports the PNGs it wrote). The canvas and the image panel speak `QImage`. These helpers are the one
place that crosses over, so the rules live here: the QImage always owns a copy of the pixels (a
`QImage` built over a numpy buffer dangles as soon as the array is freed, which crashes later and far
away), and anything unreadable becomes a null image rather than an exception in the middle of a run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtGui import QImage

if TYPE_CHECKING:
    import numpy as np


def qimage_from_array(array: Any) -> QImage:
    """A QImage that owns a copy of `array`: uint8 (or float 0..1) [H, W], [H, W, 3] or [H, W, 4].

    A leading batch axis of 1 is dropped, so a node may hand over [1, H, W, 3] as well.
    """
    import numpy as np  # here, not at import: numpy costs ~0.2 s of start-up before the window shows

    a = np.asarray(array)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if a.ndim == 2:
        fmt, channels = QImage.Format.Format_Grayscale8, 1
    elif a.ndim == 3 and a.shape[2] == 3:
        fmt, channels = QImage.Format.Format_RGB888, 3
    elif a.ndim == 3 and a.shape[2] == 4:
        fmt, channels = QImage.Format.Format_RGBA8888, 4
    else:
        raise ValueError(f"expected an image array [H, W], [H, W, 3] or [H, W, 4], got shape {a.shape}")
    a = np.ascontiguousarray(a)
    h, w = a.shape[:2]
    # QImage over the buffer, then .copy(): the result owns its pixels and outlives `a`.
    return QImage(a.data, w, h, w * channels, fmt).copy()


def qimage_to_array(image: QImage) -> np.ndarray:
    """RGB uint8 [H, W, 3] copy of a QImage (tests and screenshots compare pixels with it)."""
    import numpy as np

    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    h, w, bpl = rgb.height(), rgb.width(), rgb.bytesPerLine()
    buf = np.frombuffer(rgb.constBits(), dtype=np.uint8, count=h * bpl).reshape(h, bpl)
    return buf[:, : w * 3].reshape(h, w, 3).copy()


def load_qimage(path: str | Path) -> QImage:
    """Read an image file; a missing or unreadable file gives a null QImage (callers skip those)."""
    return QImage(str(path))


def ui_image_paths(ui: Mapping[str, Any]) -> list[Path]:
    """The files an output node's `ui` payload names: `{"images": [{"path": ...}, ...]}`."""
    paths: list[Path] = []
    images = ui.get("images") if isinstance(ui, Mapping) else None
    if not isinstance(images, Iterable):
        return paths
    for item in images:
        if isinstance(item, Mapping) and isinstance(item.get("path"), str):
            paths.append(Path(item["path"]))
    return paths


def load_ui_images(ui: Mapping[str, Any]) -> list[tuple[Path, QImage]]:
    """Every readable image an output node reported, with its path (for "open"/"show in folder")."""
    loaded = [(p, load_qimage(p)) for p in ui_image_paths(ui)]
    return [(p, img) for p, img in loaded if not img.isNull()]
