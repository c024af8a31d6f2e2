"""The Models dock on the real window: model files by kind with family and size, dragged onto the canvas.

The model root holds tiny seeded models in the layouts users download (written by
`tests.support.model_root.write_flow_files`: FLUX.1 and Z-Image transformers, an SD3.5 checkpoint,
CLIP-L/-G, T5 and Qwen3 text encoders, the 16-channel VAE) plus a 4-channel VAE, a LoRA and a damaged
file written here as a few named tensors. Families are read from the real headers. Drops go to the
canvas viewport as Qt delivers them (DragEnter, DragMove, Drop) carrying the very QMimeData the
panel's tree hands Qt when a drag starts; clicks and key presses are real events on the widgets.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication

import nodes.folders
from app.settings import Settings
from nodes import builtin_registry
from ui.main_window import MainWindow
from ui.panels.models import PROBING, ModelsPanel, format_size

ROOT = Path(__file__).resolve().parents[3]


def _save(path: Path, tensors: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def write_vae(path: Path, channels: int) -> Path:
    """Just the tensor that tells a VAE's latent channels (the decoder's first convolution)."""
    import torch

    return _save(
        path, {"decoder.conv_in.weight": torch.zeros(8, channels, 3, 3), "decoder.conv_in.bias": torch.zeros(8)}
    )


def write_lora(path: Path) -> Path:
    import torch

    return _save(
        path,
        {
            "lora_unet_input_blocks_1_1_proj_in.lora_down.weight": torch.zeros(4, 32),
            "lora_unet_input_blocks_1_1_proj_in.lora_up.weight": torch.zeros(32, 4),
        },
    )


@pytest.fixture(scope="module")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.model_root import write_flow_files

    root = tmp_path_factory.mktemp("models_panel")
    write_flow_files(root)
    write_vae(root / "vae" / "sd_vae.safetensors", 4)
    write_lora(root / "loras" / "detail_tweaker.safetensors")
    (root / "text_encoders" / "cut_off.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    return root


@pytest.fixture
def window(qtbot: Any, tmp_path: Path, sdgraph_home: Path, model_root: Path) -> Iterator[MainWindow]:
    nodes.folders.configure(extra_roots=[str(model_root)])
    win = MainWindow(builtin_registry(), Settings(output_dir=str(tmp_path / "out")), templates_dir=tmp_path / "none")
    qtbot.addWidget(win, before_close_func=lambda w: setattr(w, "prompt_on_close", False))
    win.show()
    qtbot.waitExposed(win)
    win.models_dock.raise_()
    qtbot.waitUntil(lambda: win.models.pending == 0, timeout=20000)
    try:
        yield win
    finally:
        nodes.folders.configure()


def drop_on_canvas(win: MainWindow, mime: QMimeData, at: QPoint) -> bool:
    """A drag as Qt delivers it to the canvas viewport: enter, move, drop."""
    viewport = win.view.viewport()
    buttons, mods = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(at, Qt.DropAction.CopyAction, mime, buttons, mods)
    QApplication.sendEvent(viewport, enter)
    if not enter.isAccepted():
        return False
    move = QDragMoveEvent(at, Qt.DropAction.CopyAction, mime, buttons, mods)
    QApplication.sendEvent(viewport, move)
    drop = QDropEvent(QPointF(at), Qt.DropAction.CopyAction, mime, buttons, mods)
    QApplication.sendEvent(viewport, drop)
    return drop.isAccepted()


def size_of(path: Path) -> str:
    return format_size(path.stat().st_size)


def test_the_models_dock_is_tabbed_with_the_node_library_and_in_the_view_menu(window: MainWindow) -> None:
    assert window.models_dock in window.tabifiedDockWidgets(window.library_dock)
    view_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    assert window.models_dock.toggleViewAction() in view_menu.actions()


def test_files_are_listed_by_kind_with_their_family_and_size(window: MainWindow, model_root: Path) -> None:
    panel = window.models
    te, dm = model_root / "text_encoders", model_root / "diffusion_models"
    assert panel.rows("checkpoints") == [
        (
            "tiny_sd3.5_medium.safetensors",
            "Stable Diffusion 3 / 3.5",
            size_of(model_root / "checkpoints" / "tiny_sd3.5_medium.safetensors"),
        )
    ]
    assert panel.rows("diffusion_models") == [
        ("tiny_flux1_dev.safetensors", "FLUX.1", size_of(dm / "tiny_flux1_dev.safetensors")),
        ("tiny_flux1_schnell.safetensors", "FLUX.1", size_of(dm / "tiny_flux1_schnell.safetensors")),
        ("tiny_z_image_turbo.safetensors", "Z-Image", size_of(dm / "tiny_z_image_turbo.safetensors")),
    ]
    assert panel.rows("text_encoders") == [
        ("cut_off.safetensors", "unreadable", "9 B"),
        ("tiny_clip_g.safetensors", "CLIP-G", size_of(te / "tiny_clip_g.safetensors")),
        ("tiny_clip_l.safetensors", "CLIP-L", size_of(te / "tiny_clip_l.safetensors")),
        ("tiny_qwen3.safetensors", "Qwen3", size_of(te / "tiny_qwen3.safetensors")),
        ("tiny_t5xxl.safetensors", "T5-XXL", size_of(te / "tiny_t5xxl.safetensors")),
    ]
    assert [(n, f) for n, f, _ in panel.rows("vae")] == [
        ("sd_vae.safetensors", "4-channel VAE"),
        ("tiny_ae.safetensors", "16-channel VAE"),
    ]
    assert [(n, f) for n, f, _ in panel.rows("loras")] == [("detail_tweaker.safetensors", "LoRA")]
    assert panel.kind_item("text_encoders").text(0) == "Text encoders (5)"
    assert size_of(dm / "tiny_flux1_dev.safetensors").endswith(" MB")
    assert "header" in panel.item_for("text_encoders", "cut_off.safetensors").toolTip(1)  # why it is unreadable


def test_opening_the_panel_does_not_wait_for_the_headers(window: MainWindow, qtbot: Any) -> None:
    fresh = ModelsPanel()  # its own cache: every file must be read
    qtbot.addWidget(fresh)
    assert fresh.pending == 12
    assert {family for kind in ("checkpoints", "vae") for _, family, _ in fresh.rows(kind)} == {PROBING}
    assert "reading 12…" in fresh.summary.text()
    with qtbot.waitSignal(fresh.probesFinished, timeout=20000):
        pass
    assert fresh.rows("vae") == window.models.rows("vae")
    assert fresh.summary.text() == "12 model files"


@pytest.mark.parametrize(
    ("kind", "name", "node_type", "values"),
    [
        (
            "checkpoints",
            "tiny_sd3.5_medium.safetensors",
            "CheckpointLoaderSimple",
            {"ckpt_name": "tiny_sd3.5_medium.safetensors"},
        ),
        ("diffusion_models", "tiny_flux1_dev.safetensors", "UNETLoader", {"unet_name": "tiny_flux1_dev.safetensors"}),
        (
            "text_encoders",
            "tiny_clip_l.safetensors",
            "CLIPLoader",
            {"clip_name": "tiny_clip_l.safetensors", "type": "stable_diffusion"},
        ),
        (
            "text_encoders",
            "tiny_t5xxl.safetensors",
            "CLIPLoader",
            {"clip_name": "tiny_t5xxl.safetensors", "type": "sd3"},
        ),
        (
            "text_encoders",
            "tiny_qwen3.safetensors",
            "CLIPLoader",
            {"clip_name": "tiny_qwen3.safetensors", "type": "lumina2"},
        ),
        ("vae", "tiny_ae.safetensors", "VAELoader", {"vae_name": "tiny_ae.safetensors"}),
        ("loras", "detail_tweaker.safetensors", "LoraLoader", {"lora_name": "detail_tweaker.safetensors"}),
    ],
)
def test_dropping_a_file_on_the_canvas_adds_its_loader_with_the_file_chosen(
    window: MainWindow, kind: str, name: str, node_type: str, values: dict[str, str]
) -> None:
    item = window.models.item_for(kind, name)
    assert item is not None
    mime = window.models.tree.mimeData([item])  # what Qt's drag carries when it starts on this row
    before = set(window.graph.nodes)
    at = QPoint(220, 160)

    assert drop_on_canvas(window, mime, at)

    (node_id,) = set(window.graph.nodes) - before
    node = window.graph.nodes[node_id]
    assert node.type == node_type
    assert {k: node.values[k] for k in values} == values
    spot = window.view.mapToScene(at)
    assert node.pos == (spot.x(), spot.y())
    assert window.selected_node_ids() == [node_id]
    window.undo_stack.undo()  # one undo step takes it away again
    assert node_id not in window.graph.nodes


def test_a_library_drop_and_a_foreign_drag_still_behave_as_before(window: MainWindow) -> None:
    from ui.panels import NODE_TYPE_MIME

    mime = QMimeData()
    mime.setData(NODE_TYPE_MIME, b"VAELoader")
    assert drop_on_canvas(window, mime, QPoint(100, 100))
    assert [n.type for n in window.graph.nodes.values()].count("VAELoader") == 1
    plain = QMimeData()
    plain.setText("just text")
    count = len(window.graph.nodes)
    drop_on_canvas(window, plain, QPoint(100, 100))  # not ours: the model filter lets it through
    assert len(window.graph.nodes) == count


def test_double_click_adds_the_loader_at_the_centre(window: MainWindow, qtbot: Any) -> None:
    tree = window.models.tree
    item = window.models.item_for("vae", "sd_vae.safetensors")
    assert item is not None
    tree.scrollToItem(item)
    rect = tree.visualItemRect(item)
    before = set(window.graph.nodes)
    on_name = QPoint(rect.left() + 8, rect.center().y())  # the dock is narrow: the row runs past its edge
    assert tree.viewport().rect().contains(on_name)
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=on_name)
    qtbot.mouseDClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=on_name)
    (node_id,) = set(window.graph.nodes) - before
    assert window.graph.nodes[node_id].type == "VAELoader"
    assert window.graph.nodes[node_id].values["vae_name"] == "sd_vae.safetensors"


def test_refresh_picks_up_new_and_replaced_files(window: MainWindow, qtbot: Any, sdgraph_home: Path) -> None:
    panel = window.models
    added = write_vae(sdgraph_home / "models" / "vae" / "new_vae.safetensors", 4)
    write_lora(sdgraph_home / "models" / "loras" / "another.safetensors")
    assert panel.item_for("vae", "new_vae.safetensors") is None  # not until asked
    qtbot.mouseClick(panel.refresh_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.pending == 0, timeout=10000)
    assert ("new_vae.safetensors", "4-channel VAE", size_of(added)) in panel.rows("vae")
    assert ("another.safetensors", "LoRA") in [(n, f) for n, f, _ in panel.rows("loras")]
    assert panel.kind_item("loras").text(0) == "LoRA (2)"

    write_vae(added, 16)  # replaced on disk by a FLUX-style VAE: read again, not taken from the cache
    panel.tree.setFocus()
    qtbot.keyClick(panel.tree, Qt.Key.Key_F5)
    qtbot.waitUntil(lambda: panel.pending == 0, timeout=10000)
    assert ("new_vae.safetensors", "16-channel VAE", size_of(added)) in panel.rows("vae")
    added.unlink()
    qtbot.mouseClick(panel.refresh_button, Qt.MouseButton.LeftButton)
    assert panel.item_for("vae", "new_vae.safetensors") is None


def test_the_panels_import_no_torch() -> None:
    code = (
        "import sys, ui.panels.models, ui.panels.queue, nodes.model_catalog\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
