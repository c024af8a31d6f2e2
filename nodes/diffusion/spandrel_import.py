"""Importing spandrel (the upscale-model architectures) with or without a working torchvision.

spandrel detects and builds ESRGAN, SwinIR, HAT, DAT and some forty other image-model architectures
from their weights. Its package ``__init__`` imports every architecture, and two of them import
torchvision at module level: RestoreFormer (face restoration; it only calls
``torchvision.transforms.functional.normalize``) and LaMa (inpainting; ``rotate``). None of the
upscalers needs torchvision.

torchvision is the trap: PyPI's torchvision wheels are CUDA builds (``_C.so`` links ``libtorch_cuda``),
so next to a CPU build of torch ``import torchvision`` fails ("operator torchvision::nms does not
exist"), and once such a torchvision is installed, transformers imports it too and breaks (CLIP's
import fails). The CPU torchvision wheels are only on PyTorch's own index. So on a CPU torch,
``scripts/install_upscale.sh`` installs spandrel without its dependencies and no torchvision at all,
and this module imports spandrel with a stand-in for the one torchvision module those two
architectures name:

* ``normalize`` is implemented exactly (``(x - mean) / std`` per channel), so RestoreFormer still runs;
* ``rotate`` raises a message saying LaMa needs torchvision (sdgraph refuses LaMa anyway: it is an
  inpainting model, not an image-to-image upscaler).

The stand-in is put into ``sys.modules`` only for the duration of ``import spandrel`` and taken out
again, so any later ``import torchvision`` elsewhere behaves exactly as it would have. Where a real
torchvision imports (a GPU install), it is used and nothing is stood in.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Sequence
from enum import Enum
from typing import Any

# Works next to any torch: the upscalers need no torchvision (a GPU install may add the matched one,
# see scripts/install_upscale.sh and the README).
INSTALL_HINT = (
    "Install it with scripts/install_upscale.sh (it never replaces torch), or: "
    "pip install --no-deps 'spandrel>=0.4.2,<0.5' && pip install einops"
)

_lock = threading.Lock()
_STAND_IN_NAMES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


class SpandrelUnavailable(Exception):
    """spandrel is not installed (or cannot be imported); the message says how to install it."""

    user_facing = True


class _InterpolationMode(Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _normalize(tensor: Any, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> Any:
    """torchvision's ``normalize`` for a float tensor ``[..., C, H, W]``: ``(x - mean[c]) / std[c]``."""
    import torch

    mean_t = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    if inplace:
        return tensor.sub_(mean_t).div_(std_t)
    return (tensor - mean_t) / std_t


def _rotate(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError(
        "this model (LaMa) needs torchvision's rotate, and torchvision is not installed next to this torch"
    )


def _stand_in_modules() -> dict[str, types.ModuleType]:
    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.normalize = _normalize  # type: ignore[attr-defined]
    functional.rotate = _rotate  # type: ignore[attr-defined]
    functional.InterpolationMode = _InterpolationMode  # type: ignore[attr-defined]
    transforms.functional = functional  # type: ignore[attr-defined]
    root.transforms = transforms  # type: ignore[attr-defined]
    root.__sdgraph_stand_in__ = True  # type: ignore[attr-defined]
    return {m.__name__: m for m in (root, transforms, functional)}


def torchvision_works() -> bool:
    """Whether a real torchvision imports next to this torch (a broken one raises on import)."""
    if "torchvision" in sys.modules:
        return not getattr(sys.modules["torchvision"], "__sdgraph_stand_in__", False)
    try:
        import torchvision  # noqa: F401
    except Exception:
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]  # a half-imported torchvision must not look imported
        return False
    return True


def import_spandrel() -> types.ModuleType:
    """The ``spandrel`` module, imported with the real torchvision when it works, else with the stand-in.

    Raises `SpandrelUnavailable` (with the install command) when spandrel itself is missing.
    """
    with _lock:
        loaded = sys.modules.get("spandrel")
        if loaded is not None:
            return loaded
        try:
            import einops  # noqa: F401  (spandrel's one pure dependency sdgraph does not otherwise need)
        except ModuleNotFoundError:
            raise SpandrelUnavailable(
                "Upscale models need the spandrel package (and einops), which is not installed. " + INSTALL_HINT
            ) from None
        use_stand_in = not torchvision_works()
        if use_stand_in:
            # transformers and diffusers decide at import whether torchvision exists (find_spec, which
            # raises on a module without a spec); importing them first means no other thread can ask
            # while the stand-in is in sys.modules, and they keep the true answer: no torchvision.
            import diffusers  # noqa: F401
            import transformers  # noqa: F401

            sys.modules.update(_stand_in_modules())
        try:
            import spandrel
        except ModuleNotFoundError as exc:
            if exc.name == "spandrel":
                raise SpandrelUnavailable(
                    "Upscale models need the spandrel package, which is not installed. " + INSTALL_HINT
                ) from None
            raise SpandrelUnavailable(f"spandrel could not be imported: {exc}. " + INSTALL_HINT) from exc
        finally:
            if use_stand_in:
                for name in _STAND_IN_NAMES:
                    sys.modules.pop(name, None)
        module: types.ModuleType = spandrel
        return module


def spandrel_available() -> bool:
    """Whether upscale models can be loaded (tests skip on False, naming `INSTALL_HINT`)."""
    try:
        import_spandrel()
    except SpandrelUnavailable:
        return False
    return True
