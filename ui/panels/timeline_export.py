"""The timeline as a GIF/WebP at the image's own size, captioned with a font that has σ.

Each animation frame is as large as the image the run decodes to (the record's `image_size`): the
model's predicted image x̂₀ fills it (the full VAE decode where the panel has one for that step, else
the latent preview enlarged as crisp pixels), the noisy sample x_t sits in a corner inset, and the
step, t and σ run along the top. Frame 0 has no prediction yet, so it shows x_t.

The caption is drawn with Qt rather than Pillow: Pillow's built-in font has no σ and draws a box. The
font is the first family whose glyphs cover the whole caption (`caption_font`); only when no installed
font has σ is it spelled "sigma". Pillow then writes the file (`nodes.diffusion.timeline.write_animation`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontDatabase, QFontMetrics, QImage, QPainter, QPen

from ui import theme
from ui.images import qimage_from_array, qimage_to_array

CAPTION_BG = QColor(0, 0, 0, 150)
CAPTION_FG = QColor(235, 235, 235)
INSET_FRACTION = 0.28  # the x_t inset's width, as a fraction of the frame's


def has_glyphs(font: QFont, text: str) -> bool:
    """Whether `font` (after Qt's font matching) has a glyph for every visible character of `text`.

    `QFontMetrics.inFont` takes a QChar; PySide6 6.x turns a Python 'σ' into the wrong one and answers
    False for every font, so code points go through `inFontUcs4`.
    """
    metrics = QFontMetrics(font)
    return all(metrics.inFontUcs4(ord(c)) for c in text if not c.isspace())


def caption_font(text: str, pixel_size: int) -> tuple[QFont, str]:
    """A font of `pixel_size` that can draw `text`, and the text to draw with it.

    Tries the editor's label font, the system font, then every installed family; with none that has
    all the glyphs, falls back to the label font and spells σ as "sigma" (never a missing-glyph box).
    """
    candidates = [theme.label_font().family(), QFontDatabase.systemFont(QFontDatabase.SystemFont.GeneralFont).family()]
    candidates += [f for f in QFontDatabase.families() if f not in candidates]
    for family in candidates:
        font = QFont(family)
        font.setPixelSize(pixel_size)
        if has_glyphs(font, text):
            return font, text
    font = QFont(theme.label_font())  # a copy: the theme's font is shared
    font.setPixelSize(pixel_size)
    return font, text.replace("σ", "sigma")


def _scaled(image: QImage, width: int, height: int) -> QImage:
    """Enlarge or shrink to exactly width×height; small previews stay crisp pixels, as in the panel."""
    if image.width() == width and image.height() == height:
        return image
    mode = (
        Qt.TransformationMode.FastTransformation
        if image.width() < width
        else Qt.TransformationMode.SmoothTransformation
    )
    return image.scaled(width, height, Qt.AspectRatioMode.IgnoreAspectRatio, mode)


def render_frame(
    frame: Mapping[str, Any], steps: int, size: tuple[int, int], decoded: QImage | None = None
) -> tuple[QImage, str]:
    """One animation frame at `size` (width, height), and the caption text drawn on it."""
    from nodes.diffusion.timeline import frame_label  # numpy + Pillow only; no torch

    width, height = size
    out = QImage(width, height, QImage.Format.Format_RGB888)
    out.fill(QColor(24, 24, 24))
    x_t = qimage_from_array(frame["preview_x"])
    if decoded is not None and not decoded.isNull():
        main: QImage | None = decoded
    elif frame.get("preview_denoised") is not None:
        main = qimage_from_array(frame["preview_denoised"])
    else:
        main = None
    painter = QPainter(out)
    try:
        painter.drawImage(0, 0, _scaled(main if main is not None else x_t, width, height))
        if main is not None:
            iw = max(8, round(width * INSET_FRACTION))
            ih = max(8, round(iw * x_t.height() / max(1, x_t.width())))
            margin = max(2, width // 64)
            inset = QRectF(width - iw - margin, height - ih - margin, iw, ih)
            painter.drawImage(inset.topLeft(), _scaled(x_t, iw, ih))
            painter.setPen(QPen(CAPTION_FG, 1))
            painter.drawRect(inset.adjusted(-0.5, -0.5, 0.5, 0.5))
        text = frame_label(frame, steps)
        px = min(28, max(8, round(height / 20)))
        font, text = caption_font(text, px)
        while px > 6 and QFontMetrics(font).horizontalAdvance(text) > width - 8:
            px -= 1
            font.setPixelSize(px)
        band = QFontMetrics(font).height() + 4
        painter.fillRect(QRectF(0, 0, width, band), CAPTION_BG)
        painter.setFont(font)
        painter.setPen(CAPTION_FG)
        painter.drawText(QRectF(4, 0, width - 8, band), int(Qt.AlignmentFlag.AlignVCenter), text)
    finally:
        painter.end()
    return out, text


def export_timeline(
    frames: Sequence[Mapping[str, Any]],
    path: str | Path,
    size: tuple[int, int],
    decoded: Mapping[int, QImage] | None = None,
    *,
    duration_ms: int = 200,
) -> int:
    """Write every frame at `size` (the image's) as a GIF or WebP (by suffix); returns the frame count."""
    from PIL import Image

    from nodes.diffusion.timeline import check_animation_path, write_animation

    check_animation_path(path)
    if not frames:
        raise ValueError("the timeline is empty: run a sampler with timeline recording on first")
    decoded = decoded or {}
    steps = max(int(f["step"]) for f in frames)
    images = [
        Image.fromarray(qimage_to_array(render_frame(f, steps, size, decoded.get(i))[0])) for i, f in enumerate(frames)
    ]
    return write_animation(images, path, duration_ms=duration_ms)
