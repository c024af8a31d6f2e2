"""Say which system libraries the window is missing, before Qt aborts without saying it clearly.

Qt 6's X11 platform plugin (xcb) needs libxcb-cursor, libxcb-icccm and libxcb-keysyms, which the
PySide6 wheels do not ship and a bare Debian/Ubuntu does not have. Without them Qt prints a long
"could not load the Qt platform plugin" message and aborts the process (SIGABRT, a core dump), which
says nothing about what to install. So before the QApplication exists, `sdgraph gui` checks that the
dynamic loader can find them and, if not, prints one message naming them with the `apt-get` command,
and exits with code 1.

The check only applies where Qt would use xcb: on Linux, with `QT_QPA_PLATFORM` unset or `xcb`, and an
X display to talk to. This module imports nothing from Qt, so the check costs no Qt start-up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SystemLibrary:
    soname: str  # what Qt's xcb plugin loads
    name: str  # for ctypes.util.find_library ("lib" and ".so" left off)
    package: str  # the Debian/Ubuntu package that installs it


XCB_LIBRARIES: tuple[SystemLibrary, ...] = (
    SystemLibrary("libxcb-cursor.so.0", "xcb-cursor", "libxcb-cursor0"),
    SystemLibrary("libxcb-icccm.so.4", "xcb-icccm", "libxcb-icccm4"),
    SystemLibrary("libxcb-keysyms.so.1", "xcb-keysyms", "libxcb-keysyms1"),
)


def library_present(library: SystemLibrary) -> bool:
    """Whether the dynamic loader can find `library`: by loading its soname, by `find_library`, or in
    PySide6's own Qt/lib folder (a wheel that ships it). Any of these is enough: wrongly reporting a
    library as missing would stop a window that could have opened."""
    try:
        ctypes.CDLL(library.soname)
        return True
    except OSError:
        pass
    if ctypes.util.find_library(library.name):
        return True
    return any((folder / library.soname).exists() for folder in _pyside_lib_folders())


def _pyside_lib_folders() -> list[Path]:
    folders = []
    for entry in sys.path:
        folder = Path(entry or ".") / "PySide6" / "Qt" / "lib"
        if folder.is_dir():
            folders.append(folder)
    return folders


def uses_xcb(env: Mapping[str, str], platform: str) -> bool:
    """Whether Qt would start on the X11 (xcb) platform plugin in this environment."""
    if not platform.startswith("linux"):
        return False
    requested = env.get("QT_QPA_PLATFORM", "").strip()
    if requested:
        return requested.split(";")[0].split(":")[0] == "xcb"
    if not env.get("DISPLAY"):
        return False
    # Unset on a Wayland session: Qt picks its wayland plugin first, which needs none of these.
    return not (env.get("WAYLAND_DISPLAY") and env.get("XDG_SESSION_TYPE") == "wayland")


def missing_xcb_libraries(
    env: Mapping[str, str] | None = None,
    platform: str | None = None,
    present: Callable[[SystemLibrary], bool] | None = None,
) -> list[SystemLibrary]:
    """The xcb libraries Qt will need here but cannot find (empty when xcb is not going to be used)."""
    present = library_present if present is None else present
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if not uses_xcb(env, platform):
        return []
    return [lib for lib in XCB_LIBRARIES if not present(lib)]


def missing_libraries_message(missing: list[SystemLibrary]) -> str:
    """One message for the person starting the window: what is missing and the command that installs it."""
    names = ", ".join(lib.soname for lib in missing)
    packages = " ".join(lib.package for lib in missing)
    return (
        f"sdgraph: the window cannot start: Qt's X11 (xcb) platform needs {names}, "
        f"which {'is' if len(missing) == 1 else 'are'} not installed.\n"
        f"Install with:\n\n    sudo apt-get install {packages}\n\n"
        "(The headless runner needs none of this: sdgraph run WORKFLOW.json)"
    )


def setup_hint() -> str:
    """For scripts/setup.sh: the install hint if this Linux machine lacks the libraries, whatever the
    display is now (the window may be started later, from a desktop session); empty otherwise."""
    missing = missing_xcb_libraries({"QT_QPA_PLATFORM": "xcb"}, sys.platform)
    if not missing:
        return ""
    names = ", ".join(lib.soname for lib in missing)
    packages = " ".join(lib.package for lib in missing)
    return (
        f"note: the window (sdgraph gui) needs {names}, not installed here; the headless runner works "
        f"without them.\nInstall with:  sudo apt-get install {packages}"
    )


__all__ = [
    "XCB_LIBRARIES",
    "SystemLibrary",
    "library_present",
    "missing_libraries_message",
    "missing_xcb_libraries",
    "setup_hint",
    "uses_xcb",
]

if __name__ == "__main__":  # python -m app.qt_libs: print the hint, never fail (setup.sh calls it)
    hint = setup_hint()
    if hint:
        print(hint)
