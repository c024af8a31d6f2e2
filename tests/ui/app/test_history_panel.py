"""The History dock on the real window: runs are recorded, shown as thumbnails, filtered, reopened and deleted.

Runs are real runs through the window's RunController on small pure-Python nodes shaped like a
txt2img graph (a loader naming a checkpoint, a prompt feeding a renderer's `positive` input, the
renderer writing a PNG whose colour encodes its prompt), so what the history extracts (model names,
the positive prompt) comes from the same workflow document a real run records. Everything the user
does goes through real mouse clicks and key presses on the panel's widgets; message boxes are
answered by clicking their buttons.
"""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPoint, Qt, QTimer, QUrl
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication, QMessageBox, QTabBar

from app.history import HistoryStore, RecordedImage, RunRecord
from app.settings import Settings
from graph_engine import (
    ExecutionContext,
    Graph,
    NodeOutput,
    NodeRegistry,
    Output,
    Socket,
    String,
    node,
)
from graph_engine.serialization import graph_to_dict
from ui.autosave import AutosaveStore
from ui.commands import set_values_command
from ui.main_window import MainWindow
from ui.panels.history import PATH_ROLE, RUN_ID_ROLE, HistoryPanel, thumbnail_png


@node("ToyCheckpoint", category="test", inputs=[String("ckpt_name", "toy-a.safetensors")], outputs=[Output("MODEL")])
def toy_checkpoint(ctx: ExecutionContext, ckpt_name: str) -> tuple[str]:
    return (ckpt_name,)


@node("ToyPrompt", category="test", inputs=[String("text", "", multiline=True)], outputs=[Output("CONDITIONING")])
def toy_prompt(ctx: ExecutionContext, text: str) -> tuple[str]:
    return (text,)


def prompt_color(text: str) -> tuple[int, int, int]:
    h = zlib.crc32(text.encode())
    return (h & 0xFF, (h >> 8) & 0xFF, (h >> 16) & 0xFF)


@node(
    "ToyRender",
    category="test",
    inputs=[Socket("model", "MODEL"), Socket("positive", "CONDITIONING"), Socket("negative", "CONDITIONING")],
    output_node=True,
)
def toy_render(ctx: ExecutionContext, model: str, positive: str, negative: str) -> NodeOutput:
    """A 64×48 PNG in a colour derived from the prompt, reported the way SaveImage reports its files."""
    from PIL import Image

    out = Path(ctx.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"render_{len(list(out.glob('*.png'))):03}.png"
    Image.new("RGB", (64, 48), prompt_color(positive)).save(path)
    return NodeOutput((), {"images": [{"path": str(path), "filename": path.name, "type": "output"}]})


def registry() -> NodeRegistry:
    return NodeRegistry([toy_checkpoint, toy_prompt, toy_render])


def txt2img(prompt: str, model: str = "toy-a.safetensors") -> Graph:
    g = Graph()
    ckpt = g.add_node("ToyCheckpoint", {"ckpt_name": model}, pos=(0, 0))
    pos = g.add_node("ToyPrompt", {"text": prompt}, pos=(250, 0))
    neg = g.add_node("ToyPrompt", {"text": "blurry, watermark"}, pos=(250, 200))
    render = g.add_node("ToyRender", {}, pos=(500, 0))
    g.add_link(ckpt.id, "MODEL", render.id, "model", "MODEL")
    g.add_link(pos.id, "CONDITIONING", render.id, "positive", "CONDITIONING")
    g.add_link(neg.id, "CONDITIONING", render.id, "negative", "CONDITIONING")
    return g


def make_window(qtbot: Any, tmp_path: Path, home: Path) -> MainWindow:
    store = AutosaveStore(home / "autosave")
    store.start_session()
    win = MainWindow(
        registry(), Settings(output_dir=str(tmp_path / "out")), autosave=store, templates_dir=tmp_path / "t"
    )
    qtbot.addWidget(win, before_close_func=lambda w: setattr(w, "prompt_on_close", False))
    win.show()
    qtbot.waitExposed(win)
    return win


@pytest.fixture
def window(qtbot: Any, tmp_path: Path, sdgraph_home: Path) -> MainWindow:
    return make_window(qtbot, tmp_path, sdgraph_home)


def answer_next_box(button: QMessageBox.StandardButton, seen: list[str]) -> None:
    """When the next modal message box opens, record its text and click `button` on it."""

    def poll() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            seen.append(box.text())
            box.button(button).click()
        else:
            QTimer.singleShot(10, poll)

    QTimer.singleShot(0, poll)


def show_history_tab(qtbot: Any, win: MainWindow) -> HistoryPanel:
    """Click the "History" tab of the dock area it shares with Images."""
    for bar in win.findChildren(QTabBar):
        for i in range(bar.count()):
            if bar.tabText(i) == "History" and bar.isVisible():
                qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(i).center())
                break
    qtbot.waitUntil(lambda: win.history.gallery.isVisible())
    return win.history


