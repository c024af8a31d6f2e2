"""MASK outputs as pictures: the grey arrays a mask node reports (``ui["mask_previews"]``, made on the
run's thread by `nodes.mask_preview`, since the UI never imports torch) turned into `QImage`s for the
node on the canvas and the preview panel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PySide6.QtGui import QImage

from nodes.mask_preview import PREVIEW_KEY
from ui.images import qimage_from_array


def mask_preview_images(ui: Mapping[str, Any]) -> list[QImage]:
    """The grey pictures of a node's mask, in batch order; anything unreadable is left out."""
    arrays = ui.get(PREVIEW_KEY) if isinstance(ui, Mapping) else None
    if not isinstance(arrays, list | tuple):
        return []
    images = []
    for array in arrays:
        try:
            images.append(qimage_from_array(array))
        except (ValueError, TypeError):
            continue
    return [img for img in images if not img.isNull()]
