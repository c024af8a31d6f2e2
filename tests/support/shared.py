"""Where the project's shared reference data is: `../shared` beside the clone, or `$SDGRAPH_SHARED`.

The folder holds files that are not ours to commit (ComfyUI-written anchor workflows, original tokenizer
files), so a plain clone does not have it. Tests that compare against it skip with this reason when it is
absent; the formats and import paths they exercise are also covered by the project's own fixtures (the
templates in `workflows/`, `tests/comfy/toolbox/`, and workflows built in the tests), which always run.
Set `SDGRAPH_SHARED` to another folder (a missing one shows what a plain clone sees).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SDGRAPH_SHARED") or CHECKOUT.parent / "shared")
ANCHORS = SHARED / "anchors" / "comfyui-workflows"
TOKENIZERS = SHARED / "data" / "tokenizers"

ANCHORS_ABSENT = f"the ComfyUI anchor workflows are not here ({ANCHORS}; see tests/support/shared.py)"
requires_anchors = pytest.mark.skipif(not ANCHORS.is_dir(), reason=ANCHORS_ABSENT)


def anchor(name: str) -> Path:
    """The anchor file `name`; the calling test skips, naming what is missing, when it is not there."""
    path = ANCHORS / name
    if not path.is_file():
        pytest.skip(ANCHORS_ABSENT if not ANCHORS.is_dir() else f"anchor {name} is not in {ANCHORS}")
    return path
