"""Where Open, Save and Export dialogs start, and the dialogs themselves behind one replaceable hook.

A file dialog given a bare file name (or nothing) starts in the process's working directory, which for
a desktop program is wherever it happened to be launched from: the install folder, `/`, the home
folder. People expect their Documents folder the first time, and after that the folder they used
last. So every dialog is given a folder: the open document's own folder when saving it, otherwise the
last folder a file was opened from or saved to (kept in QSettings next to the window layout, so it
survives restarts), otherwise `QStandardPaths.DocumentsLocation`.

The Qt dialogs are reached through `open_dialog`, `save_dialog` and `folder_dialog`, module attributes with
`QFileDialog`'s static signatures, so a test can put a function there and see exactly which folder
and filters a real key press produced, without a native modal dialog.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths
from PySide6.QtWidgets import QFileDialog, QWidget

from app.settings import home_dir

STATE_FILE = "window.ini"  # shared with the window's geometry (ui.main_window.WINDOW_STATE_FILE)
LAST_FOLDER_KEY = "dialogs/last_folder"

# (parent, caption, directory or start file, filters[, selected filter]) -> (chosen path or "", filter)
OpenDialog = Callable[[QWidget | None, str, str, str], tuple[str, str]]
SaveDialog = Callable[[QWidget | None, str, str, str, str], tuple[str, str]]
FolderDialog = Callable[[QWidget | None, str, str], str]  # (parent, caption, start folder) -> folder or ""


def _qt_open(parent: QWidget | None, caption: str, directory: str, filters: str) -> tuple[str, str]:
    return QFileDialog.getOpenFileName(parent, caption, directory, filters)


def _qt_save(parent: QWidget | None, caption: str, start: str, filters: str, selected: str) -> tuple[str, str]:
    return QFileDialog.getSaveFileName(parent, caption, start, filters, selected)


def _qt_folder(parent: QWidget | None, caption: str, directory: str) -> str:
    return QFileDialog.getExistingDirectory(parent, caption, directory)


open_dialog: OpenDialog = _qt_open
save_dialog: SaveDialog = _qt_save
folder_dialog: FolderDialog = _qt_folder


def _store() -> QSettings:
    return QSettings(str(home_dir() / STATE_FILE), QSettings.Format.IniFormat)


def last_folder() -> Path | None:
    """The folder a file was last opened from or saved to, if it still exists."""
    value = _store().value(LAST_FOLDER_KEY)
    if not value:
        return None
    folder = Path(str(value))
    return folder if folder.is_dir() else None


def remember_folder(path: Path | str) -> None:
    """Note the folder of a file just opened or written (or a folder itself) for the next dialog."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    store = _store()
    store.setValue(LAST_FOLDER_KEY, str(folder.resolve()))
    store.sync()


def documents_folder() -> Path:
    """The user's Documents folder, or the home folder where the platform has none (yet)."""
    documents = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return Path(documents) if documents and Path(documents).is_dir() else Path.home()


def start_folder(preferred: Path | None = None) -> Path:
    """`preferred` (e.g. the open document's folder) if it exists, else the last folder, else Documents."""
    if preferred is not None and preferred.is_dir():
        return preferred
    return last_folder() or documents_folder()


def ask_open_file(parent: QWidget | None, caption: str, filters: str, folder: Path | None = None) -> Path | None:
    """An Open dialog starting in `folder` (default: `start_folder()`); remembers the chosen file's folder."""
    chosen, _filter = open_dialog(parent, caption, str(folder or start_folder()), filters)
    if not chosen:
        return None
    remember_folder(chosen)
    return Path(chosen)


def ask_save_file(
    parent: QWidget | None, caption: str, start: Path, filters: str, selected: str = ""
) -> tuple[Path, str] | None:
    """A Save dialog at `start` (a full path: folder and suggested name); returns the path and filter."""
    chosen, chosen_filter = save_dialog(parent, caption, str(start), filters, selected)
    if not chosen:
        return None
    remember_folder(chosen)
    return Path(chosen), chosen_filter


def ask_folder(parent: QWidget | None, caption: str, folder: Path | None = None) -> Path | None:
    """A folder chooser starting in `folder` (default: `start_folder()`); remembers the chosen folder."""
    chosen = folder_dialog(parent, caption, str(folder or start_folder()))
    if not chosen:
        return None
    remember_folder(chosen)
    return Path(chosen)
