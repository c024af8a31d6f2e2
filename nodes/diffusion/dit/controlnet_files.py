"""ControlNets for the flow transformers (FLUX.1, SD3/3.5): recognising their files and loading them.

Layouts people download, and what happens to each:

* diffusers-layout single files (InstantX's and Shakker Labs' FLUX.1 ControlNets, InstantX's SD3
  ControlNets): the names of diffusers' ``FluxControlNetModel`` / ``SD3ControlNetModel``
  (``transformer_blocks.N.attn.to_q``, ``controlnet_blocks.N``, ``controlnet_x_embedder`` for FLUX,
  ``pos_embed_input`` for SD3) with no config: the architecture is read from the shapes as for the
  transformers (width from the embedders, head size from the q/k norm scale, depth from the block count);
* Stability's SD3.5 Large ControlNets (``sd3.5_large_controlnet_canny.safetensors`` …): plain blocks with
  no text context, their original names (fused ``attn.qkv``, ``mlp.fc1``) renamed by :func:`sai_to_diffusers`;
  they have no q/k norms, so the head size is the public 64 (SD3.5 Large: 38 heads of 64), and no patch
  embedder of their own (they use the transformer's, as diffusers' pipeline arranges);
* diffusers folders (``config.json`` with ``_class_name`` FluxControlNetModel / SD3ControlNetModel).

FLUX.1 union ControlNets (InstantX's and Shakker Labs' ``FLUX.1-dev-Controlnet-Union``) are the same
network with a ``controlnet_mode_embedder``: its row count is ``num_mode`` (the control type becomes one
more text token).

Z-Image-Turbo's "Fun" ControlNets (alibaba-pai's, diffusers' ``ZImageControlNetModel``: ``control_layers``,
``control_all_x_embedder``, ``control_noise_refiner``) are read from their single files (and folders):
width, heads and control channels from the shapes, which transformer layers their hints feed from the
shipped ``resources/dit_configs/z_image_fun_controlnet/variants.json`` (by number of control layers; a
count no release has is refused), and the noise-refiner variant from the weights (:func:`z_image_config`).

Recognised and refused, each with one message naming the file: XLabs' FLUX ControlNets (Black Forest
Labs' ``double_blocks`` names with a pixel-space ``input_hint_block``) and SD3 inpainting ControlNets
(extra conditioning channels).

The weights stay in the dtype they were saved in and each layer computes in the working dtype, as for
the transformers (``nodes.diffusion.dit.runtime.set_compute_dtype``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nodes.diffusion.dit.shapes import KeyIndex, Shapes, UnusableWeightsError, need, public_config, scaled_rope_axes
from nodes.diffusion.errors import ModelError

FLUX_CLASS = "FluxControlNetModel"
SD3_CLASS = "SD3ControlNetModel"
Z_IMAGE_CLASS = "ZImageControlNetModel"
CLASS_OF_FAMILY = {"flux": FLUX_CLASS, "sd3": SD3_CLASS, "z_image": Z_IMAGE_CLASS}
NETWORK = {"flux": "FLUX.1 ControlNet", "sd3": "SD3 ControlNet", "z_image": "Z-Image ControlNet"}
Z_IMAGE_MARKERS = ("control_layers.", "control_all_x_embedder.", "control_noise_refiner.")


class FlowControlNetFileError(ModelError):
    """A transformer ControlNet file sdgraph recognises but cannot run (the message says why)."""

    user_facing = True


def _refusal(path: Path, what: str, advice: str) -> FlowControlNetFileError:
    return FlowControlNetFileError(f"{path.name} is {what}; {advice}")


def recognise(shapes: Shapes, path: Path) -> str | None:
    """``"flux"``, ``"sd3"`` or ``"z_image"`` for a transformer ControlNet sdgraph runs, None when the tensors
    are no transformer ControlNet at all; a recognised variant it cannot run raises one clear message."""
    has = shapes.__contains__
    controls = any(k.startswith("controlnet_blocks.") for k in shapes)
    if any(k.startswith(Z_IMAGE_MARKERS) for k in shapes):
        return "z_image"
    if controls and has("double_blocks.0.img_attn.qkv.weight"):
        raise _refusal(
            path,
            "an XLabs FLUX.1 ControlNet (Black Forest Labs' names with a pixel-space input_hint_block)",
            "sdgraph runs the diffusers-layout FLUX.1 ControlNets (InstantX, Shakker Labs) but not this layout",
        )
    if has("controlnet_x_embedder.weight") or (controls and has("controlnet_single_blocks.0.weight")):
        if has("input_hint_block.conv_in.weight"):
            raise _refusal(
                path,
                "a FLUX.1 ControlNet with a pixel-space input_hint_block (XLabs-style)",
                "sdgraph runs the FLUX.1 ControlNets that take the VAE-encoded control image (InstantX, Shakker Labs)",
            )
        return "flux"
    if has("pos_embed_input.proj.weight") and controls:
        return "sd3"
    return None


def folder_family(path: Path) -> str | None:
    """``"flux"``/``"sd3"``/``"z_image"`` for a diffusers folder of a transformer ControlNet, None for another
    class."""
    config_path = path / "config.json"
    if not config_path.is_file():
        return None
    name = json.loads(config_path.read_text(encoding="utf-8")).get("_class_name")
    return next((family for family, cls in CLASS_OF_FAMILY.items() if cls == name), None)


def flux_config(shapes: Shapes, *, source: str | Path = "?") -> dict[str, Any]:
    """The ``FluxControlNetModel`` config these diffusers-named tensors need."""
    network = NETWORK["flux"]
    idx = KeyIndex(shapes)
    inner, in_channels = need(idx, "x_embedder.weight", source, network, ndim=2)
    layers = idx.count("transformer_blocks.", source, network)
    singles = idx.count("single_transformer_blocks.", source, network)
    norm = next(
        (k for k in ("transformer_blocks.0.attn.norm_q.weight", "single_transformer_blocks.0.attn.norm_q.weight")
         if idx.has(k)),
        None,
    )  # fmt: skip
    if norm is None:
        raise UnusableWeightsError(source, network, "it has no transformer block to read the head size from")
    head_dim = need(idx, norm, source, network, ndim=1)[0]
    if inner % head_dim:
        raise UnusableWeightsError(source, network, f"width {inner} is not a whole number of {head_dim}-wide heads")
    base = public_config("flux1_dev", "transformer")
    return {
        "patch_size": 1,
        "in_channels": in_channels,
        "num_layers": layers,
        "num_single_layers": singles,
        "attention_head_dim": head_dim,
        "num_attention_heads": inner // head_dim,
        "joint_attention_dim": need(idx, "context_embedder.weight", source, network, ndim=2)[1],
        "pooled_projection_dim": need(idx, "time_text_embed.text_embedder.linear_1.weight", source, network, ndim=2)[1],
        "guidance_embeds": idx.has("time_text_embed.guidance_embedder.linear_1.weight"),
        "axes_dims_rope": scaled_rope_axes(base["axes_dims_rope"], head_dim, source, network),
        "num_mode": modes[0] if (modes := idx.shape("controlnet_mode_embedder.weight")) else None,
    }


def sd3_config(shapes: Shapes, *, source: str | Path = "?") -> dict[str, Any]:
    """The ``SD3ControlNetModel`` config these diffusers-named tensors need.

    Not in the weights: whether the pooled text vector is zeroed for the ControlNet. InstantX's SD3
    ControlNets (joint blocks with a text embedder) were trained with zeros and no VAE shift — diffusers'
    default ``force_zeros_for_pooled_projection=True`` — so a file with joint blocks gets that; one with
    plain blocks (SD3.5 Large's, no text context) gets False, as diffusers' conversion writes it."""
    network = NETWORK["sd3"]
    idx = KeyIndex(shapes)
    inner, cond_channels, patch, _ = need(idx, "pos_embed_input.proj.weight", source, network, ndim=4)
    use_pos_embed = idx.has("pos_embed.proj.weight")
    in_channels = need(idx, "pos_embed.proj.weight", source, network, ndim=4)[1] if use_pos_embed else 16
    if cond_channels != in_channels:
        raise FlowControlNetFileError(
            f"{Path(source).name} is an SD3 ControlNet with {cond_channels - in_channels} extra conditioning "
            "channels (an inpainting ControlNet); sdgraph runs the ControlNets that take the control image alone"
        )
    layers = idx.count("transformer_blocks.", source, network)
    q_norm = idx.shape("transformer_blocks.0.attn.norm_q.weight")
    head_dim = q_norm[0] if q_norm else 64
    if inner % head_dim:
        raise UnusableWeightsError(source, network, f"width {inner} is not a whole number of {head_dim}-wide heads")
    context = idx.shape("context_embedder.weight")
    max_size = None
    if use_pos_embed:
        table = need(idx, "pos_embed.pos_embed", source, network, ndim=3)[1]
        max_size = round(table**0.5)
        if max_size * max_size != table:
            raise UnusableWeightsError(source, network, f"a position table of {table} entries is not square")
    return {
        "sample_size": 128,
        "patch_size": patch,
        "in_channels": in_channels,
        "out_channels": in_channels,
        "num_layers": layers,
        "attention_head_dim": head_dim,
        "num_attention_heads": inner // head_dim,
        "joint_attention_dim": context[1] if context else None,
        "caption_projection_dim": context[0] if context else inner,
        "pooled_projection_dim": need(idx, "time_text_embed.text_embedder.linear_1.weight", source, network, ndim=2)[1],
        "pos_embed_max_size": max_size,
        "extra_conditioning_channels": 0,
        "dual_attention_layers": tuple(
            i for i in range(layers) if idx.has(f"transformer_blocks.{i}.attn2.to_q.weight")
        ),
        "qk_norm": "rms_norm" if q_norm else None,
        "pos_embed_type": "sincos" if use_pos_embed else None,
        "use_pos_embed": use_pos_embed,
        "force_zeros_for_pooled_projection": context is not None,
    }


def z_image_config(shapes: Shapes, state: Mapping[str, Any], *, source: str | Path = "?") -> dict[str, Any]:
    """The ``ZImageControlNetModel`` config of a Fun ControlNet's single file.

    From the shapes: the width and the control input's channels (``control_all_x_embedder.2-1``, patch
    2×2), the head size (q norm), the number of control and refiner blocks. From the shipped variants
    (by control-block count): the transformer layers the hints feed. From the weights: the noise-refiner
    variant — none (1.0: plain refiner blocks), the ControlNet's own trained refiner (2.1: a non-zero
    ``control_noise_refiner.0.before_proj``) or its control blocks run as refiner (2.0), as diffusers tells
    the releases apart."""
    from nodes.diffusion.dit.shapes import CONFIG_ROOT

    network = NETWORK["z_image"]
    idx = KeyIndex(shapes)
    embedder = next((k for k in shapes if k.startswith("control_all_x_embedder.") and k.endswith(".weight")), None)
    if embedder != "control_all_x_embedder.2-1.weight":
        raise UnusableWeightsError(source, network, "it has no control_all_x_embedder.2-1 (2×2 patch) weights")
    dim, patch_in = need(idx, embedder, source, network, ndim=2)
    head_dim = need(idx, "control_layers.0.attention.norm_q.weight", source, network, ndim=1)[0]
    count = len(idx.indices("control_layers."))
    variants = json.loads((CONFIG_ROOT / "z_image_fun_controlnet" / "variants.json").read_text(encoding="utf-8"))
    variant = variants.get(str(count))
    if variant is None or dim % head_dim or patch_in % 4:
        known = ", ".join(k for k in variants if not k.startswith("_"))
        raise FlowControlNetFileError(
            f"{Path(source).name} is a Z-Image Fun ControlNet with {count} control layers; sdgraph knows the "
            f"released ones ({known} layers) and where their hints go — this one's layout is not in its weights"
        )
    before = state.get("control_noise_refiner.0.before_proj.weight")
    if variant["control_refiner_layers_places"] is None:
        refiner = None
    elif before is not None and bool(before.float().abs().max() > 0):
        refiner = "control_noise_refiner"
    else:
        refiner = "control_layers"
    return {
        "control_layers_places": variant["control_layers_places"],
        "control_refiner_layers_places": variant["control_refiner_layers_places"],
        "control_in_dim": patch_in // 4,
        "add_control_noise_refiner": refiner,
        "all_patch_size": (2,),
        "all_f_patch_size": (1,),
        "dim": dim,
        "n_refiner_layers": len(idx.indices("control_noise_refiner.")) or 2,
        "n_heads": dim // head_dim,
        "n_kv_heads": dim // head_dim,
        "norm_eps": 1e-5,
        "qk_norm": True,
    }


def _class(family: str) -> type[Any]:
    import diffusers

    cls: type[Any] = getattr(diffusers, CLASS_OF_FAMILY[family])
    return cls


def build(
    family: str, config: Mapping[str, Any], state: Mapping[str, Any], *, source: str | Path, dtype: Any, device: Any
) -> Any:
    """The ControlNet made of ``state`` (stored dtype kept), on ``device``, computing in ``dtype``."""
    import inspect

    import torch

    from nodes.diffusion.dit.assembly import build_model
    from nodes.diffusion.dit.runtime import set_compute_dtype, stored_dtype

    cls = _class(family)
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    config = {k: v for k, v in config.items() if k in allowed}
    network = build_model(cls, config, state, dtype=None, source=source, network=NETWORK[family])
    stored = stored_dtype(p.dtype for p in network.parameters())
    network.to(torch.device(device))
    set_compute_dtype(network, stored, dtype)
    return network


def load(path: Path, family: str, *, device: Any, dtype: Any) -> Any:
    """A single file (diffusers names) or a diffusers folder -> the ControlNet network."""
    from nodes.diffusion.checkpoint.files import open_state_dict, read_shapes
    from nodes.diffusion.dit.assembly import read_folder

    if path.is_dir():
        config, state, folder = read_folder(path, ".", NETWORK[family])
        _check_folder_variant(config, folder)
        return build(family, config, state, source=folder, dtype=dtype, device=device)
    shapes = read_shapes(path)
    lazy = open_state_dict(path)
    state = {k: lazy[k] for k in lazy}
    if family == "z_image":
        config = z_image_config(shapes, state, source=path)
        if config["add_control_noise_refiner"] == "control_layers":  # 2.0's untrained refiner is not used
            state = {k: v for k, v in state.items() if not k.startswith("control_noise_refiner.")}
        return build(family, config, state, source=path, dtype=dtype, device=device)
    config = flux_config(shapes, source=path) if family == "flux" else sd3_config(shapes, source=path)
    if family == "sd3" and SAI_MARKER in shapes:
        state = sai_to_diffusers(state, config, source=path)
    return build(family, config, state, source=path, dtype=dtype, device=device)


SAI_MARKER = "transformer_blocks.0.attn.qkv.weight"
"""Stability's SD3.5 Large ControlNets keep their blocks' original names (fused ``attn.qkv``, ``mlp.fc1``)."""


def sai_to_diffusers(state: Mapping[str, Any], config: Mapping[str, Any], *, source: str | Path) -> dict[str, Any]:
    """Stability's SD3.5 Large ControlNet names -> ``SD3ControlNetModel``'s: per block the fused ``attn.qkv``
    split in thirds, ``attn.proj``/``mlp.fc1``/``mlp.fc2``/``adaLN_modulation.1`` renamed; the embedders and
    ``controlnet_blocks`` already have diffusers' names. (The mapping diffusers'
    ``scripts/convert_sd3_controlnet_to_diffusers.py`` applies, written as rules.)"""
    from nodes.diffusion.dit.assembly import apply_rules, fused, linear

    width = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    rules = []
    for i in range(int(config["num_layers"])):
        b = f"transformer_blocks.{i}."
        rules += fused(b + "attn.qkv", [b + "attn.to_q", b + "attn.to_k", b + "attn.to_v"], (width,) * 3)
        rules += linear(b + "attn.proj", b + "attn.to_out.0") + linear(b + "mlp.fc1", b + "ff.net.0.proj")
        rules += linear(b + "mlp.fc2", b + "ff.net.2") + linear(b + "adaLN_modulation.1", b + "norm1.linear")
    converted = apply_rules(state, "", rules, source, NETWORK["sd3"])
    placed = {r.source for r in rules}
    return converted | {k: v for k, v in state.items() if k not in placed}


def _check_folder_variant(config: Mapping[str, Any], folder: Path) -> None:
    if config.get("conditioning_embedding_channels") is not None:
        raise _refusal(
            folder,
            "a FLUX.1 ControlNet with a pixel-space input_hint_block (XLabs-style)",
            "sdgraph runs the FLUX.1 ControlNets that take the VAE-encoded control image",
        )
    if config.get("extra_conditioning_channels"):
        raise _refusal(folder, "an SD3 inpainting ControlNet", "sdgraph runs the ControlNets that take the image alone")
