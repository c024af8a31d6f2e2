"""Stable Diffusion 3 / 3.5 MMDiT: recognising its files, reading its architecture, loading it.

Layouts people download:

* Stability's single files (``sd3.5_medium.safetensors``, ``sd3.5_large.safetensors``, the
  ``…incl_clips…`` variants): the MMDiT under ``model.diffusion_model.`` (``joint_blocks.N.x_block`` /
  ``context_block``), often with the VAE (``first_stage_model.``) and text encoders
  (``text_encoders.clip_l/clip_g/t5xxl.transformer.``) in the same file;
* transformer-only files (ComfyUI's ``diffusion_models``) with the same names and no prefix;
* diffusers folders (``transformer/config.json`` + weights).

Architecture from shapes: width from the patch embedder, head size from the q/k RMSNorm scale
(SD3.5; SD3.0 has none and uses the public 64), depth from the block count, SD3.5 Medium's
MMDiT-X blocks from which ones carry ``x_block.attn2``, the positional table's side from
``pos_embed``. The last block's context stream is "pre-only": it has no output projection or MLP,
and its AdaLN yields (shift, scale) where diffusers expects (scale, shift), as in the final layer.
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
    swapped,
)
from nodes.diffusion.dit.shapes import (
    KeyIndex,
    Shapes,
    UnusableWeightsError,
    find_prefix,
    heads_from,
    need,
    public_config,
    whole_sqrt,
)

if TYPE_CHECKING:
    import torch

NETWORK = "SD3 MMDiT"
CLASS_NAME = "SD3Transformer2DModel"
MARKER = "joint_blocks.0.x_block.attn.qkv.weight"
VAE_PREFIX = "first_stage_model."
# Text encoders inside all-in-one files, in SD3's order (CLIP-L, CLIP-G, T5-XXL).
TEXT_ENCODER_PREFIXES = {
    "clip_l": "text_encoders.clip_l.transformer.",
    "clip_g": "text_encoders.clip_g.transformer.",
    "t5xxl": "text_encoders.t5xxl.transformer.",
}
_TEXT_ENCODER_MARKERS = {
    "clip_l": "text_model.embeddings.token_embedding.weight",
    "clip_g": "text_model.embeddings.token_embedding.weight",
    "t5xxl": "shared.weight",
}


def transformer_prefix(shapes: Mapping[str, Any]) -> str | None:
    return find_prefix(shapes, MARKER)


def recognise(shapes: Shapes) -> bool:
    prefix = transformer_prefix(shapes)
    return prefix is not None and prefix + "x_embedder.proj.weight" in shapes


def recognise_folder(path: str | Path) -> bool:
    return folder_class(path) == CLASS_NAME


def components(shapes: Shapes) -> dict[str, str | None]:
    """Which parts an SD3 file carries: key prefix per part (None when absent)."""
    found: dict[str, str | None] = {"transformer": transformer_prefix(shapes)}
    found["vae"] = VAE_PREFIX if VAE_PREFIX + "decoder.conv_in.weight" in shapes else None
    for name, prefix in TEXT_ENCODER_PREFIXES.items():
        found[name] = prefix if prefix + _TEXT_ENCODER_MARKERS[name] in shapes else None
    return found


def variant(shapes: Shapes) -> str:
    """The released model these shapes follow most closely (names the public config used)."""
    idx = KeyIndex(shapes, transformer_prefix(shapes) or "")
    if any(".x_block.attn2." in k for k in idx.shapes):
        return "sd3.5_medium"
    if idx.has("joint_blocks.0.x_block.attn.ln_q.weight"):
        return "sd3.5_large"
    return "sd3_medium"


def config_from_shapes(shapes: Shapes, *, source: str | Path = "?") -> dict[str, Any]:
    """The ``SD3Transformer2DModel`` config these tensors need."""
    prefix = transformer_prefix(shapes)
    if prefix is None:
        raise UnusableWeightsError(source, NETWORK, f"no {MARKER} (with or without model.diffusion_model.)")
    idx = KeyIndex(shapes, prefix)

    def fail(reason: str) -> UnusableWeightsError:
        return UnusableWeightsError(source, NETWORK, reason)

    hidden, in_channels, patch, patch_w = need(idx, "x_embedder.proj.weight", source, NETWORK, ndim=4)
    if patch != patch_w:
        raise fail(f"a non-square {patch}x{patch_w} patch embedder")
    layers = idx.count("joint_blocks.", source, NETWORK)
    dual = [i for i in range(layers) if idx.has(f"joint_blocks.{i}.x_block.attn2.qkv.weight")]
    base = public_config("sd3.5_medium" if dual else "sd3.5_large", "transformer")

    ln_q = idx.shape("joint_blocks.0.x_block.attn.ln_q.weight")
    if ln_q is None:
        qk_norm, head_dim = None, int(base["attention_head_dim"])
    else:
        has_bias = idx.has("joint_blocks.0.x_block.attn.ln_q.bias")
        qk_norm, head_dim = ("layer_norm" if has_bias else "rms_norm"), ln_q[0]
    heads = heads_from(hidden, head_dim, source, NETWORK)

    caption_dim, joint_dim = need(idx, "context_embedder.weight", source, NETWORK, ndim=2)
    if caption_dim != hidden:
        raise fail(f"a {caption_dim}-wide context stream next to a {hidden}-wide image stream")
    pooled = need(idx, "y_embedder.mlp.0.weight", source, NETWORK, ndim=2)[1]
    final_rows = need(idx, "final_layer.linear.weight", source, NETWORK, ndim=2)[0]
    if final_rows % (patch * patch):
        raise fail(f"final_layer.linear has {final_rows} rows, not a multiple of {patch}x{patch} patches")
    pos = need(idx, "pos_embed", source, NETWORK, ndim=3)
    side = whole_sqrt(pos[1])
    if side is None or pos[2] != hidden:
        raise fail(f"pos_embed has shape {list(pos)}, not a square table of {hidden}-wide positions")
    mlp = need(idx, "joint_blocks.0.x_block.mlp.fc1.weight", source, NETWORK, ndim=2)[0]
    if mlp != 4 * hidden:
        raise fail(f"an MLP {mlp} wide where diffusers' SD3 blocks have 4 x {hidden}")
    time_in = need(idx, "t_embedder.mlp.0.weight", source, NETWORK, ndim=2)[1]
    if time_in != 256:
        raise fail(f"a {time_in}-channel timestep embedding (SD3 uses 256)")

    base.update(
        in_channels=in_channels,
        out_channels=final_rows // (patch * patch),
        patch_size=patch,
        num_layers=layers,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=joint_dim,
        caption_projection_dim=caption_dim,
        pooled_projection_dim=pooled,
        pos_embed_max_size=side,
        # The default image size must fit the positional table (tiny models have small ones).
        sample_size=min(int(base["sample_size"]), side * patch),
        dual_attention_layers=dual,
        qk_norm=qk_norm,
    )
    return base


def _rules(config: Mapping[str, Any]) -> list[Rule]:
    h = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    layers = int(config["num_layers"])
    dual = set(config.get("dual_attention_layers") or ())
    norm_params = {None: (), "rms_norm": ("weight",), "layer_norm": ("weight", "bias")}[config.get("qk_norm")]
    rules = [
        rename("pos_embed", "pos_embed.pos_embed"),
        *linear("x_embedder.proj", "pos_embed.proj"),
        *linear("t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1"),
        *linear("t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2"),
        *linear("y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1"),
        *linear("y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2"),
        *linear("context_embedder", "context_embedder"),
        *linear("final_layer.linear", "proj_out"),
        *swapped("final_layer.adaLN_modulation.1", "norm_out.linear"),
    ]
    for i in range(layers):
        x, c, t = f"joint_blocks.{i}.x_block.", f"joint_blocks.{i}.context_block.", f"transformer_blocks.{i}."
        last = i == layers - 1
        rules += fused(x + "attn.qkv", [t + "attn.to_q", t + "attn.to_k", t + "attn.to_v"], (h, h, h))
        rules += fused(c + "attn.qkv", [t + "attn.add_q_proj", t + "attn.add_k_proj", t + "attn.add_v_proj"], (h, h, h))
        for p in norm_params:
            rules += [
                rename(f"{x}attn.ln_q.{p}", f"{t}attn.norm_q.{p}"),
                rename(f"{x}attn.ln_k.{p}", f"{t}attn.norm_k.{p}"),
                rename(f"{c}attn.ln_q.{p}", f"{t}attn.norm_added_q.{p}"),
                rename(f"{c}attn.ln_k.{p}", f"{t}attn.norm_added_k.{p}"),
            ]
        rules += linear(x + "attn.proj", t + "attn.to_out.0")
        rules += linear(x + "adaLN_modulation.1", t + "norm1.linear")
        rules += linear(x + "mlp.fc1", t + "ff.net.0.proj") + linear(x + "mlp.fc2", t + "ff.net.2")
        if last:
            rules += swapped(c + "adaLN_modulation.1", t + "norm1_context.linear")
        else:
            rules += linear(c + "attn.proj", t + "attn.to_add_out")
            rules += linear(c + "adaLN_modulation.1", t + "norm1_context.linear")
            rules += linear(c + "mlp.fc1", t + "ff_context.net.0.proj") + linear(c + "mlp.fc2", t + "ff_context.net.2")
        if i in dual:
            rules += fused(x + "attn2.qkv", [t + "attn2.to_q", t + "attn2.to_k", t + "attn2.to_v"], (h, h, h))
            for p in norm_params:
                rules += [
                    rename(f"{x}attn2.ln_q.{p}", f"{t}attn2.norm_q.{p}"),
                    rename(f"{x}attn2.ln_k.{p}", f"{t}attn2.norm_k.{p}"),
                ]
            rules += linear(x + "attn2.proj", t + "attn2.to_out.0")
    return rules


#: The rules by their public name: LoRA keys in the original layout are mapped with them
#: (:mod:`nodes.diffusion.lora_keys_flow`).
layout_rules = _rules


def convert_state_dict(
    sd: Mapping[str, torch.Tensor], config: Mapping[str, Any], *, source: str | Path = "?"
) -> dict[str, torch.Tensor]:
    """Original MMDiT tensors (any prefix; other parts of the file are ignored) -> diffusers names."""
    prefix = transformer_prefix(sd)
    if prefix is None:
        raise UnusableWeightsError(source, NETWORK, f"no {MARKER}")
    rules = _rules(config)
    check_all_used(sd.keys(), prefix, rules, source, NETWORK)
    return apply_rules(sd, prefix, rules, source, NETWORK)


def build(
    config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    dtype: torch.dtype | None = None,
    *,
    source: str | Path = "?",
) -> Any:
    """``SD3Transformer2DModel`` made of ``state_dict`` (diffusers names), stored dtype unless ``dtype``."""
    from diffusers import SD3Transformer2DModel

    return build_model(SD3Transformer2DModel, config, state_dict, dtype=dtype, source=source, network=NETWORK)


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


def predict(
    model: Any, x: torch.Tensor, t: torch.Tensor, conds: Sequence[Any], *, sigma: float | None = None
) -> torch.Tensor:
    """One batched call as ``StableDiffusion3Pipeline`` makes it: the latent as it is, the joint text
    sequence (CLIP-L ‖ CLIP-G padded to T5's width, then T5), the pooled CLIP-L ‖ CLIP-G vector and
    the timestep σ·1000. Returns the velocity in float32. ControlNets on the entries, active at ``sigma``
    (all when None), add their residuals (``nodes.diffusion.dit.controlnet``)."""
    import torch

    from nodes.diffusion.controlnet import CONTROL_KEY
    from nodes.diffusion.dit.runtime import batch_rows, check_recipe, pad_to_patch, same_length

    check_recipe(conds, "sd3", "Stable Diffusion 3 / 3.5")
    per = x.shape[0] // len(conds)
    dev, dtype = model.device, model.dtype
    embeds = same_length([c.embeds for c in conds])
    context = torch.cat([e.expand(per, -1, -1) for e in embeds]).to(dev, dtype)
    pooled = batch_rows(conds, per, lambda c: c.pooled).to(dev, dtype)
    padded, (h, w) = pad_to_patch(x, PATCH)
    inputs = {
        "hidden_states": padded.to(dev, dtype),
        "encoder_hidden_states": context,
        "pooled_projections": pooled,
        "timestep": t.to(dev),
    }
    control = {}
    if any(CONTROL_KEY in c.extras for c in conds):
        from nodes.diffusion.dit.controlnet import sd3_residuals

        control = sd3_residuals(model, conds, per, sigma, inputs)
    out: torch.Tensor = model.unet(**inputs, return_dict=False, **control)[0]
    return out[..., :h, :w].float()
