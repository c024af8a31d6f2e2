"""Save Image's PNGs get the mode a plain write would give them (0o666 less the umask), not mkstemp's
0o600 (issue 10, bug 6)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from graph_engine import ExecutionContext
from nodes import builtin_registry

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664)])
def test_save_image_pngs_follow_the_umask(tmp_path: Path, mask: int, expected: int) -> None:
    spec = builtin_registry().get("SaveImage")
    assert spec is not None
    ctx = ExecutionContext(node_id=1, title="Save Image", output_dir=tmp_path, workflow={"nodes": []})
    old = os.umask(mask)
    try:
        out = spec.execute(ctx, images=torch.rand(2, 8, 8, 3), filename_prefix="sub/shot")
    finally:
        os.umask(old)
    paths = [Path(item["path"]) for item in out.ui["images"]]
    assert len(paths) == 2
    for path in paths:
        assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == expected
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == sorted(p.name for p in paths)
