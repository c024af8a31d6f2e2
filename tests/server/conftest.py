"""One real server per test module, on a free port, with a tiny SD1 checkpoint in its model root.

The server is module-wide (starting one and loading the checkpoint once keeps the module fast), so it
is given explicit folders: the per-test `SDGRAPH_HOME` does not exist yet when it starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import nodes.folders
from app.server import Server, ServerConfig
from graph_engine import Executor
from nodes import builtin_registry
from nodes.folders import temp_dir


@dataclass
class Served:
    server: Server
    url: str
    output: Path
    input: Path
    temp: Path
    history_db: Path


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from tests.server.support import CKPT
    from tests.support.tiny_sd import make_tiny

    root = tmp_path_factory.mktemp("server_models")
    make_tiny("sd1", root / "checkpoints", name=CKPT.removesuffix(".safetensors"))
    (root / "embeddings").mkdir()
    (root / "embeddings" / "my_style.safetensors").write_bytes(b"")
    nodes.folders.configure(extra_roots=[str(root)])
    try:
        yield root
    finally:
        nodes.folders.configure()


@contextlib.contextmanager
def start_server(base: Path, **config: object) -> Iterator[Served]:
    """A server with its own output and input folders (Load Image reads the same input folder)."""
    output, input_dir = base / "output", base / "input"
    output.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SDGRAPH_INPUT_DIR", str(input_dir))
        executor = Executor(builtin_registry(), device="cpu", output_dir=output)
        settings = ServerConfig(port=0, history_path=base / "history.sqlite3", **config)  # type: ignore[arg-type]
        server = Server(executor.registry, executor, settings).start()
        try:
            yield Served(server, server.url, output, input_dir, temp_dir(), base / "history.sqlite3")
        finally:
            server.stop()


@pytest.fixture(scope="module")
def served(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with start_server(tmp_path_factory.mktemp("server"), max_upload_mb=1) as s:
        yield s
