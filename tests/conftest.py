"""Test-wide guards: never touch the real user folders, never reach the network, Qt offscreen."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Settings, models, autosaves and outputs go to a fresh folder in every test."""
    home = tmp_path_factory.mktemp("sdgraph-home")
    monkeypatch.setenv("SDGRAPH_HOME", str(home))
    return home
