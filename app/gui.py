"""The desktop app's entry point: a QApplication on a qasync event loop, showing the main window.

`main(path)` is what `sdgraph` (no arguments) and `sdgraph gui FILE` call. It stays thin: set up Qt,
the palette of the chosen theme and the asyncio loop, open the window with the default txt2img workflow (or the
file given), offer crash recovery, and run the loop until the window closes.

Startup speed is part of the contract: nothing here (or in the window) imports torch, which would add
seconds before the first paint; the SD nodes import it inside `execute`. For measuring, setting
`SDGRAPH_STARTUP_PROBE=1` makes the process print one line once the window is shown,
`SDGRAPH_SHOWN <unix time> torch=<0|1>`, and quit (see `bench/canvas.py`).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

PROBE_ENV = "SDGRAPH_STARTUP_PROBE"


def emit_drops_a_reference() -> bool:
    """Whether this PySide6 has the stray-decref bug: `SignalInstance.emit()` returning True unowned."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(8):
        probe.ping.emit()
    return sys.getrefcount(True) <= before - 8


def pin_bool_refcounts() -> bool:
    """Work around PySide6 6.12.0 on Python 3.11, where every Python-side `emit()` drops a reference to True.

    With that bug, a few hundred emits (one short run) bring True's reference count to zero and the
    interpreter aborts with "Fatal Python error: bool_dealloc". PySide6 6.11.3 does not have it, and
    from Python 3.12 True is immortal so the stray decref is harmless. When the bug is detected, True
    and False get a reference count no session can use up. Returns whether it was needed.
    """
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython" or not emit_drops_a_reference():
        return False
    import ctypes

    for obj in (True, False):
        # ob_refcnt is the first field of every object in release builds of CPython.
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40
    return True


def make_app() -> object:
    """The QApplication (reused when one exists, as under pytest-qt), styled dark."""
    from PySide6.QtWidgets import QApplication

    pin_bool_refcounts()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("sdgraph")
    app.setOrganizationName("sdgraph")
    app.setStyle("Fusion")
    from ui import theme

    app.setPalette(theme.window_palette(theme.current))  # type: ignore[attr-defined]
    return app


def create_window() -> object:
    """The main window with the default graph and its autosave session started; not yet shown."""
    from app.plugins import load_app_registry
    from app.settings import Settings, home_dir
    from ui.autosave import AutosaveStore
    from ui.main_window import MainWindow

    settings = Settings.load()
    settings.apply_model_folders()
    store = AutosaveStore(home_dir() / "autosave")
    store.start_session()
    registry, plugins = load_app_registry()
    window = MainWindow(registry, settings, autosave=store)
    window.apply_theme(settings.theme)
    for problem in plugins.problems:  # each broken node pack, once, where the user reads what went wrong
        window.log.add("warning", problem)
    window.load_default()
    return window


def check_system_libraries() -> bool:
    """Before any Qt import: False, after printing what to install, when Qt's xcb plugin would abort
    for want of system libraries (see `app.qt_libs`)."""
    from app import qt_libs

    missing = qt_libs.missing_xcb_libraries()
    if missing:
        print(qt_libs.missing_libraries_message(missing), file=sys.stderr)
    return not missing


def main(path: str | None = None) -> int:
    """Run the desktop app until its window closes; returns the process exit code."""
    if not check_system_libraries():
        return 1
    import qasync
    from PySide6.QtCore import QTimer

    app = make_app()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = create_window()
    window.show()  # type: ignore[attr-defined]
    if path:  # after show(): a file that fails to load is reported over the window, default graph kept
        window.load_document(Path(path))  # type: ignore[attr-defined]

    if os.environ.get(PROBE_ENV):

        def probe() -> None:
            torch = int("torch" in sys.modules)
            print(f"SDGRAPH_SHOWN {time.time():.6f} torch={torch}", flush=True)
            window.close_without_prompt()  # type: ignore[attr-defined]
            app.quit()  # type: ignore[attr-defined]

        QTimer.singleShot(0, probe)
    else:
        QTimer.singleShot(0, window.offer_recovery)  # type: ignore[attr-defined]
        # Once the window has painted, import the model stack in the background so the first run
        # starts sooner; the run workers wait for it (`wait_for_preloading`) before their first task.
        # The window itself never imports it.
        from app.preload import start_preloading

        QTimer.singleShot(300, start_preloading)
    # Compiling the UNet takes about a minute: never on this (the window's) thread.
    from nodes.diffusion.compile import forbid_compiling_on_this_thread

    forbid_compiling_on_this_thread()

    app.aboutToQuit.connect(window.shutdown)  # type: ignore[attr-defined]
    with loop:
        loop.run_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else None))
