"""Session-cached tiny checkpoints as pytest fixtures.

Writing a tiny model takes well under a second, but many tests want the same few files; building
each once per session keeps the suite fast. Files live under pytest's session temp folder, never in
the user's model folders. Tests that modify a file (truncate it, add a sidecar) must copy it first.

Wire into a conftest with ``from tests.support.fixtures import *  # noqa: F403``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.support.tiny_sd import make_tiny

TinyFactory = Callable[..., Path]

__all__ = [
    "tiny_checkpoint",
    "tiny_sd1_file",
    "tiny_sd1_folder",
    "tiny_sd2_v_file",
    "tiny_sdxl_file",
    "tiny_sdxl_folder",
]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> TinyFactory:
    """``tiny_checkpoint(family, layout="single_file", dtype=torch.float32, **kw) -> Path``, cached."""
    root = tmp_path_factory.mktemp("tiny_sd")
    cache: dict[tuple[object, ...], Path] = {}

    def get(family: str, layout: str = "single_file", dtype: torch.dtype = torch.float32, **kwargs: object) -> Path:
        key = (family, layout, dtype, tuple(sorted(kwargs.items())))
        if key not in cache:
            name = "_".join(str(part).replace("torch.", "") for part in key[:3])
            extra = "_".join(f"{k}-{v}" for k, v in sorted(kwargs.items()))
            cache[key] = make_tiny(
                family, root, layout=layout, dtype=dtype, name=f"{name}_{extra}" if extra else name, **kwargs
            )  # type: ignore[arg-type]
        return cache[key]

    return get


@pytest.fixture(scope="session")
def tiny_sd1_file(tiny_checkpoint: TinyFactory) -> Path:
    return tiny_checkpoint("sd1")


@pytest.fixture(scope="session")
def tiny_sd1_folder(tiny_checkpoint: TinyFactory) -> Path:
    return tiny_checkpoint("sd1", "diffusers")


@pytest.fixture(scope="session")
def tiny_sd2_v_file(tiny_checkpoint: TinyFactory) -> Path:
    return tiny_checkpoint("sd2")


@pytest.fixture(scope="session")
def tiny_sdxl_file(tiny_checkpoint: TinyFactory) -> Path:
    return tiny_checkpoint("sdxl")


@pytest.fixture(scope="session")
def tiny_sdxl_folder(tiny_checkpoint: TinyFactory) -> Path:
    return tiny_checkpoint("sdxl", "diffusers")
