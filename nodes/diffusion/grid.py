"""An XY image grid with labelled axes, drawn with Pillow: the picture a parameter sweep produces.

Cells are laid out row by row (y values down, x values across) with a thin gap between them; the x
labels ("cfg 7.5") sit in a band above the columns and the y labels ("seed 2") in a band left of the
rows. The band sizes come from the text, so the geometry is a pure function of the cell size and the
label texts (`grid_layout`), which is what tests and callers use to find the cells again.

Pure numpy + Pillow (no torch), so anything may import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)


@dataclass(frozen=True)
class GridLayout:
    columns: int
    rows: int
    cell_w: int
    cell_h: int
    left: int  # the y-label band's width (0 without y labels)
    top: int  # the x-label band's height
    gap: int
    font_size: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the whole grid image."""
        return (
            self.left + self.columns * self.cell_w + (self.columns - 1) * self.gap,
            self.top + self.rows * self.cell_h + (self.rows - 1) * self.gap,
        )

    def cell_origin(self, column: int, row: int) -> tuple[int, int]:
        return self.left + column * (self.cell_w + self.gap), self.top + row * (self.cell_h + self.gap)


Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def grid_layout(
    columns: int, rows: int, cell_w: int, cell_h: int, x_labels: Sequence[str], y_labels: Sequence[str]
) -> GridLayout:
    """Where everything goes. The font scales with the cell (legible on 64 px cells and on 1024 px ones)."""
    font_size = max(10, min(48, cell_w // 10))
    font = _font(font_size)
    pad = max(3, font_size // 3)
    line = font.getbbox("Ag")[3] + 2
    top = line + 2 * pad
    left = 0
    if y_labels:
        left = max(int(font.getlength(label)) for label in y_labels) + 2 * pad
    gap = max(2, cell_w // 128)
    return GridLayout(columns, rows, cell_w, cell_h, left, top, gap, font_size)


def draw_grid(
    cells: Sequence[Sequence[np.ndarray]], x_labels: Sequence[str], y_labels: Sequence[str] = ()
) -> tuple[np.ndarray, GridLayout]:
    """`cells[row][column]` uint8 [H, W, 3] images (all the size of the first) → the labelled grid.

    `y_labels` empty means a single row without a label band on the left.
    """
    rows, columns = len(cells), len(cells[0]) if cells else 0
    if not rows or not columns or any(len(r) != columns for r in cells):
        raise ValueError("a grid needs at least one cell and the same number of cells in every row")
    if len(x_labels) != columns or (y_labels and len(y_labels) != rows):
        raise ValueError("one label per column (and per row, when rows are labelled)")
    cell_h, cell_w = cells[0][0].shape[:2]
    lay = grid_layout(columns, rows, cell_w, cell_h, x_labels, y_labels)
    canvas = Image.new("RGB", lay.size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font(lay.font_size)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            img = Image.fromarray(np.asarray(cell, dtype=np.uint8)[..., :3])
            if img.size != (cell_w, cell_h):
                img = img.resize((cell_w, cell_h), Image.Resampling.LANCZOS)
            canvas.paste(img, lay.cell_origin(c, r))
    for c, label in enumerate(x_labels):
        x, _ = lay.cell_origin(c, 0)
        _centered(draw, (x + cell_w / 2, lay.top / 2), label, font)
    for r, label in enumerate(y_labels):
        _, y = lay.cell_origin(0, r)
        _centered(draw, (lay.left / 2, y + cell_h / 2), label, font)
    return np.asarray(canvas), lay


def _centered(draw: ImageDraw.ImageDraw, center: tuple[float, float], text: str, font: Font) -> None:
    """Centre by the text's own box (Pillow's anchors do not work with the bitmap fallback font)."""
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    draw.text((center[0] - (x1 - x0) / 2 - x0, center[1] - (y1 - y0) / 2 - y0), text, fill=TEXT, font=font)
