"""Z-Image (Turbo): recognising its files, reading its architecture, loading it.

Layouts people download: ComfyUI's ``z_image_turbo_bf16.safetensors`` (``diffusion_models``), which
keeps the original Tongyi-MAI names at the top level (``layers.N``, ``noise_refiner.N``,
``context_refiner.N``, ``x_embedder``, ``final_layer``, ``cap_embedder``, ``t_embedder``, pad
tokens), the same names under ``model.diffusion_model.``, and diffusers folders.

The network is a single-stream DiT: caption tokens pass ``context_refiner`` blocks, image tokens
``noise_refiner`` blocks (both at the full width), then both run through ``layers`` together.
Original names differ from diffusers' in three places: the attention's fused ``qkv`` (split into
equal thirds of the width read from the file), ``out``/``q_norm``/``k_norm`` (``to_out.0``/
``norm_q``/``norm_k``), and the patch embedder and final layer, which diffusers keys by patch size
(``all_x_embedder.2-1``). Some files carry an unused top-level ``norm_final`` (from Lumina 2); it
is dropped. The patch size (2) and the RoPE axes (32/48/48 of a 128 head) are not stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodes.diffusion.dit.assembly import (
    Rule,
    apply_rules,
    build_model,
    check_all_used,
    folder_class,
    fused,
    linear,
    read_folder,
    rename,
)
from nodes.diffusion.dit.shapes import (
    KeyIndex,
    Shapes,
    UnusableWeightsError,
    find_prefix,
    heads_from,
    need,
    public_config,
    scaled_rope_axes,
)

if TYPE_CHECKING:
    import torch

NETWORK = "Z-Image transformer"
CLASS_NAME = "ZImageTransformer2DModel"
# Lumina 2 shares most names but modulates through adaLN_modulation.1 (after a SiLU).
MARKER = "layers.0.adaLN_modulation.0.weight"
_IGNORED = ("norm_final.weight",)
# Fixed inside diffusers' ZImageTransformer2DModel (not config fields).
_ADALN_WIDTH = 256
_TIME_HIDDEN = 1024
_TIME_FREQUENCIES = 256


def transformer_prefix(shapes: Mapping[str, Any]) -> str | None:
    return find_prefix(shapes, MARKER)


def recognise(shapes: Shapes) -> bool:
    prefix = transformer_prefix(shapes)
    if prefix is None:
        return False
    required = ("x_embedder.weight", "cap_embedder.1.weight", "layers.0.attention.qkv.weight")
    return all(prefix + k in shapes for k in required)


def recognise_folder(path: str | Path) -> bool:
    return folder_class(path) == CLASS_NAME


def config_from_shapes(shapes: Shapes, *, source: str | Path = "?") -> dict[str, Any]:
    """The ``ZImageTransformer2DModel`` config these tensors need."""
    prefix = transformer_prefix(shapes)
    if prefix is None:
        raise UnusableWeightsError(source, NETWORK, f"no {MARKER} (with or without model.diffusion_model.)")
    idx = KeyIndex(shapes, prefix)
    base = public_config("z_image_turbo", "transformer")

    def fail(reason: str) -> UnusableWeightsError:
        return UnusableWeightsError(source, NETWORK, reason)

    dim, patch_features = need(idx, "x_embedder.weight", source, NETWORK, ndim=2)
    patch, frames = int(base["all_patch_size"][0]), int(base["all_f_patch_size"][0])
    per_token = patch * patch * frames
    if patch_features % per_token:
        raise fail(f"x_embedder takes {patch_features} features, not {patch}x{patch} patches of whole channels")
    out_features = need(idx, "final_layer.linear.weight", source, NETWORK, ndim=2)[0]
    if out_features != patch_features:
        raise fail(f"final_layer.linear gives {out_features} features but x_embedder takes {patch_features}")
    layers = idx.count("layers.", source, NETWORK)
    noise_refiners = idx.count("noise_refiner.", source, NETWORK)
    context_refiners = idx.count("context_refiner.", source, NETWORK)
    if noise_refiners != context_refiners:
        raise fail(f"{noise_refiners} noise_refiner but {context_refiners} context_refiner blocks")

    q_norm = idx.shape("layers.0.attention.q_norm.weight")
    head_dim = q_norm[0] if q_norm else int(base["dim"]) // int(base["n_heads"])
    heads = heads_from(dim, head_dim, source, NETWORK)
    qkv_rows = need(idx, "layers.0.attention.qkv.weight", source, NETWORK, ndim=2)[0]
    if qkv_rows != 3 * dim:
        raise fail(f"a fused qkv of {qkv_rows} rows; diffusers' Z-Image needs 3 x {dim} (no grouped k/v heads)")
    ffn = need(idx, "layers.0.feed_forward.w1.weight", source, NETWORK, ndim=2)[0]
    if ffn != int(dim / 3 * 8):
        raise fail(f"a feed-forward {ffn} wide where diffusers' Z-Image blocks have {int(dim / 3 * 8)}")
    adaln_in = need(idx, "layers.0.adaLN_modulation.0.weight", source, NETWORK, ndim=2)[1]
    time_shape = need(idx, "t_embedder.mlp.0.weight", source, NETWORK, ndim=2)
    if adaln_in != min(dim, _ADALN_WIDTH) or tuple(time_shape) != (_TIME_HIDDEN, _TIME_FREQUENCIES):
        raise fail(
            f"a timestep embedding of shape {list(time_shape)} feeding {adaln_in}-wide modulation; diffusers' "
            f"Z-Image fixes [{_TIME_HIDDEN}, {_TIME_FREQUENCIES}] and {min(dim, _ADALN_WIDTH)}"
        )
    cap_dim = need(idx, "cap_embedder.1.weight", source, NETWORK, ndim=2)[1]

    base.update(
        in_channels=patch_features // per_token,
        dim=dim,
        n_layers=layers,
        n_refiner_layers=noise_refiners,
        n_heads=heads,
        n_kv_heads=heads,
        qk_norm=q_norm is not None,
        cap_feat_dim=cap_dim,
        axes_dims=scaled_rope_axes(base["axes_dims"], head_dim, source, NETWORK),
    )
    return base


def _rules(config: Mapping[str, Any]) -> list[Rule]:
    dim = int(config["dim"])
    key = f"{config['all_patch_size'][0]}-{config['all_f_patch_size'][0]}"
    rules = [
        *linear("x_embedder", f"all_x_embedder.{key}"),
        *linear("final_layer.linear", f"all_final_layer.{key}.linear"),
        *linear("final_layer.adaLN_modulation.1", f"all_final_layer.{key}.adaLN_modulation.1"),
        *linear("t_embedder.mlp.0", "t_embedder.mlp.0"),
        *linear("t_embedder.mlp.2", "t_embedder.mlp.2"),
        rename("cap_embedder.0.weight", "cap_embedder.0.weight"),
        *linear("cap_embedder.1", "cap_embedder.1"),
        rename("x_pad_token", "x_pad_token"),
        rename("cap_pad_token", "cap_pad_token"),
    ]
    refiners = int(config["n_refiner_layers"])
    groups = [("noise_refiner", refiners, True), ("context_refiner", refiners, False)]
    groups.append(("layers", int(config["n_layers"]), True))
    for group, count, modulated in groups:
        for i in range(count):
            b = f"{group}.{i}."
            a = b + "attention."
            rules += fused(a + "qkv", [a + "to_q", a + "to_k", a + "to_v"], (dim, dim, dim), bias=False)
            rules.append(rename(a + "out.weight", a + "to_out.0.weight"))
            if config.get("qk_norm"):
                rules.append(rename(a + "q_norm.weight", a + "norm_q.weight"))
                rules.append(rename(a + "k_norm.weight", a + "norm_k.weight"))
            for norm in ("attention_norm1", "attention_norm2", "ffn_norm1", "ffn_norm2"):
                rules.append(rename(f"{b}{norm}.weight", f"{b}{norm}.weight"))
            for w in ("w1", "w2", "w3"):
                rules.append(rename(f"{b}feed_forward.{w}.weight", f"{b}feed_forward.{w}.weight"))
            if modulated:
                rules += linear(b + "adaLN_modulation.0", b + "adaLN_modulation.0")
    return rules


#: The rules by their public name: LoRA keys in the original layout are mapped with them
#: (:mod:`nodes.diffusion.lora_keys_flow`).
layout_rules = _rules


def convert_state_dict(
    sd: Mapping[str, torch.Tensor], config: Mapping[str, Any], *, source: str | Path = "?"
) -> dict[str, torch.Tensor]:
    """Original Z-Image tensors (any prefix; other parts of the file are ignored) -> diffusers names."""
    prefix = transformer_prefix(sd)
    if prefix is None:
        raise UnusableWeightsError(source, NETWORK, f"no {MARKER}")
    rules = _rules(config)
    check_all_used(sd.keys(), prefix, rules, source, NETWORK, ignore=_IGNORED)
    return apply_rules(sd, prefix, rules, source, NETWORK)


def build(
    config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    dtype: torch.dtype | None = None,
    *,
    source: str | Path = "?",
) -> Any:
    """``ZImageTransformer2DModel`` made of ``state_dict`` (diffusers names), stored dtype unless ``dtype``."""
    from diffusers import ZImageTransformer2DModel

    return build_model(ZImageTransformer2DModel, config, state_dict, dtype=dtype, source=source, network=NETWORK)


def load(path: str | Path, dtype: torch.dtype | None = None) -> Any:
    """A single file (any of the layouts above) or a diffusers folder -> the transformer."""
    from nodes.diffusion.checkpoint.files import open_state_dict, read_shapes

    path = Path(path)
    if path.is_dir():
        config, state, folder = read_folder(path, "transformer", NETWORK)
        return build(config, state, dtype, source=folder)
    config = config_from_shapes(read_shapes(path), source=path)
    return build(config, convert_state_dict(open_state_dict(path), config, source=path), dtype, source=path)


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------

PATCH = 2
#: Submodules that read their own weight's dtype to pick the input's; kept in the compute dtype.
KEEP_IN_COMPUTE = ("t_embedder",)


def predict(
    model: Any, x: torch.Tensor, t: torch.Tensor, conds: Sequence[Any], *, sigma: float | None = None
) -> torch.Tensor:
    """One batched call as ``ZImagePipeline`` makes it: a list of [C, 1, H, W] latents, each with its
    own caption features (valid tokens only, so no padding or mask), and the flipped timestep 1 − σ.
    The network predicts x0 − ε; the velocity ε − x0 is its negative (the pipeline negates it too).
    ``sigma`` decides which ControlNets (Fun ControlNets, ``nodes.diffusion.dit.controlnet``) are active."""
    import torch

    from nodes.diffusion.dit.controlnet import z_image_residuals
    from nodes.diffusion.dit.runtime import check_recipe, pad_to_patch

    check_recipe(conds, "z_image", "Z-Image")
    per = x.shape[0] // len(conds)
    dev, dtype = model.device, model.dtype
    padded, (h, w) = pad_to_patch(x, PATCH)
    latents = list(padded.to(dev, dtype).unsqueeze(2).unbind(0))
    captions = [c.embeds[0].to(dev, dtype) for c in conds for _ in range(per)]
    timestep = (1.0 - t.float()).to(dev)
    control = z_image_residuals(model, conds, per, sigma, latents, timestep, captions)
    out = model.unet(latents, timestep, captions, return_dict=False, **control)[0]
    return -torch.stack([o.float() for o in out]).squeeze(2)[..., :h, :w]
