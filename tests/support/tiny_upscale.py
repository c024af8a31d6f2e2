"""Tiny random upscale models built with spandrel's own architecture classes, saved as people download them.

* ESRGAN (RRDBNet, 4 blocks, 16 features, 4x) in the original ESRGAN layout (``model.0.weight``, …), as
  spandrel's class writes it, and in the RealESRGAN/BasicSR layout (``conv_first``, ``body.N.rdbM``, …,
  wrapped in ``params_ema`` as RealESRGAN's releases are);
* SwinIR (one stage of two blocks, 12 wide, window 4, 2x, pixel-shuffle upsampler) in its official layout.

Weights are seeded, so a test can rebuild them. Only tests import this; spandrel must be importable.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from nodes.diffusion.spandrel_import import import_spandrel


def build_esrgan(seed: int = 0) -> Any:
    import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    model = ESRGAN(num_filters=16, num_blocks=4, scale=4)
    _spread(model, seed)
    return model.eval()


def build_swinir(seed: int = 0) -> Any:
    import_spandrel()
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(seed)
    model = SwinIR(
        upscale=2,
        img_size=16,
        window_size=4,
        embed_dim=12,
        depths=[2],
        num_heads=[2],
        mlp_ratio=2.0,
        upsampler="pixelshuffle",
        resi_connection="1conv",
    )
    _spread(model, seed)
    return model.eval()


def _spread(model: torch.nn.Module, seed: int) -> None:
    """Seeded weights, then the last convolution calibrated so that on a random picture the output has
    mean 0.5 and spread 0.15: it depends visibly on the input and stays mostly inside the 0..1 that
    spandrel clamps to (a random network's raw output sits near 0, half of it clamped away)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5 / p[0].numel() ** 0.5)
            elif "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.01)
        last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        probe = torch.rand(1, 3, 24, 24, generator=gen)
        out = model(probe)
        last.weight.mul_(0.15 / float(out.std()))
        assert last.bias is not None
        last.bias.mul_(0.15 / float(out.std()))
        last.bias.add_(0.5 - float(model(probe).mean()))


def esrgan_state(model: Any) -> dict[str, torch.Tensor]:
    """The original ESRGAN layout (``model.0.weight`` …): what the RRDBNet class itself saves."""
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def realesrgan_state(model: Any) -> dict[str, torch.Tensor]:
    """The RealESRGAN/BasicSR layout of the same weights (4x, upconv): ``conv_first``, ``body.i.rdbj.convk``,
    ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``."""
    old = esrgan_state(model)
    blocks = max(int(m.group(1)) for k in old if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k))) + 1
    tail = {"model.3": "conv_up1", "model.6": "conv_up2", "model.8": "conv_hr", "model.10": "conv_last"}
    new: dict[str, torch.Tensor] = {}
    for key, value in old.items():
        if key.startswith("model.0."):
            new["conv_first." + key.split(".")[-1]] = value
        elif m := re.match(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$", key):
            new[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"] = value
        elif key.startswith(f"model.1.sub.{blocks}."):
            new["conv_body." + key.split(".")[-1]] = value
        else:
            prefix, param = key.rsplit(".", 1)
            new[f"{tail[prefix]}.{param}"] = value
    return new


def swinir_state(model: Any) -> dict[str, torch.Tensor]:
    """SwinIR's official layout (``conv_first``, ``layers.0.residual_group.blocks.0…``), buffers included."""
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def save_safetensors(state: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def save_pth(state: dict[str, Any], path: Path) -> Path:
    """A ``.pth`` as torch.save writes a state dict (RealESRGAN wraps it: pass ``{"params_ema": state}``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, str(path))
    return path