def run_prompt(win: MainWindow, qloop: asyncio.AbstractEventLoop, prompt: str, model: str | None = None) -> None:
    """Edit the positive prompt (and model) as one undo step each, then run: a new image is written."""
    graph = win.graph
    pos = next(n.id for n in graph.nodes.values() if n.type == "ToyPrompt" and n.values["text"] != "blurry, watermark")
    win.undo_stack.push(set_values_command(graph, [(pos, "text")], prompt, "prompt"))
    if model is not None:
        ckpt = next(n.id for n in graph.nodes.values() if n.type == "ToyCheckpoint")
        win.undo_stack.push(set_values_command(graph, [(ckpt, "ckpt_name")], model, "model"))
    result = qloop.run_until_complete(win.run())
    assert result is not None and result.status == "done"


def item_center(panel: HistoryPanel, row: int) -> QPoint:
    return panel.gallery.visualRect(panel.model.index(row, 0)).center()


def double_click(qtbot: Any, panel: HistoryPanel, row: int) -> None:
    """A person's double-click: a click, then the double-click event (QTest's mouseDClick alone skips
    the first press, which item views need to recognise the item)."""
    viewport, at = panel.gallery.viewport(), item_center(panel, row)
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=at)
    qtbot.mouseDClick(viewport, Qt.MouseButton.LeftButton, pos=at)


def row_of(panel: HistoryPanel, run_id: int) -> int:
    return next(r for r in range(panel.item_count()) if panel.model.index(r, 0).data(RUN_ID_ROLE) == run_id)


