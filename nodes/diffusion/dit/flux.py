"""FLUX.1 (dev, schnell and their fine-tunes): recognising its files, reading its architecture, loading it.

Layouts people download: Black Forest Labs' ``flux1-dev.safetensors`` / ``flux1-schnell.safetensors``
and ComfyUI's ``diffusion_models`` files (``double_blocks.N`` / ``single_blocks.N`` at the top level),
all-in-one checkpoints with the same names under ``model.diffusion_model.``, and diffusers folders.
dev is guidance-distilled and has ``guidance_in``; schnell has not.

Architecture from shapes: width from ``img_in``, head size from the q/k RMSNorm scale, double and
single block counts, text/pooled widths from ``txt_in``/``vector_in``. A single block's ``linear1``
fuses q, k, v and the MLP input, so it is split as (width, width, width, rest), with the width read
from the file rather than diffusers' hard-coded 3072. The final AdaLN stores (shift, scale) where
diffusers expects (scale, shift). The RoPE split of a head (16/56/56 of 128) is not stored; other
head sizes keep its proportions.
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
    scaled_rope_axes,
)

if TYPE_CHECKING:
    import torch

NETWORK = "FLUX.1 transformer"
CLASS_NAME = "FluxTransformer2DModel"
MARKER = "double_blocks.0.img_attn.qkv.weight"
# Later Black Forest Labs models and FLUX derivatives with other embedders; they are not FLUX.1.
_NOT_FLUX1 = (
    "single_stream_modulation.lin.weight",  # FLUX.2
    "distilled_guidance_layer.in_proj.weight",  # Chroma
)


def transformer_prefix(shapes: Mapping[str, Any]) -> str | None:
    return find_prefix(shapes, MARKER)


def recognise(shapes: Shapes) -> bool:
    prefix = transformer_prefix(shapes)
    if prefix is None:
        return False
    required = ("img_in.weight", "time_in.in_layer.weight", "vector_in.in_layer.weight")
    return all(prefix + k in shapes for k in required) and not any(prefix + k in shapes for k in _NOT_FLUX1)


def components(shapes: Shapes) -> dict[str, str | None]:
    """Which parts a FLUX file carries (ComfyUI all-in-one checkpoints): key prefix per part, None if absent."""
    found: dict[str, str | None] = {"transformer": transformer_prefix(shapes)}
    found["vae"] = next((p for p in ("first_stage_model.", "vae.") if p + "decoder.conv_in.weight" in shapes), None)
    for name, prefix, marker in (
        ("clip_l", "text_encoders.clip_l.transformer.", "text_model.embeddings.token_embedding.weight"),
        ("t5xxl", "text_encoders.t5xxl.transformer.", "shared.weight"),
    ):
        found[name] = prefix if prefix + marker in shapes else None
    return found


def recognise_folder(path: str | Path) -> bool:
    return folder_class(path) == CLASS_NAME


def variant(shapes: Shapes) -> str:
    """``flux1_dev`` when the file has the guidance embedder (dev and its fine-tunes), else ``flux1_schnell``."""
    prefix = transformer_prefix(shapes) or ""
    return "flux1_dev" if prefix + "guidance_in.in_layer.weight" in shapes else "flux1_schnell"


def variant_of(network: Any) -> str:
    """The same for a built network: whether it has the guidance embedder."""
    return "flux1_dev" if network.config.guidance_embeds else "flux1_schnell"


def config_from_shapes(shapes: Shapes, *, source: str | Path = "?") -> dict[str, Any]:
    """The ``FluxTransformer2DModel`` config these tensors need."""
    prefix = transformer_prefix(shapes)
    if prefix is None:
        raise UnusableWeightsError(source, NETWORK, f"no {MARKER} (with or without model.diffusion_model.)")
    idx = KeyIndex(shapes, prefix)

    def fail(reason: str) -> UnusableWeightsError:
        return UnusableWeightsError(source, NETWORK, reason)

    hidden, in_channels = need(idx, "img_in.weight", source, NETWORK, ndim=2)
    joint_dim = need(idx, "txt_in.weight", source, NETWORK, ndim=2)[1]
    pooled = need(idx, "vector_in.in_layer.weight", source, NETWORK, ndim=2)[1]
    guidance = idx.has("guidance_in.in_layer.weight")
    base = public_config("flux1_dev" if guidance else "flux1_schnell", "transformer")
    double = idx.count("double_blocks.", source, NETWORK)
    single = idx.count("single_blocks.", source, NETWORK)
    head_dim = need(idx, "double_blocks.0.img_attn.norm.query_norm.scale", source, NETWORK, ndim=1)[0]
    heads = heads_from(hidden, head_dim, source, NETWORK)
    out_channels = need(idx, "final_layer.linear.weight", source, NETWORK, ndim=2)[0]

    mlp = need(idx, "double_blocks.0.img_mlp.0.weight", source, NETWORK, ndim=2)[0]
    if mlp != 4 * hidden:
        raise fail(f"an MLP {mlp} wide where diffusers' FLUX blocks have 4 x {hidden}")
    if single:
        fused_rows = need(idx, "single_blocks.0.linear1.weight", source, NETWORK, ndim=2)[0]
        if fused_rows != 7 * hidden:
            raise fail(
                f"single_blocks.0.linear1 has {fused_rows} rows, not 3 x {hidden} (q, k, v) + 4 x {hidden} (MLP)"
            )
    for embedder in ("time_in", "guidance_in"):
        if idx.has(f"{embedder}.in_layer.weight"):
            channels = need(idx, f"{embedder}.in_layer.weight", source, NETWORK, ndim=2)[1]
            if channels != 256:
                raise fail(f"a {channels}-channel {embedder} embedding (FLUX uses 256)")

    base.update(
        in_channels=in_channels,
        out_channels=out_channels,
        num_layers=double,
        num_single_layers=single,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=joint_dim,
        pooled_projection_dim=pooled,
        guidance_embeds=guidance,
        axes_dims_rope=scaled_rope_axes(base["axes_dims_rope"], head_dim, source, NETWORK),
    )
    return base


def _rules(config: Mapping[str, Any]) -> list[Rule]:
    h = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    emb = "time_text_embed."
    rules = [
        *linear("time_in.in_layer", emb + "timestep_embedder.linear_1"),
        *linear("time_in.out_layer", emb + "timestep_embedder.linear_2"),
        *linear("vector_in.in_layer", emb + "text_embedder.linear_1"),
        *linear("vector_in.out_layer", emb + "text_embedder.linear_2"),
        *linear("txt_in", "context_embedder"),
        *linear("img_in", "x_embedder"),
        *linear("final_layer.linear", "proj_out"),
        *swapped("final_layer.adaLN_modulation.1", "norm_out.linear"),
    ]
    if config.get("guidance_embeds"):
        rules += linear("guidance_in.in_layer", emb + "guidance_embedder.linear_1")
        rules += linear("guidance_in.out_layer", emb + "guidance_embedder.linear_2")
    for i in range(int(config["num_layers"])):
        d, t = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        rules += linear(d + "img_mod.lin", t + "norm1.linear") + linear(d + "txt_mod.lin", t + "norm1_context.linear")
        rules += fused(d + "img_attn.qkv", [t + "attn.to_q", t + "attn.to_k", t + "attn.to_v"], (h, h, h))
        added = [t + "attn.add_q_proj", t + "attn.add_k_proj", t + "attn.add_v_proj"]
        rules += fused(d + "txt_attn.qkv", added, (h, h, h))
        rules += [
            rename(d + "img_attn.norm.query_norm.scale", t + "attn.norm_q.weight"),
            rename(d + "img_attn.norm.key_norm.scale", t + "attn.norm_k.weight"),
            rename(d + "txt_attn.norm.query_norm.scale", t + "attn.norm_added_q.weight"),
            rename(d + "txt_attn.norm.key_norm.scale", t + "attn.norm_added_k.weight"),
        ]
        rules += linear(d + "img_attn.proj", t + "attn.to_out.0") + linear(d + "txt_attn.proj", t + "attn.to_add_out")
        rules += linear(d + "img_mlp.0", t + "ff.net.0.proj") + linear(d + "img_mlp.2", t + "ff.net.2")
        rules += linear(d + "txt_mlp.0", t + "ff_context.net.0.proj") + linear(d + "txt_mlp.2", t + "ff_context.net.2")
    for i in range(int(config["num_single_layers"])):
        s, t = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        rules += linear(s + "modulation.lin", t + "norm.linear")
        targets = [t + "attn.to_q", t + "attn.to_k", t + "attn.to_v", t + "proj_mlp"]
        rules += fused(s + "linear1", targets, (h, h, h, 4 * h))
        rules += [
            rename(s + "norm.query_norm.scale", t + "attn.norm_q.weight"),
            rename(s + "norm.key_norm.scale", t + "attn.norm_k.weight"),
        ]
        rules += linear(s + "linear2", t + "proj_out")
    return rules


#: The rules by their public name: LoRA keys in the original layout are mapped with them
#: (:mod:`nodes.diffusion.lora_keys_flow`).
layout_rules = _rules


def convert_state_dict(
    sd: Mapping[str, torch.Tensor], config: Mapping[str, Any], *, source: str | Path = "?"
) -> dict[str, torch.Tensor]:
    """Original FLUX.1 tensors (any prefix; other parts of the file are ignored) -> diffusers names."""
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
    """``FluxTransformer2DModel`` made of ``state_dict`` (diffusers names), stored dtype unless ``dtype``."""
    from diffusers import FluxTransformer2DModel

    return build_model(FluxTransformer2DModel, config, state_dict, dtype=dtype, source=source, network=NETWORK)


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

#: The distilled guidance a FLUX-dev model gets when no FluxGuidance / CLIPTextEncodeFlux set one
#: (FluxPipeline's and ComfyUI's default).
DEFAULT_GUIDANCE = 3.5


def pack(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H/2·W/2, 4C]: each 2×2 patch becomes one token (FluxPipeline._pack_latents)."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of :func:`pack` for an H×W latent."""
    b, _, dim = tokens.shape
    c = dim // 4
    return tokens.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def image_ids(h: int, w: int) -> torch.Tensor:
    """(0, row, column) per token, the RoPE positions FluxPipeline gives image tokens."""
    import torch

    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3)


