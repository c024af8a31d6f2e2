"""Tiny seeded FLUX.1 and SD3 ControlNets made from the tiny transformers of ``tiny_flow``.

``FluxControlNetModel.from_transformer`` / ``SD3ControlNetModel.from_transformer`` copy the transformer's
embedders and first blocks and zero-initialise what feeds the transformer (``controlnet_blocks``,
``controlnet_single_blocks``) and the control-image embedder (``controlnet_x_embedder`` /
``pos_embed_input``); with zeros the control would not matter, so every weight gets seeded noise, the
zero-initialised ones enough for the control to change the result clearly. The FLUX ControlNet has one
double and one single block against the transformer's two of each, so each residual serves two blocks
(diffusers' ``interval_control``), as the released 5-block ControlNets do for FLUX's 19.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nodes.diffusion.checkpoint.ldm_layout import save_state_dict

ZERO_MODULES = (
    "controlnet_blocks",
    "controlnet_single_blocks",
    "controlnet_x_embedder",
    "pos_embed_input",
)


def _noised(net: Any, seed: int, scale: float) -> Any:
    generator = torch.Generator().manual_seed(seed + 100)
    net.eval().requires_grad_(False)
    for name, param in net.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        param.add_(noise * (scale if name.startswith(ZERO_MODULES) else 0.02))
    return net


def tiny_flux_controlnet(transformer: Any, *, seed: int = 0, scale: float = 0.1, num_mode: int | None = None) -> Any:
    """A FLUX.1 ControlNet (InstantX's architecture: VAE-latent control input) for the tiny FLUX; with
    ``num_mode`` a union one (InstantX's ``FLUX.1-dev-Controlnet-Union`` has 10 modes), which
    ``from_transformer`` cannot make, so it is rebuilt from that config with the copied weights."""
    from diffusers import FluxControlNetModel

    cfg = transformer.config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FluxControlNetModel.from_transformer(
            transformer,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=cfg.attention_head_dim,
            num_attention_heads=cfg.num_attention_heads,
        )
        if num_mode is not None:
            config = {k: v for k, v in net.config.items() if not k.startswith("_")}
            union = FluxControlNetModel.from_config({**config, "num_mode": num_mode})
            union.load_state_dict(net.state_dict(), strict=False)
            net = union
    return _noised(net, seed, scale)


def tiny_sd3_controlnet(transformer: Any, *, seed: int = 0, scale: float = 0.1) -> Any:
    """An SD3 ControlNet (InstantX's architecture: two joint blocks, zeroed pooled text) for the tiny SD3."""
    from diffusers import SD3ControlNetModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SD3ControlNetModel.from_transformer(transformer, num_layers=2, num_extra_conditioning_channels=0)
    return _noised(net, seed, scale)


def write_single_file(net: Any, path: Path) -> Path:
    """One safetensors file under diffusers' names, as InstantX and Shakker Labs publish them."""
    return save_state_dict(path, {k: v.detach().clone() for k, v in net.state_dict().items()})


def write_folder(net: Any, folder: Path) -> Path:
    """A diffusers folder: ``config.json`` + ``diffusion_pytorch_model.safetensors``."""
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    net.save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_sd35_large_controlnet(*, seed: int = 0, scale: float = 0.1) -> Any:
    """An SD3.5-Large-style ControlNet for the tiny SD3 (64 wide): plain blocks without text, no patch
    embedder of its own, the pooled vector not zeroed. Its head is the public 64 wide (one head), as the
    loader assumes for files without q/k norms."""
    from diffusers import SD3ControlNetModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SD3ControlNetModel(
            patch_size=2,
            in_channels=16,
            out_channels=16,
            num_layers=2,
            attention_head_dim=64,
            num_attention_heads=1,
            joint_attention_dim=None,
            caption_projection_dim=64,
            pooled_projection_dim=160,
            pos_embed_max_size=None,
            pos_embed_type=None,
            use_pos_embed=False,
            force_zeros_for_pooled_projection=False,
        )
    return _noised(net, seed, scale)


def sd35_controlnet_to_original(net: Any) -> dict[str, torch.Tensor]:
    """Stability's layout of the SD3.5 Large ControlNets, written from the module tree: per block a fused
    ``attn.qkv``, ``attn.proj``, ``mlp.fc1``/``fc2`` and ``adaLN_modulation.1``; the rest as diffusers names it."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in net.state_dict().items():
        if not name.startswith("transformer_blocks."):
            out[name] = tensor
    for i, block in enumerate(net.transformer_blocks):
        b, attn = f"transformer_blocks.{i}.", block.attn
        for param in ("weight", "bias"):
            out[f"{b}attn.qkv.{param}"] = torch.cat([getattr(m, param) for m in (attn.to_q, attn.to_k, attn.to_v)])
            out[f"{b}attn.proj.{param}"] = getattr(attn.to_out[0], param)
            out[f"{b}mlp.fc1.{param}"] = getattr(block.ff.net[0].proj, param)
            out[f"{b}mlp.fc2.{param}"] = getattr(block.ff.net[2], param)
            out[f"{b}adaLN_modulation.1.{param}"] = getattr(block.norm1.linear, param)
    return {k: v.detach().clone() for k, v in out.items()}


def tiny_z_image_controlnet(
    transformer: Any,
    *,
    places: list[int],
    refiner_places: list[int] | None,
    in_dim: int,
    refiner: str | None,
    seed: int = 0,
    scale: float = 0.1,
) -> Any:
    """A Z-Image-Turbo Fun ControlNet (diffusers' ``ZImageControlNetModel``) as wide as ``transformer``:
    ``refiner`` None is the 1.0 layout, "control_noise_refiner" 2.1's (its own trained refiner),
    "control_layers" 2.0's. Its zero-initialised projections (``before_proj``, ``after_proj``) get noise
    enough for the control to change the result."""
    from diffusers import ZImageControlNetModel

    cfg = transformer.config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ZImageControlNetModel(
            control_layers_places=places,
            control_refiner_layers_places=refiner_places,
            control_in_dim=in_dim,
            add_control_noise_refiner=refiner,
            all_patch_size=tuple(cfg.all_patch_size),
            all_f_patch_size=tuple(cfg.all_f_patch_size),
            dim=cfg.dim,
            n_refiner_layers=cfg.n_refiner_layers,
            n_heads=cfg.n_heads,
            n_kv_heads=cfg.n_kv_heads,
            norm_eps=cfg.norm_eps,
            qk_norm=cfg.qk_norm,
        )
    generator = torch.Generator().manual_seed(seed + 100)
    net.eval().requires_grad_(False)
    for name, param in net.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        param.add_(noise * (scale if ("before_proj" in name or "after_proj" in name) else 0.02))
    return net
