"""The mask editor in the real window: opened from a Load Image node's context menu (clicked with the
mouse), painted with real mouse strokes, saved; checked on the written PNG's alpha, the node's value
and its undo, and on the MASK that Load Image then gives the sampler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QContextMenuEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QMenu, QMessageBox

from app.settings import Settings
from graph_engine import Graph
from graph_engine.executor import Executor
from graph_engine.plan import make_plan
from nodes import builtin_registry
from nodes.folders import input_dir
from ui import theme
from ui.autosave import AutosaveStore
from ui.main_window import MainWindow
from ui.mask_editor import MARK_KEY, MaskEditorDialog, mask_alpha

LEFT = Qt.MouseButton.LeftButton
NO_MOD = Qt.KeyboardModifier.NoModifier
CTRL = Qt.KeyboardModifier.ControlModifier
W, H = 64, 48
ROOT = Path(__file__).parents[3]


@pytest.fixture
def window(qtbot: Any, tmp_path: Path, sdgraph_home: Path) -> MainWindow:
    store = AutosaveStore(sdgraph_home / "autosave")
    store.start_session()
    win = MainWindow(builtin_registry(), Settings(output_dir=str(tmp_path / "out")), autosave=store)
    qtbot.addWidget(win, before_close_func=lambda w: setattr(w, "prompt_on_close", False))
    win.resize(1000, 760)
    win.show()
    qtbot.waitExposed(win)
    return win


def write_photo(name: str = "photo.png") -> np.ndarray:
    """An opaque RGB gradient in the input folder (every pixel a different colour)."""
    folder = input_dir()
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:H, 0:W]
    rgb = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(folder / name)
    return rgb


def load_image_graph(window: MainWindow, image: str) -> int:
    graph = Graph()
    nid = graph.add_node("LoadImage", {"image": image}, pos=(0, 0)).id
    window.graph.replace_with(graph)
    window.view.resetTransform()
    window.view.centerOn(150, 100)
    return nid


def right_click(view: Any, scene_pos: QPointF) -> QMenu:
    """A right click on the canvas, and the context menu it opens (QTest sends no context-menu event)."""
    w = view.viewport()
    p = view.mapFromScene(scene_pos)
    QTest.mouseMove(w, p)
    QTest.mouseClick(w, Qt.MouseButton.RightButton, NO_MOD, p)
    QApplication.sendEvent(w, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, p, w.mapToGlobal(p)))
    menu = QApplication.activePopupWidget()
    assert isinstance(menu, QMenu) and menu is view.active_menu
    return menu


def node_menu(window: MainWindow, nid: int) -> QMenu:
    item = window.view.node_item(nid)
    return right_click(window.view, item.mapToScene(QPointF(40, theme.TITLE_HEIGHT / 2)))


def open_from_menu(window: MainWindow, qtbot: Any, nid: int) -> MaskEditorDialog:
    """Right-click the node, click "Open in Mask Editor…" with the mouse, wait for the dialog."""
    menu = node_menu(window, nid)
    qtbot.waitUntil(menu.isVisible)
    action = next(a for a in menu.actions() if a.text() == "Open in Mask Editor…")
    assert action.isEnabled()
    pos = menu.actionGeometry(action).center()
    QTest.mouseMove(menu, pos)
    QTest.mouseClick(menu, LEFT, NO_MOD, pos)
    qtbot.waitUntil(lambda: any(d.isVisible() for d in window.findChildren(MaskEditorDialog)))
    (dialog,) = [d for d in window.findChildren(MaskEditorDialog) if d.isVisible()]
    qtbot.waitExposed(dialog)
    return dialog


def stroke(dialog: MaskEditorDialog, points: list[tuple[float, float]]) -> None:
    """Press, move through `points` (image pixels) and release, as real mouse events on the canvas."""
    canvas = dialog.canvas
    at = [canvas.to_widget(QPointF(x, y)).toPoint() for x, y in points]
    QTest.mouseMove(canvas, at[0])
    QTest.mousePress(canvas, LEFT, NO_MOD, at[0])
    for p in at[1:]:
        QTest.mouseMove(canvas, p)  # QTest sends the held button with the move
    QTest.mouseRelease(canvas, LEFT, NO_MOD, at[-1])


def click_button(dialog: MaskEditorDialog, which: QDialogButtonBox.StandardButton) -> None:
    button = dialog.buttons.button(which)
    QTest.mouseClick(button, LEFT, NO_MOD, button.rect().center())


def answer(qtbot: Any, dialog: MaskEditorDialog, which: QMessageBox.StandardButton) -> None:
    """Click `which` in the "discard the mask?" question with the mouse."""
    qtbot.waitUntil(lambda: dialog.discard_box is not None and dialog.discard_box.isVisible())
    box = dialog.discard_box
    assert box is not None and "Discard" in box.text()
    button = box.button(which)
    QTest.mouseClick(button, LEFT, NO_MOD, button.rect().center())
    qtbot.waitUntil(lambda: dialog.discard_box is None)


def alpha_of(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "RGBA"
        return np.asarray(img)[..., 3]


def paint_horizontal_stroke(dialog: MaskEditorDialog, y: int = 24) -> None:
    """At 4× zoom, a size-8 brush from x=10 to x=50 along row `y`."""
    dialog.canvas.set_zoom(4.0, QPointF(0, 0))
    dialog.canvas.offset = QPointF(20, 20)  # image pixel (x, y) is widget (20 + 4x, 20 + 4y)
    assert dialog.canvas.to_widget(QPointF(10, y)) == QPointF(60, 20 + 4 * y)
    dialog.size_slider.setValue(8)
    stroke(dialog, [(10 + 5 * i, y) for i in range(9)])


def test_paint_save_undo_and_the_mask_reaches_load_image(window: MainWindow, qtbot: Any, tmp_path: Path) -> None:
    rgb = write_photo()
    nid = load_image_graph(window, "photo.png")
    dialog = open_from_menu(window, qtbot, nid)
    assert dialog.windowTitle() == "Mask Editor — photo.png"
    assert not mask_alpha(dialog.canvas.mask).any()  # an opaque picture has no mask yet

    paint_horizontal_stroke(dialog)
    # what the canvas shows: the overlay colour over the painted pixels only
    shown = dialog.canvas.grab().toImage()
    painted, away = shown.pixelColor(QPoint(20 + 4 * 30, 20 + 4 * 24)), shown.pixelColor(QPoint(20 + 4 * 30, 20 + 4))
    assert abs(away.red() - 30 * 4) <= 4  # the picture itself
    assert abs(painted.red() - (0.55 * 255 + 0.45 * 30 * 4)) <= 6  # tinted by the overlay
    undo_count = window.undo_stack.count()
    click_button(dialog, QDialogButtonBox.StandardButton.Save)
    qtbot.waitUntil(lambda: not dialog.isVisible())

    saved = input_dir() / "photo_mask.png"
    alpha = alpha_of(saved)
    assert alpha.shape == (H, W)
    assert (alpha[22:27, 10:51] == 0).all() and (alpha[21:28, 12:49] == 0).all()  # within the 4-pixel radius
    assert (alpha[:18] == 255).all() and (alpha[31:] == 255).all() and (alpha[:, :5] == 255).all()
    assert (np.asarray(Image.open(saved))[..., :3] == rgb).all()  # colours kept under the mask too
    assert Image.open(saved).info[MARK_KEY] == "photo.png"
    assert (input_dir() / "photo.png").stat().st_size > 0 and alpha_of(saved).min() == 0
    with Image.open(input_dir() / "photo.png") as original:
        assert original.mode == "RGB"  # the original is untouched

    assert window.graph.nodes[nid].values["image"] == "photo_mask.png"
    assert window.undo_stack.count() == undo_count + 1
    # the mask reaches whatever reads Load Image's MASK: 1 where painted, 0 elsewhere
    result = Executor(builtin_registry(), output_dir=tmp_path / "run").run(window.graph, targets=[nid])
    assert result.status == "done", result.error
    image, mask = result.outputs[nid]
    assert tuple(mask.shape) == (1, H, W) and tuple(image.shape) == (1, H, W, 3)
    assert (mask[0, 22:27, 10:51] == 1).all() and (mask[0, 21:28, 12:49] == 1).all()
    assert (mask[0, :18] == 0).all() and (mask[0, 31:] == 0).all()

    # the offscreen platform does not hand activation back to the window when a dialog closes
    window.windowHandle().requestActivate()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key.Key_Z, CTRL)
    assert window.graph.nodes[nid].values["image"] == "photo.png"
    QTest.keyClick(window.view, Qt.Key.Key_Z, CTRL | Qt.KeyboardModifier.ShiftModifier)
    assert window.graph.nodes[nid].values["image"] == "photo_mask.png"


def test_reopened_mask_erases_in_place_and_the_cache_key_follows_the_file(window: MainWindow, qtbot: Any) -> None:
    write_photo()
    nid = load_image_graph(window, "photo.png")
    dialog = open_from_menu(window, qtbot, nid)
    paint_horizontal_stroke(dialog)
    click_button(dialog, QDialogButtonBox.StandardButton.Save)
    qtbot.waitUntil(lambda: not dialog.isVisible())
    assert window.graph.nodes[nid].values["image"] == "photo_mask.png"
    executor = Executor(builtin_registry())
    before = executor.signatures(make_plan(window.graph, builtin_registry(), [nid]))[nid]

    dialog = open_from_menu(window, qtbot, nid)
    shown = mask_alpha(dialog.canvas.mask)
    assert (shown[22:27, 10:51] == 255).all() and (shown[:18] == 0).all()  # the saved mask comes back
    QTest.keyClick(dialog, Qt.Key.Key_E)  # the eraser
    assert dialog.eraser_button.isChecked()
    dialog.canvas.set_zoom(4.0, QPointF(0, 0))
    dialog.canvas.offset = QPointF(20, 20)
    dialog.size_slider.setValue(12)
    stroke(dialog, [(30, 24), (30, 24), (40, 24)])
    undo_count = window.undo_stack.count()
    click_button(dialog, QDialogButtonBox.StandardButton.Save)
    qtbot.waitUntil(lambda: not dialog.isVisible())

    # sdgraph's own masked copy is saved in place: no third file, the node's value (and undo) unchanged
    assert sorted(p.name for p in input_dir().iterdir()) == ["photo.png", "photo_mask.png"]
    assert window.graph.nodes[nid].values["image"] == "photo_mask.png"
    assert window.undo_stack.count() == undo_count
    alpha = alpha_of(input_dir() / "photo_mask.png")
    assert (alpha[20:29, 30:41] == 255).all()  # erased
    assert (alpha[21:28, 10:20] == 0).all()  # the rest of the stroke is still masked
    after = executor.signatures(make_plan(window.graph, builtin_registry(), [nid]))[nid]
    assert after != before  # same name, new content: Load Image runs again


def test_undo_invert_clear_brush_keys_and_cancel(window: MainWindow, qtbot: Any) -> None:
    write_photo()
    nid = load_image_graph(window, "photo.png")
    dialog = open_from_menu(window, qtbot, nid)
    canvas = dialog.canvas

    size = dialog.size_slider.value()
    QTest.keyClick(dialog, Qt.Key.Key_BracketRight)
    assert dialog.size_slider.value() > size and canvas.brush_size == dialog.size_slider.value()
    QTest.keyClick(dialog, Qt.Key.Key_BracketLeft)
    QTest.keyClick(dialog, Qt.Key.Key_BracketLeft)
    assert dialog.size_slider.value() < size

    paint_horizontal_stroke(dialog)
    assert mask_alpha(canvas.mask)[24, 30] == 255
    QTest.keyClick(dialog, Qt.Key.Key_Z, CTRL)  # undo inside the dialog: the stroke goes
    assert not mask_alpha(canvas.mask).any()
    QTest.keyClick(dialog, Qt.Key.Key_Z, CTRL | Qt.KeyboardModifier.ShiftModifier)
    assert mask_alpha(canvas.mask)[24, 30] == 255

    QTest.mouseClick(dialog.invert_button, LEFT)
    inverted = mask_alpha(canvas.mask)
    assert inverted[24, 30] == 0 and inverted[5, 5] == 255 and inverted[40, 60] == 255
    QTest.mouseClick(dialog.clear_button, LEFT)
    assert not mask_alpha(canvas.mask).any()
    QTest.mouseClick(dialog.undo_button, LEFT)
    assert (mask_alpha(canvas.mask) == inverted).all()

    QTest.mouseClick(dialog.fit_button, LEFT)
    assert canvas.scale > 4.0 or canvas.scale == pytest.approx(4.0)  # a 64×48 picture is shown at most 4×
    centre = canvas.to_widget(QPointF(W / 2, H / 2))
    assert abs(centre.x() - canvas.width() / 2) < 1 and abs(centre.y() - canvas.height() / 2) < 1

    undo_count = window.undo_stack.count()
    click_button(dialog, QDialogButtonBox.StandardButton.Cancel)  # asks first: something was painted
    answer(qtbot, dialog, QMessageBox.StandardButton.Cancel)
    assert dialog.isVisible() and (mask_alpha(canvas.mask) == inverted).all()  # still editing
    click_button(dialog, QDialogButtonBox.StandardButton.Cancel)
    answer(qtbot, dialog, QMessageBox.StandardButton.Discard)
    qtbot.waitUntil(lambda: not dialog.isVisible())
    assert sorted(p.name for p in input_dir().iterdir()) == ["photo.png"]
    assert window.graph.nodes[nid].values["image"] == "photo.png"
    assert window.undo_stack.count() == undo_count


def test_painting_at_the_fitted_zoom_lands_on_the_same_image_pixels(window: MainWindow, qtbot: Any) -> None:
    write_photo()
    nid = load_image_graph(window, "photo.png")
    dialog = open_from_menu(window, qtbot, nid)
    canvas = dialog.canvas
    canvas.fit()
    assert canvas.scale != 1.0
    dialog.size_slider.setValue(4)
    stroke(dialog, [(8, 8), (8, 8)])
    alpha = mask_alpha(canvas.mask)
    ys, xs = np.nonzero(alpha > 128)
    assert abs(xs.mean() - 8) <= 1 and abs(ys.mean() - 8) <= 1 and xs.max() - xs.min() <= 6
    QTest.keyClick(dialog, Qt.Key.Key_Escape)  # Esc cancels, after asking
    answer(qtbot, dialog, QMessageBox.StandardButton.Discard)
    qtbot.waitUntil(lambda: not dialog.isVisible())
    assert sorted(p.name for p in input_dir().iterdir()) == ["photo.png"]


def test_a_node_without_an_image_says_so(window: MainWindow, qtbot: Any) -> None:
    nid = load_image_graph(window, "nowhere.png")
    menu = node_menu(window, nid)
    action = next(a for a in menu.actions() if a.text() == "Open in Mask Editor…")
    assert not action.isEnabled() and "nowhere.png" in action.toolTip()
    menu.close()

    edit = next(a for a in window.edit_menu.actions() if a.objectName() == "edit.mask_editor")
    window.view.select_nodes([])
    assert not edit.isEnabled()
    window.view.select_nodes([nid])
    assert edit.isEnabled()
    edit.trigger()  # the node is selected but its file is missing: a message, no dialog
    qtbot.waitUntil(lambda: any(b.isVisible() for b in window.findChildren(QMessageBox)))
    (box,) = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    assert "nowhere.png" in box.text()
    assert not window.findChildren(MaskEditorDialog)
    box.close()


def test_the_edit_menu_opens_the_selected_load_image(window: MainWindow, qtbot: Any) -> None:
    write_photo()
    nid = load_image_graph(window, "photo.png")
    edit = next(a for a in window.edit_menu.actions() if a.objectName() == "edit.mask_editor")
    window.view.select_nodes([nid])
    edit.trigger()
    qtbot.waitUntil(lambda: any(d.isVisible() for d in window.findChildren(MaskEditorDialog)))
    (dialog,) = window.findChildren(MaskEditorDialog)
    assert dialog.node_id == nid
    dialog.reject()


def test_the_inpaint_template_takes_the_painted_mask(window: MainWindow, qtbot: Any, tmp_path: Path) -> None:
    """Open the shipped inpaint template, choose a picture, paint, save: its sampler's encoder reads the
    MASK of the masked file, and the template's note tells a person how."""
    write_photo()
    assert window.open_template(ROOT / "workflows" / "inpaint.json")
    qtbot.wait(50)  # the new document fits its view once shown; the test then places the view itself
    graph = window.graph
    (load,) = [n.id for n in graph.nodes.values() if n.type == "LoadImage"]
    (enc,) = [n.id for n in graph.nodes.values() if n.type == "VAEEncodeForInpaint"]
    assert graph.link_into(enc, "mask").src_node == load
    notes = " ".join(str(n.values.get("text", "")) for n in graph.nodes.values() if n.type == "Note")
    assert "Mask Editor" in notes

    from ui.commands import set_value_command

    window.undo_stack.push(set_value_command(graph, load, "image", "photo.png"))  # as the image picker does
    window.view.resetTransform()
    window.view.centerOn(window.view.node_item(load).sceneBoundingRect().center())
    dialog = open_from_menu(window, qtbot, load)
    paint_horizontal_stroke(dialog)
    click_button(dialog, QDialogButtonBox.StandardButton.Save)
    qtbot.waitUntil(lambda: not dialog.isVisible())
    assert graph.nodes[load].values["image"] == "photo_mask.png"
    result = Executor(builtin_registry(), output_dir=tmp_path / "run").run(graph, targets=[load])
    assert result.status == "done", result.error
    assert (result.outputs[load][1][0, 22:27, 10:51] == 1).all()


