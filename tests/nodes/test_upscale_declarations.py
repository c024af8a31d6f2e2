"""The upscale-model nodes are declared as ComfyUI's (names, inputs, order, categories), so its workflows map,
and declaring them needs neither spandrel nor torch (they run without spandrel installed, saying so)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from nodes import builtin_registry

ROOT = Path(__file__).parents[2]


def test_declarations_match_comfyui() -> None:
    registry = builtin_registry()
    loader, upscale = registry.get("UpscaleModelLoader"), registry.get("ImageUpscaleWithModel")
    assert loader is not None and upscale is not None
    assert [(i.id, i.type) for i in loader.inputs] == [("model_name", "COMBO")]
    assert [o.type for o in loader.outputs] == ["UPSCALE_MODEL"]
    assert [(i.id, i.type, i.optional) for i in upscale.inputs] == [
        ("upscale_model", "UPSCALE_MODEL", False),
        ("image", "IMAGE", False),
    ]
    assert [o.type for o in upscale.outputs] == ["IMAGE"]
    assert (loader.category, upscale.category) == ("loaders", "image/upscaling")
    assert (loader.display_name, upscale.display_name) == ("Load Upscale Model", "Upscale Image (using Model)")
    assert loader.description and upscale.description


def test_declaring_the_nodes_imports_neither_spandrel_nor_torch() -> None:
    code = (
        "import sys, nodes.upscale_model; "
        "print(sorted(m for m in ('torch', 'spandrel', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
