"""Issue 10, bug 3: shipped workflows run on the first try, and a missing model is one click away from
an installed one of the same family.

The tiny model root holds one checkpoint each of SD1, SD1 inpainting, SD2 and SDXL, so each shipped
template has exactly one installed match; a user's file is never changed without a click.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from app.settings import Settings
from graph_engine import Graph
from graph_engine.serialization import save
from nodes import builtin_registry
from nodes.model_matching import guess_family
from tests.support.model_root import TINY_NAMES
from tests.support.shared import anchor
from ui.main_window import MainWindow

WORKFLOWS = Path(__file__).resolve().parents[3] / "workflows"


@pytest.fixture
def window(qtbot: Any, tmp_path: Path, tiny_models: Path) -> MainWindow:
    win = MainWindow(builtin_registry(), Settings(output_dir=str(tmp_path / "out")))
    qtbot.addWidget(win, before_close_func=lambda w: setattr(w, "prompt_on_close", False))
    win.show()
    qtbot.waitExposed(win)
    return win


def loader_values(win: MainWindow) -> list[str]:
    return [n.values["ckpt_name"] for n in win.graph.nodes.values() if n.type == "CheckpointLoaderSimple"]


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("v1-5-pruned-emaonly.safetensors", "sd1"),
        ("sd-v1-5-inpainting.safetensors", "sd1_inpaint"),
        ("v2-1_768-ema-pruned.safetensors", "sd2"),
        ("sd_xl_base_1.0.safetensors", "sdxl"),
        ("sd_xl_refiner_1.0.safetensors", "sdxl_refiner"),
        ("juggernautXL_v9.safetensors", "sdxl"),
        ("flux1-dev.safetensors", "flux"),
        ("dreamshaper_8.safetensors", None),
    ],
)
def test_a_file_name_suggests_its_family(name: str, family: str | None) -> None:
    assert guess_family(name) == family


def test_the_default_graph_starts_with_the_installed_checkpoint(window: MainWindow) -> None:
    assert window.load_default()
    assert loader_values(window) == [TINY_NAMES["sd1"]]  # not the SD1 inpainting one, not SDXL
    assert not window.is_dirty()
    assert not window.missing_models.isVisible()


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("sdxl.json", TINY_NAMES["sdxl"]),
        ("inpaint.json", TINY_NAMES["sd1_inpaint"]),
        ("img2img.json", TINY_NAMES["sd1"]),
    ],
)
def test_templates_pick_the_one_installed_file_of_their_family(
    window: MainWindow, template: str, expected: str
) -> None:
    assert window.open_template(WORKFLOWS / template)
    assert set(loader_values(window)) == {expected}
    assert not window.missing_models.isVisible()
    assert window.load_document(WORKFLOWS / "txt2img.json")  # back to another, then by path (`sdgraph gui sdxl`)
    assert window.load_document(WORKFLOWS / template)
    assert set(loader_values(window)) == {expected} and window.doc is not None and window.doc.path is None


def test_with_two_of_a_family_nothing_is_picked_and_the_bar_offers_both(
    window: MainWindow, tiny_models: Path, sdgraph_home: Path
) -> None:
    extra = sdgraph_home / "models" / "checkpoints"
    extra.mkdir(parents=True)
    shutil.copyfile(tiny_models / "checkpoints" / TINY_NAMES["sd1"], extra / "another_sd15.safetensors")
    window.load_default()
    assert loader_values(window) == ["v1-5-pruned-emaonly.safetensors"]
    assert window.missing_models.isVisible()
    (row,) = window.missing_models.rows
    same = [row.choices.itemData(i) for i in range(row.missing.same_family)]
    assert sorted(same) == sorted(["another_sd15.safetensors", TINY_NAMES["sd1"]])


def test_one_click_uses_the_closest_installed_file_of_the_right_family(
    window: MainWindow, qtbot: Any, tmp_path: Path
) -> None:
    path = tmp_path / "refiner.json"
    shutil.copyfile(anchor("sdxl_base_refiner_ksampler_advanced.workflow.json"), path)
    assert window.load_document(path)
    assert window.missing_models.isVisible()
    rows = {row.missing.name: row for row in window.missing_models.rows}
    base = rows["sd_xl_base_1.0.safetensors"]
    assert base.choices.currentData() == TINY_NAMES["sdxl"]  # the SDXL file first, not the closer-named SD ones
    refiner = rows["sd_xl_refiner_1.0.safetensors"]
    assert refiner.missing.same_family == 0  # no refiner installed: the others are offered, marked as such
    assert "other family" in refiner.choices.itemText(0)
    assert "No SDXL refiner checkpoint is installed; these are of other families" in refiner.label.text()
    assert "other families" not in base.label.text()

    QTest.mouseClick(base.use_here, Qt.MouseButton.LeftButton)
    assert TINY_NAMES["sdxl"] in loader_values(window)
    assert "sd_xl_base_1.0.safetensors" not in loader_values(window)
    assert window.is_dirty()  # the user's file changed: it needs saving
    assert [r.missing.name for r in window.missing_models.rows] == ["sd_xl_refiner_1.0.safetensors"]
    window.undo_stack.undo()
    assert "sd_xl_base_1.0.safetensors" in loader_values(window)


def test_use_everywhere_replaces_the_file_in_every_node_in_one_undo_step(
    window: MainWindow, qtbot: Any, tmp_path: Path
) -> None:
    graph = Graph()
    for x in (0, 400):
        graph.add_node("CheckpointLoaderSimple", {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}, pos=(x, 0))
    path = tmp_path / "two.json"
    save(graph, path)
    assert window.load_document(path)
    assert loader_values(window) == ["v1-5-pruned-emaonly.safetensors"] * 2  # a user's file is not changed by itself
    (row,) = window.missing_models.rows
    QTest.mouseClick(row.use_everywhere, Qt.MouseButton.LeftButton)
    assert loader_values(window) == [TINY_NAMES["sd1"]] * 2
    assert not window.missing_models.isVisible()
    assert window.undo_stack.count() == 1
    window.undo_stack.undo()
    assert loader_values(window) == ["v1-5-pruned-emaonly.safetensors"] * 2