def test_save_never_overwrites_and_stays_beside_the_picture(window: MainWindow, qtbot: Any) -> None:
    """A picture in a subfolder gets its masked copy in that subfolder; a name already taken (here by
    an unrelated file) is left alone and the next free number is used."""
    (input_dir() / "sub").mkdir(parents=True)
    write_photo("sub/photo.png")
    (input_dir() / "sub" / "photo_mask.png").write_bytes(b"someone else's file")
    nid = load_image_graph(window, "sub/photo.png")
    dialog = open_from_menu(window, qtbot, nid)
    paint_horizontal_stroke(dialog)
    click_button(dialog, QDialogButtonBox.StandardButton.Save)
    qtbot.waitUntil(lambda: not dialog.isVisible())
    assert (input_dir() / "sub" / "photo_mask.png").read_bytes() == b"someone else's file"
    assert window.graph.nodes[nid].values["image"] == "sub/photo_mask_2.png"
    assert alpha_of(input_dir() / "sub" / "photo_mask_2.png")[24, 30] == 0
    assert sorted(p.name for p in input_dir().rglob("*") if p.is_file()) == [
        "photo.png",
        "photo_mask.png",
        "photo_mask_2.png",
    ]


def test_a_soft_brush_fades_towards_its_edge(window: MainWindow, qtbot: Any) -> None:
    write_photo()
    nid = load_image_graph(window, "photo.png")
    dialog = open_from_menu(window, qtbot, nid)
    dialog.hardness_slider.setValue(0)
    dialog.canvas.set_zoom(4.0, QPointF(0, 0))
    dialog.canvas.offset = QPointF(20, 20)
    dialog.size_slider.setValue(20)
    stroke(dialog, [(30, 24), (30, 24)])
    alpha = mask_alpha(dialog.canvas.mask)
    centre, half, edge = int(alpha[24, 30]), int(alpha[24, 35]), int(alpha[24, 39])
    assert centre > half > edge and centre > 200 and 0 < half < 220
    assert alpha[24, 42] == 0  # beyond the 10-pixel radius
    dialog.reject()
    answer(qtbot, dialog, QMessageBox.StandardButton.Discard)
    assert not dialog.isVisible()
