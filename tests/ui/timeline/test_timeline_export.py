"""The timeline GIF is exported at the image's size with σ drawn in a font that has it (issue 10, bug 5).

Before: 258×142 px frames (two 4× latent previews side by side) with σ in Pillow's built-in font, which
has no σ and draws a box. The panel is driven by clicking its real Export button; the save dialog is the
module's `ask_export_path`, replaced here so the test never blocks on a modal dialog.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetrics

import ui.panels.timeline as timeline_panel
from ui.images import qimage_from_array, qimage_to_array
from ui.panels.timeline import TimelinePanel
from ui.panels.timeline_export import caption_font, has_glyphs, render_frame

STEPS = 3


def synthetic_record(width: int, height: int) -> dict[str, Any]:
    """A recorded timeline as the sampler stores it, with previews at latent size (image / 8)."""
    rng = np.random.default_rng(0)
    h, w = height // 8, width // 8
    frames = []
    for step in range(STEPS + 1):
        frames.append(
            {
                "step": step,
                "sigma": [14.6, 4.1, 0.9, 0.0][step],
                "t": [999.0, 700.0, 300.0, 0.0][step],
                "preview_x": rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
                "preview_denoised": None if step == 0 else np.full((h, w, 3), 60 * step, dtype=np.uint8),
            }
        )
    return {"frames": frames, "latent_scale": 0.18215, "image_size": [width, height]}


@pytest.fixture
def panel(qtbot: Any) -> TimelinePanel:
    p = TimelinePanel()
    p.resize(560, 420)
    qtbot.addWidget(p)
    p.show()
    qtbot.waitExposed(p)
    return p


def click_export(qtbot: Any, panel: TimelinePanel, monkeypatch: pytest.MonkeyPatch, path: Path) -> list[str]:
    asked: list[str] = []

    def answer(parent: Any) -> str:
        asked.append("asked")
        return str(path)

    monkeypatch.setattr(timeline_panel, "ask_export_path", answer)
    messages: list[str] = []
    panel.message.connect(lambda level, text: messages.append(f"{level}: {text}"))
    qtbot.mouseClick(panel.export_button, Qt.MouseButton.LeftButton)
    assert asked == ["asked"]
    return messages


@pytest.mark.parametrize(("width", "height"), [(96, 64), (256, 256)])
def test_export_button_writes_frames_at_the_images_size(
    qtbot: Any, panel: TimelinePanel, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, width: int, height: int
) -> None:
    panel.set_timeline(synthetic_record(width, height), node_id=3, title="KSampler")
    path = tmp_path / "timeline.gif"
    messages = click_export(qtbot, panel, monkeypatch, path)
    assert messages == [f"info: timeline exported: {STEPS + 1} frames to {path}"]
    with Image.open(path) as gif:
        assert gif.n_frames == STEPS + 1
        sizes = set()
        for i in range(gif.n_frames):
            gif.seek(i)
            sizes.add(gif.size)
        assert sizes == {(width, height)}


def test_a_decoded_step_is_exported_as_decoded(
    qtbot: Any, panel: TimelinePanel, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    record = synthetic_record(128, 128)
    panel.set_timeline(record, node_id=3)
    red = np.zeros((128, 128, 3), dtype=np.uint8)
    red[..., 0] = 220
    panel._decoded[STEPS] = qimage_from_array(red)  # what "Decode with VAE" leaves for the shown step
    path = tmp_path / "timeline.gif"
    click_export(qtbot, panel, monkeypatch, path)
    with Image.open(path) as gif:
        gif.seek(STEPS)
        last = np.asarray(gif.convert("RGB"))
    body = last[40:80, 10:60]  # under the caption, left of the x_t inset
    assert abs(float(body[..., 0].mean()) - 220) < 8 and float(body[..., 1:].mean()) < 8


def test_the_caption_font_has_sigma_or_the_caption_spells_it_out(panel: TimelinePanel) -> None:
    record = synthetic_record(128, 128)
    frame = record["frames"][2]
    image, text = render_frame(frame, STEPS, (128, 128))
    assert image.size().width() == 128 and image.size().height() == 128
    font, shown = caption_font(text, 12)
    assert shown == text
    if "σ" in shown:
        assert QFontMetrics(font).inFontUcs4(ord("σ"))
        assert has_glyphs(font, shown)
    else:
        assert "sigma" in shown
    # Something was drawn in the caption band: light text on the dark band.
    band = qimage_to_array(image)[:10]
    assert band.max() > 200


def test_without_any_font_with_sigma_the_caption_says_sigma(monkeypatch: pytest.MonkeyPatch, qapp: Any) -> None:
    import ui.panels.timeline_export as export

    monkeypatch.setattr(export, "has_glyphs", lambda font, text: "σ" not in text)
    font, shown = export.caption_font("step 1/3   t 700   σ 4.100", 12)
    assert shown == "step 1/3   t 700   sigma 4.100"
    assert isinstance(font, QFont)
