"""Tiny seeded ControlNets made from the tiny UNets, written in the layouts people download.

``ControlNetModel.from_unet`` copies the UNet's encoder and zero-initialises the convolutions that
feed the UNet (``controlnet_down_blocks``, ``controlnet_mid_block``) and the last one of the image
encoder; with zeros the control would not matter, so every weight gets seeded noise (the zero
convolutions enough for the control to change the result clearly).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nodes.diffusion.checkpoint.ldm_layout import save_state_dict
from nodes.diffusion.controlnet import controlnet_to_ldm

ZERO_MODULES = ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")


def build_tiny_controlnet(unet: Any, *, seed: int = 0, scale: float = 0.1) -> Any:
    """A ControlNet for ``unet`` with seeded random weights (fp32, CPU, eval mode)."""
    from diffusers import ControlNetModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ControlNetModel.from_unet(unet)
    generator = torch.Generator().manual_seed(seed + 100)
    net.eval().requires_grad_(False)
    for name, param in net.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        param.add_(noise * (scale if name.startswith(ZERO_MODULES) else 0.02))
    return net


def write_controlnet_single_file(net: Any, path: Path, *, prefix: str = "control_model.") -> Path:
    """The original layout of lllyasviel's ControlNet files (``control_model.input_hint_block.*`` …)."""
    return save_state_dict(path, controlnet_to_ldm(net.state_dict(), prefix=prefix))


def write_controlnet_diffusers_file(net: Any, path: Path) -> Path:
    """One safetensors file under diffusers' names (``controlnet_cond_embedding.*``, ``down_blocks.*``)."""
    return save_state_dict(path, net.state_dict())


def write_controlnet_folder(net: Any, folder: Path) -> Path:
    """A diffusers folder: ``config.json`` + ``diffusion_pytorch_model.safetensors``."""
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    net.save_pretrained(folder, safe_serialization=True)
    return folder


UNION_ZERO_MODULES = (*ZERO_MODULES, "spatial_ch_projs")


def build_tiny_union_controlnet(unet: Any, *, seed: int = 0, num_control_type: int = 8, scale: float = 0.1) -> Any:
    """A ControlNet Union/ProMax (xinsir's architecture, diffusers' ``ControlNetUnionModel``) for ``unet``
    with seeded random weights. ``from_unet`` keeps the released condition transformer's width (320), which
    must equal the UNet's first width, so the tiny one is rebuilt from that config at the tiny width; its
    eight heads are the released models' (the head count is not stored in the weights)."""
    from diffusers import ControlNetUnionModel

    width = int(unet.config.block_out_channels[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        copied = ControlNetUnionModel.from_unet(unet)
        config = {k: v for k, v in copied.config.items() if not k.startswith("_")}
        net = ControlNetUnionModel.from_config(
            {**config, "num_control_type": num_control_type, "num_trans_channel": width, "num_proj_channel": width}
        )
    union_parts = ("task_embedding", "transformer_layes.", "spatial_ch_projs.", "control_add_embedding.")
    net.load_state_dict({k: v for k, v in copied.state_dict().items() if not k.startswith(union_parts)}, strict=False)
    generator = torch.Generator().manual_seed(seed + 100)
    net.eval().requires_grad_(False)
    for name, param in net.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        param.add_(noise * (scale if name.startswith(UNION_ZERO_MODULES) else 0.02))
    return net
