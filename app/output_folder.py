"""Checking the output folder before a run, so a bad `--output-dir` fails in a second, not after the graph.

Without this check a run with an unusable folder computed every node (minutes of sampling) and only
then failed in Save Image with a traceback. Both `sdgraph run` and the editor ask `output_folder_problem`
first; it creates the folder (as a run would) and proves it writable by creating and removing a file,
since permission bits lie (root, ACLs, read-only mounts). Leftover temp files of writers that were
killed (`graph_engine.serialization.remove_stale_temps`) are cleared on the way.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from graph_engine.serialization import remove_stale_temps


def output_folder_problem(folder: Path | str) -> str | None:
    """None when images can be written into `folder` (made if missing); else one line saying why not."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        return f"the output folder {folder} is a file, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"the output folder {folder} cannot be created: {exc.strerror or exc}"
    try:
        fd, probe = tempfile.mkstemp(prefix=".sdgraph-write-check.", suffix=".tmp", dir=folder)
    except OSError as exc:
        return f"the output folder {folder} is not writable: {exc.strerror or exc}"
    os.close(fd)
    Path(probe).unlink(missing_ok=True)
    remove_stale_temps(folder)
    return None