def thumb_color(panel: HistoryPanel, row: int) -> tuple[int, int, int]:
    icon = panel.model.index(row, 0).data(Qt.ItemDataRole.DecorationRole)
    pixmap = icon.pixmap(128, 128)
    assert not pixmap.isNull() and max(pixmap.width(), pixmap.height()) <= 128
    color = pixmap.toImage().pixelColor(pixmap.width() // 2, pixmap.height() // 2)
    return (color.red(), color.green(), color.blue())


def test_runs_are_kept_filtered_reopened_deleted_and_still_there_after_a_restart(
    window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop, tmp_path: Path, sdgraph_home: Path
) -> None:
    window.set_document(txt2img("a red fox in the snow"), None)
    result = qloop.run_until_complete(window.run())
    assert result is not None and result.status == "done"
    fox_graph = graph_to_dict(window.graph)
    run_prompt(window, qloop, "a blue whale at sea", model="toy-b.safetensors")

    panel = show_history_tab(qtbot, window)
    assert panel.item_count() == 2
    whale, fox = (panel.model.index(r, 0).data(RUN_ID_ROLE) for r in range(2))  # newest first
    assert thumb_color(panel, 0) == prompt_color("a blue whale at sea")  # made from the run's own image
    assert thumb_color(panel, 1) == prompt_color("a red fox in the snow")
    assert [Path(p).parent for p in panel.image_paths()] == [tmp_path / "out"] * 2
    assert "a blue whale at sea" in panel.model.index(0, 0).data(Qt.ItemDataRole.ToolTipRole)

    # Typing in the filter narrows the gallery to the runs whose positive prompt has the words.
    qtbot.mouseClick(panel.filter_edit, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(panel.filter_edit, "FOX")
    assert panel.item_count() == 1 and panel.model.index(0, 0).data(RUN_ID_ROLE) == fox
    qtbot.keyClicks(panel.filter_edit, " whale")  # both words must appear
    assert panel.item_count() == 0
    panel.filter_edit.selectAll()
    qtbot.keyClick(panel.filter_edit, Qt.Key.Key_Backspace)
    assert panel.item_count() == 2
    qtbot.keyClicks(panel.filter_edit, "watermark")  # the negative prompt is not what a run is "of"
    assert panel.item_count() == 0
    panel.filter_edit.selectAll()
    qtbot.keyClick(panel.filter_edit, Qt.Key.Key_Backspace)

    # The model filter offers the models the runs used.
    combo = panel.model_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["All models", "toy-a.safetensors", "toy-b.safetensors"]
    qtbot.keyClick(combo, Qt.Key.Key_Down)
    assert combo.currentText() == "toy-a.safetensors"
    assert [panel.model.index(r, 0).data(RUN_ID_ROLE) for r in range(panel.item_count())] == [fox]
    qtbot.keyClick(combo, Qt.Key.Key_Up)
    assert panel.item_count() == 2
    qtbot.keyClick(panel.date_combo, Qt.Key.Key_Down)  # "Today": both ran just now
    assert panel.date_combo.currentText() == "Today" and panel.item_count() == 2

    # Double-clicking the fox reopens its graph; the edited document is not dropped without asking.
    assert window.is_dirty()
    seen: list[str] = []
    answer_next_box(QMessageBox.StandardButton.Cancel, seen)
    double_click(qtbot, panel, row_of(panel, fox))
    assert seen and "unsaved changes" in seen[0]
    assert window.graph.node(2).values["text"] == "a blue whale at sea"  # cancelled: nothing changed
    answer_next_box(QMessageBox.StandardButton.Discard, seen)
    double_click(qtbot, panel, row_of(panel, fox))
    qtbot.waitUntil(lambda: window.graph.node(2).values["text"] == "a red fox in the snow")
    assert graph_to_dict(window.graph) == fox_graph == window.history_store.workflow(fox)
    assert window.path is None and not window.is_dirty()  # a new untitled document
    assert window.windowTitle().startswith("Untitled")

    # Delete (the key, on the selected image) asks, then forgets the run but keeps its file.
    whale_file = Path(panel.model.index(row_of(panel, whale), 0).data(PATH_ROLE))
    qtbot.mouseClick(panel.gallery.viewport(), Qt.MouseButton.LeftButton, pos=item_center(panel, row_of(panel, whale)))
    answer_next_box(QMessageBox.StandardButton.No, seen)
    qtbot.keyClick(panel.gallery, Qt.Key.Key_Delete)
    assert "Remove this run from the history?" in seen[-1]
    assert panel.item_count() == 2
    answer_next_box(QMessageBox.StandardButton.Yes, seen)
    qtbot.keyClick(panel.gallery, Qt.Key.Key_Delete)
    assert [panel.model.index(r, 0).data(RUN_ID_ROLE) for r in range(panel.item_count())] == [fox]
    assert whale_file.is_file()
    assert [combo.itemText(i) for i in range(combo.count())] == ["All models", "toy-a.safetensors"]

    # A new window on the same home folder (the next launch) shows what is left.
    window.close_without_prompt()
    again = make_window(qtbot, tmp_path, sdgraph_home)
    panel = show_history_tab(qtbot, again)
    assert [panel.model.index(r, 0).data(RUN_ID_ROLE) for r in range(panel.item_count())] == [fox]
    assert thumb_color(panel, 0) == prompt_color("a red fox in the snow")


def test_a_rerun_that_writes_nothing_new_adds_nothing(
    window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    window.set_document(txt2img("a cached prompt"), None)
    qloop.run_until_complete(window.run())
    result = qloop.run_until_complete(window.run())  # everything cached: no new image
    assert result is not None and result.status == "done" and not result.executed
    assert window.history.item_count() == 1


def test_open_file_hands_the_image_to_the_desktop(
    window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    window.set_document(txt2img("a file to open"), None)
    qloop.run_until_complete(window.run())
    panel = show_history_tab(qtbot, window)
    opened: list[QUrl] = []
    panel.open_url = lambda url: opened.append(url) or True
    assert not panel.open_file_button.isEnabled()  # nothing selected yet
    qtbot.mouseClick(panel.gallery.viewport(), Qt.MouseButton.LeftButton, pos=item_center(panel, 0))
    qtbot.mouseClick(panel.open_file_button, Qt.MouseButton.LeftButton)
    (path,) = panel.image_paths()
    assert [u.toLocalFile() for u in opened] == [path]

    Path(path).unlink()  # moved away since the run: say so instead of asking the desktop
    qtbot.mouseClick(panel.open_file_button, Qt.MouseButton.LeftButton)
    assert len(opened) == 1
    assert "no longer exists" in panel.status.text()


def test_the_open_graph_button_opens_the_selected_run(
    window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    window.set_document(txt2img("first"), None)
    qloop.run_until_complete(window.run())
    first = graph_to_dict(window.graph)
    window.set_document(txt2img("second"), None)
    qloop.run_until_complete(window.run())
    panel = show_history_tab(qtbot, window)
    qtbot.mouseClick(panel.gallery.viewport(), Qt.MouseButton.LeftButton, pos=item_center(panel, 1))
    qtbot.mouseClick(panel.open_graph_button, Qt.MouseButton.LeftButton)
    assert graph_to_dict(window.graph) == first


def test_thumbnails_are_read_only_for_the_items_on_screen(qtbot: Any, tmp_path: Path) -> None:
    """A long history opens without reading every thumbnail: the view asks only for what it paints."""
    image = QImage(300, 200, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.darkCyan)
    thumb = thumbnail_png(image)
    assert QImage.fromData(thumb).size().width() == 128
    store = HistoryStore(tmp_path / "h.sqlite3")
    for i in range(300):
        store.record(RunRecord({"nodes": []}, [RecordedImage(f"/x/{i}.png", 300, 200, 1, thumb)], started=float(i)))
    panel = HistoryPanel(store)
    qtbot.addWidget(panel)
    panel.resize(420, 360)
    panel.show()
    qtbot.waitExposed(panel)
    qtbot.waitUntil(lambda: panel.model.thumbnails_loaded > 0)
    assert panel.item_count() == 300
    first_screen = panel.model.thumbnails_loaded
    assert first_screen < 30
    panel.gallery.scrollToBottom()
    qtbot.waitUntil(lambda: panel.model.thumbnails_loaded > first_screen)
    assert panel.model.thumbnails_loaded < 60
    panel.detach()
    store.close()


def test_a_damaged_history_file_leaves_the_window_working(
    qtbot: Any, qloop: asyncio.AbstractEventLoop, tmp_path: Path, sdgraph_home: Path
) -> None:
    (sdgraph_home / "history.sqlite3").write_bytes(b"not a database" * 200)
    win = make_window(qtbot, tmp_path, sdgraph_home)
    assert win.history_store is None
    assert "History is off" in win.history.status.text() and "damaged" in win.history.status.text()
    assert not win.history.gallery.isEnabled()
    win.set_document(txt2img("still runs"), None)
    result = qloop.run_until_complete(win.run())
    assert result is not None and result.status == "done"
    assert (sdgraph_home / "history.sqlite3").read_bytes().startswith(b"not a database")  # left for the user


def test_the_list_changing_while_delete_asks_deletes_what_was_selected(
    window: MainWindow, qtbot: Any, qloop: asyncio.AbstractEventLoop
) -> None:
    """A run may finish (and the gallery be listed again) while the confirmation is open."""
    window.set_document(txt2img("keep me"), None)
    qloop.run_until_complete(window.run())
    window.set_document(txt2img("delete me"), None)
    qloop.run_until_complete(window.run())
    panel = show_history_tab(qtbot, window)
    doomed = panel.model.index(0, 0).data(RUN_ID_ROLE)
    qtbot.mouseClick(panel.gallery.viewport(), Qt.MouseButton.LeftButton, pos=item_center(panel, 0))

    def answer() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(10, answer)
            return
        panel.refresh()  # what recording a finished run does
        box.button(QMessageBox.StandardButton.Yes).click()

    QTimer.singleShot(0, answer)
    qtbot.keyClick(panel.gallery, Qt.Key.Key_Delete)
    assert panel.item_count() == 1
    assert panel.model.index(0, 0).data(RUN_ID_ROLE) != doomed
    assert window.history_store.workflow(doomed) is None


def test_a_new_run_keeps_the_selection_and_the_scroll_position(qtbot: Any, tmp_path: Path) -> None:
    image = QImage(64, 64, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.darkMagenta)
    thumb = thumbnail_png(image)
    store = HistoryStore(tmp_path / "h.sqlite3")
    for i in range(120):
        store.record(RunRecord({"nodes": []}, [RecordedImage(f"/x/{i}.png", 64, 64, 1, thumb)], started=float(i)))
    panel = HistoryPanel(store)
    qtbot.addWidget(panel)
    panel.resize(420, 400)
    panel.show()
    qtbot.waitExposed(panel)
    bar = panel.gallery.verticalScrollBar()
    bar.setValue(bar.maximum() // 2)
    qtbot.wait(20)
    row = panel.gallery.indexAt(QPoint(40, 40)).row()
    chosen = panel.model.index(row, 0).data(RUN_ID_ROLE)
    qtbot.mouseClick(panel.gallery.viewport(), Qt.MouseButton.LeftButton, pos=item_center(panel, row))
    scrolled = bar.value()
    assert scrolled > 0

    store.record(RunRecord({"nodes": []}, [RecordedImage("/x/new.png", 64, 64, 1, thumb)], started=1000.0))
    panel.refresh()  # what the window does when a run finishes
    assert panel.item_count() == 121
    assert panel.selected_run_ids() == [chosen]
    assert panel.gallery.currentIndex().data(RUN_ID_ROLE) == chosen
    assert bar.value() == scrolled
    panel.detach()
    store.close()
