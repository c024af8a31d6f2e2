"""The check for the system libraries Qt's xcb plugin needs, and `sdgraph gui` printing its hint
instead of Qt's abort when they are missing (issue 10, bug 13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import qt_libs
from app.qt_libs import XCB_LIBRARIES, SystemLibrary, missing_libraries_message, missing_xcb_libraries, uses_xcb

ROOT = Path(__file__).parents[2]
X11 = {"DISPLAY": ":0"}


def only_cursor_missing(library: SystemLibrary) -> bool:
    return library.soname != "libxcb-cursor.so.0"


def test_missing_libraries_are_named_only_where_qt_uses_xcb() -> None:
    cursor = [XCB_LIBRARIES[0]]
    assert missing_xcb_libraries(X11, "linux", only_cursor_missing) == cursor
    assert missing_xcb_libraries({**X11, "QT_QPA_PLATFORM": "xcb"}, "linux", only_cursor_missing) == cursor
    assert missing_xcb_libraries({"QT_QPA_PLATFORM": "xcb"}, "linux", only_cursor_missing) == cursor
    # Qt will not touch xcb here: no hint, whatever is installed.
    assert missing_xcb_libraries({**X11, "QT_QPA_PLATFORM": "offscreen"}, "linux", only_cursor_missing) == []
    assert missing_xcb_libraries({**X11, "QT_QPA_PLATFORM": "wayland"}, "linux", only_cursor_missing) == []
    assert missing_xcb_libraries({}, "linux", only_cursor_missing) == []
    assert missing_xcb_libraries(X11, "darwin", only_cursor_missing) == []
    assert missing_xcb_libraries(X11, "win32", only_cursor_missing) == []
    wayland_session = {**X11, "WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}
    assert missing_xcb_libraries(wayland_session, "linux", only_cursor_missing) == []
    assert uses_xcb({**wayland_session, "QT_QPA_PLATFORM": "xcb"}, "linux")


def test_the_check_uses_the_library_finder_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def finder(library: SystemLibrary) -> bool:
        asked.append(library.soname)
        return library.soname == "libxcb-icccm.so.4"

    monkeypatch.setattr(qt_libs, "library_present", finder)
    missing = missing_xcb_libraries(X11, "linux")
    assert [lib.soname for lib in missing] == ["libxcb-cursor.so.0", "libxcb-keysyms.so.1"]
    assert asked == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"]


def test_a_library_the_loader_cannot_find_is_missing() -> None:
    made_up = SystemLibrary("libsdgraph-not-a-library.so.7", "sdgraph-not-a-library", "none")
    assert not qt_libs.library_present(made_up)
    libc = SystemLibrary("libc.so.6", "c", "libc6")
    assert qt_libs.library_present(libc)


def test_the_message_names_the_libraries_and_the_command() -> None:
    text = missing_libraries_message([XCB_LIBRARIES[0], XCB_LIBRARIES[2]])
    assert "libxcb-cursor.so.0, libxcb-keysyms.so.1" in text
    assert "sudo apt-get install libxcb-cursor0 libxcb-keysyms1" in text
    assert "libxcb-icccm" not in text


def test_sdgraph_gui_prints_the_hint_and_exits_1_without_starting_qt(tmp_path: Path) -> None:
    """`sdgraph gui` through the real CLI entry, in a fresh process whose library finder reports
    nothing installed: the hint on stderr, exit code 1, no traceback, and Qt's widgets never loaded."""
    script = (
        "import sys\n"
        "from app import qt_libs\n"
        "qt_libs.library_present = lambda library: False\n"
        "from app.cli import main\n"
        "code = main(['gui'])\n"
        "print('widgets loaded' if 'PySide6.QtWidgets' in sys.modules else 'no widgets', flush=True)\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "SDGRAPH_HOME": str(tmp_path), "QT_QPA_PLATFORM": "xcb", "DISPLAY": ":99"}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip() == "no widgets"
    assert "libxcb-cursor.so.0, libxcb-icccm.so.4, libxcb-keysyms.so.1" in proc.stderr
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Aborted" not in proc.stderr and "could not load the Qt platform plugin" not in proc.stderr
