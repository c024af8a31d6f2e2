"""Which installed model file can stand in for one a workflow names but the user does not have.

Shipped workflows and shared ComfyUI files name the files their author had (`v1-5-pruned-emaonly`,
`sd_xl_base_1.0`); the user has others. A stand-in must be of the same *family* (an SDXL workflow
needs an SDXL checkpoint, the inpaint template an inpainting one), so each installed file's family is
read from its tensor names and shapes (only the safetensors header, cached by path, size and mtime),
while the missing file's family is guessed from its name, the only thing left of it. Candidates of
that family come first, closest name first.

Torch-free: the editor calls this when a document opens.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from graph_engine import Graph, NodeRegistry
from graph_engine.comfy import MODEL_INPUTS
from nodes.folders import list_models, model_folders

# Display names of the families, for messages ("no SDXL checkpoint is installed").
FAMILY_NAMES = {
    "sd1": "SD 1.x",
    "sd1_inpaint": "SD 1.x inpainting",
    "sd2": "SD 2.x",
    "sd2_inpaint": "SD 2.x inpainting",
    "sdxl": "SDXL",
    "sdxl_inpaint": "SDXL inpainting",
    "sdxl_refiner": "SDXL refiner",
    "sd3": "SD3",
    "flux": "FLUX.1",
    "z_image": "Z-Image",
}

# What a file name says about its family, most specific first (names people actually download).
_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"refiner", "sdxl_refiner"),
    (r"flux", "flux"),
    (r"z[_-]?image", "z_image"),
    (r"sd3|sd_3|stable[_-]?diffusion[_-]?3", "sd3"),
    (r"(sd_?xl|xl(?![a-z])|pony|illustrious).*inpaint|inpaint.*(sd_?xl|xl(?![a-z]))", "sdxl_inpaint"),
    (r"sd_?xl|xl(?![a-z])|pony|illustrious", "sdxl"),
    (r"(v2|sd2|768).*inpaint|inpaint.*(v2|sd2)", "sd2_inpaint"),
    (r"v2[-_.]|sd2|768-v|_768", "sd2"),
    (r"inpaint", "sd1_inpaint"),
    (r"v1[-_.]|sd1|sd15|1[-_.]5", "sd1"),
)


def guess_family(name: str) -> str | None:
    """The family a model file's name suggests, or None when it says nothing."""
    lowered = name.lower()
    for pattern, family in _NAME_RULES:
        if re.search(pattern, lowered):
            return family
    return None


def family_of_installed(kind: str, name: str) -> str | None:
    """The family of an installed file (`sdxl`, `sd1_inpaint`, ...), read from its weights; None if unreadable."""
    try:
        path = model_folders().resolve(kind, name)
        stat = path.stat()
    except (OSError, LookupError, ValueError):
        return None
    return _family_of_path(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=512)
def _family_of_path(path: str, _size: int, _mtime: int) -> str | None:
    from nodes.diffusion.checkpoint.detect import detect_family
    from nodes.diffusion.checkpoint.files import read_shapes
    from nodes.diffusion.errors import ModelError

    p = Path(path)
    if p.is_dir():  # a diffusers folder says what it is in model_index.json
        return _family_of_diffusers_folder(p)
    try:
        shapes = read_shapes(p)
    except (ModelError, OSError, ValueError):
        return None
    from nodes import families

    transformer = families.recognise_single_file(shapes)
    if transformer is not None and transformer.supported and transformer.denoiser_loader is not None:
        return transformer.name  # SD3 / FLUX / Z-Image (all-in-one or diffusion model alone)
    try:
        family = detect_family(shapes, p)
    except (ModelError, OSError, ValueError):
        return None
    first_conv = shapes.get("model.diffusion_model.input_blocks.0.0.weight")
    if first_conv is not None and len(first_conv) > 1 and first_conv[1] == 9:
        return f"{family}_inpaint"
    return family


def _family_of_diffusers_folder(folder: Path) -> str | None:
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pipeline = str(index.get("_class_name", ""))
    inpaint = "_inpaint" if unet.get("in_channels") == 9 else ""
    if "XL" in pipeline:
        return ("sdxl_refiner" if index.get("text_encoder") in (None, [None, None]) else "sdxl") + inpaint
    cross = unet.get("cross_attention_dim")
    return ("sd2" if cross == 1024 else "sd1") + inpaint


@dataclass
class MissingModel:
    """One model file the graph names that is not installed, where it is used, and what could replace it."""

    kind: str  # the model folder kind: "checkpoints", "vae", "loras"
    name: str
    family: str | None  # guessed from the name
    uses: list[tuple[int, str]] = field(default_factory=list)  # (node id, input id)
    # Installed files, best first: the same family first (closest name first), then the rest by name.
    candidates: list[str] = field(default_factory=list)
    same_family: int = 0  # how many of `candidates` are of `family`

    @property
    def family_name(self) -> str:
        return FAMILY_NAMES.get(self.family or "", "")

    @property
    def sole_match(self) -> str | None:
        """The one installed file of the right family, when there is exactly one (safe to pick by itself)."""
        return self.candidates[0] if self.family is not None and self.same_family == 1 else None


def rank_candidates(
    name: str, family: str | None, installed: Iterable[str], family_of: Callable[[str], str | None]
) -> tuple[list[str], int]:
    """Installed names, best stand-in first, and how many lead the list because they share `family`."""
    installed = list(installed)
    similarity = {n: difflib.SequenceMatcher(None, name.lower(), n.lower()).ratio() for n in installed}
    same = [n for n in installed if family is not None and family_of(n) == family]
    same.sort(key=lambda n: (-similarity[n], n))
    rest = sorted((n for n in installed if n not in same), key=lambda n: (-similarity[n], n))
    return same + rest, len(same)


def find_missing_models(graph: Graph, registry: NodeRegistry) -> list[MissingModel]:
    """Every model file the graph's loader nodes name that is not installed, in node order."""
    listed: dict[str, list[str]] = {}
    found: dict[tuple[str, str], MissingModel] = {}
    for node in sorted(graph.nodes.values(), key=lambda n: n.id):
        spec = registry.get(node.type)
        if spec is None:
            continue
        linked = graph.inputs_of(node.id)
        for inp in spec.inputs:
            kind = MODEL_INPUTS.get(inp.id)
            value = node.values.get(inp.id)
            if kind is None or inp.type != "COMBO" or inp.id in linked or not isinstance(value, str):
                continue
            if kind not in listed:
                listed[kind] = list_models(kind)
            if value in listed[kind]:
                continue
            entry = found.get((kind, value))
            if entry is None:
                family = guess_family(value) if kind in ("checkpoints", "diffusion_models") else None
                candidates, same = rank_candidates(
                    value, family, listed[kind], lambda n, k=kind: family_of_installed(k, n)
                )
                entry = found[(kind, value)] = MissingModel(kind, value, family, [], candidates, same)
            entry.uses.append((node.id, inp.id))
    return list(found.values())