def predict(
    model: Any, x: torch.Tensor, t: torch.Tensor, conds: Sequence[Any], *, sigma: float | None = None
) -> torch.Tensor:
    """One batched call as ``FluxPipeline`` makes it: packed latent tokens with their positions, the T5
    sequence (text positions all zero), the pooled CLIP-L vector, timestep σ, and for dev models the
    distilled guidance of each entry. Returns the velocity in float32. ControlNets on the entries, active at
    ``sigma`` (all when None), add their residuals (``nodes.diffusion.dit.controlnet``)."""
    import torch

    from nodes.diffusion.conditioning import GUIDANCE_KEY
    from nodes.diffusion.controlnet import CONTROL_KEY
    from nodes.diffusion.dit.runtime import batch_rows, check_recipe, pad_to_patch, same_length

    check_recipe(conds, "flux", "FLUX.1")
    per = x.shape[0] // len(conds)
    dev, dtype = model.device, model.dtype
    embeds = same_length([c.embeds for c in conds])
    context = torch.cat([e.expand(per, -1, -1) for e in embeds]).to(dev, dtype)
    pooled = batch_rows(conds, per, lambda c: c.pooled).to(dev, dtype)
    padded, (h, w) = pad_to_patch(x, 2)
    hp, wp = padded.shape[-2:]
    values = [float(c.extras.get(GUIDANCE_KEY, DEFAULT_GUIDANCE)) for c in conds for _ in range(per)]
    guidance = None
    if model.unet.config.guidance_embeds:
        guidance = torch.tensor(values, dtype=torch.float32, device=dev)
    inputs = {
        "hidden_states": pack(padded.to(dev, dtype)),
        "encoder_hidden_states": context,
        "pooled_projections": pooled,
        "timestep": t.to(dev, dtype),
        "img_ids": image_ids(hp, wp).to(dev, dtype),
        "txt_ids": torch.zeros(context.shape[1], 3, device=dev, dtype=dtype),
    }
    control = {}
    if any(CONTROL_KEY in c.extras for c in conds):
        from nodes.diffusion.dit.controlnet import flux_residuals

        control = flux_residuals(model, conds, per, sigma, inputs, (hp, wp), values)
    out = model.unet(**inputs, guidance=guidance, return_dict=False, **control)[0]
    return unpack(out, hp, wp)[..., :h, :w].float()
