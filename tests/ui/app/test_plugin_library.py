"""Node packs in the editor: the window `sdgraph gui` opens shows a pack's nodes in the library, under
the pack's category and marked with where they came from, and says in the log which pack failed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt

from app import plugins as app_plugins
from app.gui import create_window
from ui.main_window import MainWindow

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "sdgraph-example-nodes" / "sdgraph_example_nodes"


@pytest.fixture
def window(qtbot: Any, sdgraph_home: Path) -> Iterator[MainWindow]:
    """The real window with a pack and a broken pack in custom_nodes/, as a user would have them."""
    custom = sdgraph_home / "custom_nodes"
    shutil.copytree(EXAMPLE, custom / "sdgraph_example_nodes", ignore=shutil.ignore_patterns("__pycache__"))
    (custom / "broken_pack.py").write_text("import a_module_nobody_installed\n")
    app_plugins.forget_loaded()
    win = create_window()
    assert isinstance(win, MainWindow)
    qtbot.addWidget(win, before_close_func=lambda w: setattr(w, "prompt_on_close", False))
    win.show()
    qtbot.waitExposed(win)
    yield win
    app_plugins.forget_loaded()


def test_the_library_shows_plugin_nodes_with_their_source_and_adds_them(window: MainWindow, qtbot: Any) -> None:
    library = window.library
    item = library.item_for("ExampleImageGrayscale")
    assert item is not None
    assert item.text(0) == "Image Grayscale (plugin: sdgraph_example_nodes)"
    assert item.parent().text(0) == "example/image"  # the category the pack declared
    pack = Path(window.registry.get("ExampleImageGrayscale").execute.__code__.co_filename).parent  # type: ignore[union-attr]
    assert f"plugin: folder {pack}" in item.toolTip(0)
    builtin = library.item_for("KSampler")
    assert builtin is not None and "plugin" not in builtin.text(0) + builtin.toolTip(0)

    # Typing the pack's name finds its nodes; Enter adds the first one shown to the graph. (Enter, not a
    # double-click: QTest's double-click leaves Qt's mouse state so that a later test's Tab on the canvas
    # opens no search, the same as after test_main_window's library test.)
    library.filter.setFocus()
    qtbot.keyClicks(library.filter, "example_nodes")
    assert not item.isHidden() and builtin.isHidden()
    before = {n.id for n in window.graph.nodes.values()}
    qtbot.keyClick(library.filter, Qt.Key.Key_Return)
    added = [n for n in window.graph.nodes.values() if n.id not in before]
    assert [n.type for n in added] == ["ExampleImageGrayscale"]


def test_a_broken_pack_is_one_warning_in_the_log(window: MainWindow, sdgraph_home: Path) -> None:
    broken = [text for text, _node in window.log.entries() if "broken_pack" in text]
    assert broken == [
        f"plugin folder {sdgraph_home / 'custom_nodes' / 'broken_pack.py'} failed to load: "
        "ModuleNotFoundError: No module named 'a_module_nobody_installed'"
    ]
    assert window.library.item_for("ExampleTextRepeat") is not None  # the rest loaded
