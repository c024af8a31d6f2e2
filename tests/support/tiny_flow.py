"""Tiny, seeded SD3/3.5, FLUX.1 and Z-Image models written in the layouts people download.

Each builder makes a diffusers model a few hundred KB large (two or three blocks, 64 wide, two
heads of 32) that still has every kind of tensor the released model has: SD3.5's q/k RMSNorms and
one MMDiT-X dual-attention block, the pre-only last context block; FLUX's double and single blocks
and (dev) guidance embedder; Z-Image's refiners, pad tokens and the unused ``norm_final``.

The ``*_to_original`` functions write a model back in the original single-file layout. They are
written from the module tree (``block.attn.to_q.weight`` …) and the original layouts' names, not by
inverting sdgraph's converter, so a test that loads their output and compares outputs checks the
converter against an independent statement of the layout.

The RoPE axes of the tiny FLUX/Z-Image models keep the released proportions (16/56/56 and
32/48/48 of a head), the one thing the loader cannot read from shapes.

Every parameter gets seeded noise on top of diffusers' initialisation (which leaves norms at 1,
biases and pad tokens at 0 and would hide swapped keys). All builders are deterministic in ``seed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nodes.diffusion.checkpoint.ldm_layout import save_state_dict, vae_to_ldm

StateDict = dict[str, torch.Tensor]
DIFFUSION_PREFIX = "model.diffusion_model."

# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------


def tiny_sd3_config(*, dual: bool = True, qk_norm: bool = True) -> dict[str, Any]:
    """SD3.5-Medium-like (dual attention in block 0, RMS q/k norms) or, with both off, SD3.0-like."""
    return {
        "sample_size": 16,
        "patch_size": 2,
        "in_channels": 16,
        "out_channels": 16,
        "num_layers": 3,
        # SD3.0 files have no q/k norm to read the head size from; they use the public 64.
        "attention_head_dim": 32 if qk_norm else 64,
        "num_attention_heads": 2 if qk_norm else 1,
        # T5 width; SD3 zero-pads the concatenated CLIP-L/G states (64 + 128) up to it.
        "joint_attention_dim": 256,
        "caption_projection_dim": 64,
        "pooled_projection_dim": 160,  # CLIP-L ‖ CLIP-G projections (64 + 96)
        "pos_embed_max_size": 16,
        "dual_attention_layers": (0,) if dual else (),
        "qk_norm": "rms_norm" if qk_norm else None,
    }


def tiny_flux_config(*, guidance: bool = True) -> dict[str, Any]:
    return {
        "patch_size": 1,
        "in_channels": 64,
        "out_channels": 64,
        "num_layers": 2,
        "num_single_layers": 2,
        "attention_head_dim": 32,
        "num_attention_heads": 2,
        "joint_attention_dim": 256,  # T5 width
        "pooled_projection_dim": 64,  # CLIP-L width (FLUX takes its pooled output)
        "guidance_embeds": guidance,
        "axes_dims_rope": (4, 14, 14),
    }


def tiny_z_image_config() -> dict[str, Any]:
    return {
        "all_patch_size": (2,),
        "all_f_patch_size": (1,),
        "in_channels": 16,
        "dim": 64,
        "n_layers": 2,
        "n_refiner_layers": 1,
        "n_heads": 2,
        "n_kv_heads": 2,
        "norm_eps": 1e-5,
        "qk_norm": True,
        "cap_feat_dim": 64,  # Qwen3 width
        "rope_theta": 256.0,
        "t_scale": 1000.0,
        "axes_dims": [8, 12, 12],
        "axes_lens": [1536, 512, 512],
    }


def tiny_vae16_config(family: str = "flux") -> dict[str, Any]:
    """A 16-channel KL VAE of four levels (8x downsampling, as the real one) 32 channels wide."""
    scale, shift = {"sd3": (1.5305, 0.0609), "flux": (0.3611, 0.1159), "z_image": (0.3611, 0.1159)}[family]
    return {
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 16,
        "block_out_channels": [32, 32, 32, 32],
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "layers_per_block": 1,
        "norm_num_groups": 32,
        "sample_size": 64,
        "scaling_factor": scale,
        "shift_factor": shift,
        "use_quant_conv": False,
        "use_post_quant_conv": False,
        "force_upcast": True,
    }


def _seeded(module: Any, seed: int) -> Any:
    generator = torch.Generator().manual_seed(seed + 1)
    module.eval().requires_grad_(False)
    for param in module.parameters():
        param.add_(0.02 * torch.randn(param.shape, generator=generator))
    return module


def _build(cls: type[Any], config: Mapping[str, Any], seed: int) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls.from_config(dict(config))
    return _seeded(model, seed)


def tiny_sd3(seed: int = 0, **kwargs: Any) -> Any:
    from diffusers import SD3Transformer2DModel

    return _build(SD3Transformer2DModel, tiny_sd3_config(**kwargs), seed)


def tiny_flux(seed: int = 0, **kwargs: Any) -> Any:
    from diffusers import FluxTransformer2DModel

    return _build(FluxTransformer2DModel, tiny_flux_config(**kwargs), seed)


def tiny_z_image(seed: int = 0) -> Any:
    from diffusers import ZImageTransformer2DModel

    return _build(ZImageTransformer2DModel, tiny_z_image_config(), seed)


def tiny_vae16(seed: int = 0, family: str = "flux") -> Any:
    from diffusers import AutoencoderKL

    return _build(AutoencoderKL, tiny_vae16_config(family), seed)


# ---------------------------------------------------------------------------------------------
# Original layouts
# ---------------------------------------------------------------------------------------------


def _shift_scale(linear: Any) -> list[tuple[str, torch.Tensor]]:
    """diffusers' continuous AdaLN emits (scale, shift); the original layout stores (shift, scale)."""
    w, b = linear.weight, linear.bias
    half = w.shape[0] // 2
    return [("weight", torch.cat([w[half:], w[:half]])), ("bias", torch.cat([b[half:], b[:half]]))]


def _lin(out: StateDict, name: str, linear: Any) -> None:
    out[name + ".weight"] = linear.weight
    if getattr(linear, "bias", None) is not None:
        out[name + ".bias"] = linear.bias


def _qkv(out: StateDict, name: str, q: Any, k: Any, v: Any, *extra: Any) -> None:
    out[name + ".weight"] = torch.cat([m.weight for m in (q, k, v, *extra)])
    if q.bias is not None:
        out[name + ".bias"] = torch.cat([m.bias for m in (q, k, v, *extra)])


def sd3_to_original(model: Any, prefix: str = DIFFUSION_PREFIX) -> StateDict:
    """Stability's MMDiT layout (``joint_blocks.N.x_block``/``context_block``, ``x_embedder``, …)."""
    out: StateDict = {"pos_embed": model.pos_embed.pos_embed}
    _lin(out, "x_embedder.proj", model.pos_embed.proj)
    _lin(out, "t_embedder.mlp.0", model.time_text_embed.timestep_embedder.linear_1)
    _lin(out, "t_embedder.mlp.2", model.time_text_embed.timestep_embedder.linear_2)
    _lin(out, "y_embedder.mlp.0", model.time_text_embed.text_embedder.linear_1)
    _lin(out, "y_embedder.mlp.2", model.time_text_embed.text_embedder.linear_2)
    _lin(out, "context_embedder", model.context_embedder)
    for i, block in enumerate(model.transformer_blocks):
        x, c = f"joint_blocks.{i}.x_block.", f"joint_blocks.{i}.context_block."
        attn = block.attn
        _qkv(out, x + "attn.qkv", attn.to_q, attn.to_k, attn.to_v)
        _qkv(out, c + "attn.qkv", attn.add_q_proj, attn.add_k_proj, attn.add_v_proj)
        if attn.norm_q is not None:
            out[x + "attn.ln_q.weight"], out[x + "attn.ln_k.weight"] = attn.norm_q.weight, attn.norm_k.weight
            out[c + "attn.ln_q.weight"] = attn.norm_added_q.weight
            out[c + "attn.ln_k.weight"] = attn.norm_added_k.weight
        _lin(out, x + "attn.proj", attn.to_out[0])
        _lin(out, x + "adaLN_modulation.1", block.norm1.linear)
        _lin(out, x + "mlp.fc1", block.ff.net[0].proj)
        _lin(out, x + "mlp.fc2", block.ff.net[2])
        if block.context_pre_only:
            for param, tensor in _shift_scale(block.norm1_context.linear):
                out[f"{c}adaLN_modulation.1.{param}"] = tensor
        else:
            _lin(out, c + "attn.proj", attn.to_add_out)
            _lin(out, c + "adaLN_modulation.1", block.norm1_context.linear)
            _lin(out, c + "mlp.fc1", block.ff_context.net[0].proj)
            _lin(out, c + "mlp.fc2", block.ff_context.net[2])
        if block.attn2 is not None:
            a2 = block.attn2
            _qkv(out, x + "attn2.qkv", a2.to_q, a2.to_k, a2.to_v)
            if a2.norm_q is not None:
                out[x + "attn2.ln_q.weight"], out[x + "attn2.ln_k.weight"] = a2.norm_q.weight, a2.norm_k.weight
            _lin(out, x + "attn2.proj", a2.to_out[0])
    _lin(out, "final_layer.linear", model.proj_out)
    for param, tensor in _shift_scale(model.norm_out.linear):
        out[f"final_layer.adaLN_modulation.1.{param}"] = tensor
    return {prefix + k: v.detach().clone() for k, v in out.items()}


def flux_to_original(model: Any, prefix: str = "") -> StateDict:
    """Black Forest Labs' layout (``double_blocks``/``single_blocks``, ``img_in``, ``txt_in``, …)."""
    emb = model.time_text_embed
    out: StateDict = {}
    _lin(out, "time_in.in_layer", emb.timestep_embedder.linear_1)
    _lin(out, "time_in.out_layer", emb.timestep_embedder.linear_2)
    _lin(out, "vector_in.in_layer", emb.text_embedder.linear_1)
    _lin(out, "vector_in.out_layer", emb.text_embedder.linear_2)
    if hasattr(emb, "guidance_embedder"):
        _lin(out, "guidance_in.in_layer", emb.guidance_embedder.linear_1)
        _lin(out, "guidance_in.out_layer", emb.guidance_embedder.linear_2)
    _lin(out, "txt_in", model.context_embedder)
    _lin(out, "img_in", model.x_embedder)
    for i, block in enumerate(model.transformer_blocks):
        d, attn = f"double_blocks.{i}.", block.attn
        _lin(out, d + "img_mod.lin", block.norm1.linear)
        _lin(out, d + "txt_mod.lin", block.norm1_context.linear)
        _qkv(out, d + "img_attn.qkv", attn.to_q, attn.to_k, attn.to_v)
        _qkv(out, d + "txt_attn.qkv", attn.add_q_proj, attn.add_k_proj, attn.add_v_proj)
        out[d + "img_attn.norm.query_norm.scale"] = attn.norm_q.weight
        out[d + "img_attn.norm.key_norm.scale"] = attn.norm_k.weight
        out[d + "txt_attn.norm.query_norm.scale"] = attn.norm_added_q.weight
        out[d + "txt_attn.norm.key_norm.scale"] = attn.norm_added_k.weight
        _lin(out, d + "img_attn.proj", attn.to_out[0])
        _lin(out, d + "txt_attn.proj", attn.to_add_out)
        _lin(out, d + "img_mlp.0", block.ff.net[0].proj)
        _lin(out, d + "img_mlp.2", block.ff.net[2])
        _lin(out, d + "txt_mlp.0", block.ff_context.net[0].proj)
        _lin(out, d + "txt_mlp.2", block.ff_context.net[2])
    for i, block in enumerate(model.single_transformer_blocks):
        s, attn = f"single_blocks.{i}.", block.attn
        _lin(out, s + "modulation.lin", block.norm.linear)
        _qkv(out, s + "linear1", attn.to_q, attn.to_k, attn.to_v, block.proj_mlp)
        out[s + "norm.query_norm.scale"] = attn.norm_q.weight
        out[s + "norm.key_norm.scale"] = attn.norm_k.weight
        _lin(out, s + "linear2", block.proj_out)
    _lin(out, "final_layer.linear", model.proj_out)
    for param, tensor in _shift_scale(model.norm_out.linear):
        out[f"final_layer.adaLN_modulation.1.{param}"] = tensor
    return {prefix + k: v.detach().clone() for k, v in out.items()}


def z_image_to_original(model: Any, prefix: str = "", *, norm_final: bool = True) -> StateDict:
    """Tongyi-MAI's layout as ComfyUI ships it (``layers.N.attention.qkv``, ``x_embedder``, …)."""
    (x_embedder,) = model.all_x_embedder.values()
    (final,) = model.all_final_layer.values()
    out: StateDict = {"x_pad_token": model.x_pad_token, "cap_pad_token": model.cap_pad_token}
    _lin(out, "x_embedder", x_embedder)
    _lin(out, "final_layer.linear", final.linear)
    _lin(out, "final_layer.adaLN_modulation.1", final.adaLN_modulation[1])
    _lin(out, "t_embedder.mlp.0", model.t_embedder.mlp[0])
    _lin(out, "t_embedder.mlp.2", model.t_embedder.mlp[2])
    out["cap_embedder.0.weight"] = model.cap_embedder[0].weight
    _lin(out, "cap_embedder.1", model.cap_embedder[1])
    for group in ("noise_refiner", "context_refiner", "layers"):
        for i, block in enumerate(getattr(model, group)):
            b, attn = f"{group}.{i}.", block.attention
            _qkv(out, b + "attention.qkv", attn.to_q, attn.to_k, attn.to_v)
            out[b + "attention.out.weight"] = attn.to_out[0].weight
            out[b + "attention.q_norm.weight"] = attn.norm_q.weight
            out[b + "attention.k_norm.weight"] = attn.norm_k.weight
            for norm in ("attention_norm1", "attention_norm2", "ffn_norm1", "ffn_norm2"):
                out[f"{b}{norm}.weight"] = getattr(block, norm).weight
            for w in ("w1", "w2", "w3"):
                out[f"{b}feed_forward.{w}.weight"] = getattr(block.feed_forward, w).weight
            if block.modulation:
                _lin(out, b + "adaLN_modulation.0", block.adaLN_modulation[0])
    if norm_final:  # Lumina 2's unused final RMSNorm, present in some Z-Image files
        out["norm_final.weight"] = torch.ones(model.config.dim)
    return {prefix + k: v.detach().clone() for k, v in out.items()}


def vae16_to_original(vae: Any, prefix: str = "") -> StateDict:
    """LDM VAE names (``encoder.down.N.block``, ``decoder.up.N``, ``mid.attn_1.q`` as 1x1 convs)."""
    return {k: v.detach().clone() for k, v in vae_to_ldm(vae.state_dict(), vae.config, prefix=prefix).items()}


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def write_file(path: str | Path, state: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None) -> Path:
    return save_state_dict(path, state, dtype=dtype)


def write_diffusers_folder(folder: str | Path, *, transformer: Any = None, vae: Any = None) -> Path:
    """``transformer/`` and/or ``vae/`` as ``save_pretrained`` writes them (safetensors)."""
    folder = Path(folder)
    if transformer is not None:
        transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    if vae is not None:
        vae.save_pretrained(folder / "vae", safe_serialization=True)
    return folder


@dataclass
class TinySD3Checkpoint:
    """An all-in-one SD3.5 file and the reference models it was written from."""

    path: Path
    transformer: Any
    vae: Any
    clip_l: Any
    clip_g: Any
    t5: Any


def tiny_text_encoders(seed: int = 0) -> tuple[Any, Any, Any]:
    """SD3's three text encoders as ``tests.support.tiny_text`` builds them (the shipped configs, small).

    CLIP-L 64 wide and CLIP-G 128 wide, projecting to 64 + 96 = 160 (the pooled width); T5 256 wide (the
    joint attention width, above the 192 of the concatenated CLIP states as in the real model). The real
    vocabularies are kept, so the real tokenizers work with them.
    """
    from nodes.diffusion.text.encoder_files import CLIP_G, CLIP_L, T5XXL
    from tests.support.tiny_text import tiny_encoder

    return tiny_encoder(CLIP_L, seed + 1), tiny_encoder(CLIP_G, seed + 2), tiny_encoder(T5XXL, seed + 3)


def _clip_to_sd3(model: Any, prefix: str) -> StateDict:
    """HF CLIP names under ``text_encoders.clip_x.transformer.`` (``text_model.`` restored)."""
    from nodes.diffusion.text.encoder_files import CLIP_L
    from tests.support.tiny_text import encoder_state

    return {prefix + k: v for k, v in encoder_state(model, CLIP_L).items()}


def write_sd35_all_in_one(path: str | Path, seed: int = 0, *, text_encoders: bool = True) -> TinySD3Checkpoint:
    """``sd3.5_medium_incl_clips_t5xxl``-style file: MMDiT, VAE and (optionally) all three text encoders."""
    transformer = tiny_sd3(seed)
    vae = tiny_vae16(seed + 10, "sd3")
    state = sd3_to_original(transformer) | vae16_to_original(vae, "first_stage_model.")
    clip_l, clip_g, t5 = tiny_text_encoders(seed + 20)
    if text_encoders:
        state |= _clip_to_sd3(clip_l, "text_encoders.clip_l.transformer.")
        state |= _clip_to_sd3(clip_g, "text_encoders.clip_g.transformer.")
        state |= _t5_to_original(t5, "text_encoders.t5xxl.transformer.")
    return TinySD3Checkpoint(Path(write_file(path, state)), transformer, vae, clip_l, clip_g, t5)


def _t5_to_original(model: Any, prefix: str) -> StateDict:
    """HF T5 names; the input embedding is stored once as ``shared`` (``encoder.embed_tokens`` is tied)."""
    from nodes.diffusion.text.encoder_files import T5XXL
    from tests.support.tiny_text import encoder_state

    return {prefix + k: v for k, v in encoder_state(model, T5XXL).items()}


@dataclass
class TinyFluxCheckpoint:
    """An all-in-one FLUX.1 file (as ComfyUI saves checkpoints) and the reference models."""

    path: Path
    transformer: Any
    vae: Any
    clip_l: Any
    t5: Any


def tiny_flux_text_encoders(seed: int = 0) -> tuple[Any, Any]:
    """CLIP-L 64 wide (FLUX's pooled width) and T5 256 wide (its joint width), as ``tiny_text`` builds them.
    FLUX reads CLIP-L as a plain ``CLIPTextModel``: its ``.text_model`` is what FluxPipeline takes."""
    from nodes.diffusion.text.encoder_files import CLIP_L, T5XXL
    from tests.support.tiny_text import tiny_encoder

    return tiny_encoder(CLIP_L, seed + 1), tiny_encoder(T5XXL, seed + 2)


def write_flux_all_in_one(path: str | Path, seed: int = 0, *, guidance: bool = True) -> TinyFluxCheckpoint:
    """``flux1-dev-fp8``-style checkpoint: transformer, VAE (``first_stage_model.``), CLIP-L and T5."""
    transformer = tiny_flux(seed, guidance=guidance)
    vae = tiny_vae16(seed + 10, "flux")
    clip_l, t5 = tiny_flux_text_encoders(seed + 20)
    state = flux_to_original(transformer, DIFFUSION_PREFIX)
    state |= vae16_to_original(vae, "first_stage_model.")
    state |= _clip_to_sd3(clip_l, "text_encoders.clip_l.transformer.")
    state |= _t5_to_original(t5, "text_encoders.t5xxl.transformer.")
    return TinyFluxCheckpoint(Path(write_file(path, state)), transformer, vae, clip_l, t5)


# ---------------------------------------------------------------------------------------------
# One forward pass, for comparing two models on the same inputs
# ---------------------------------------------------------------------------------------------


def example_inputs(model: Any, seed: int = 0, batch: int = 2) -> dict[str, Any]:
    """Seeded inputs of the right shapes for a tiny SD3, FLUX or Z-Image transformer (fp32)."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    name = type(model).__name__
    if name == "SD3Transformer2DModel":
        return {
            "hidden_states": torch.randn(batch, cfg.in_channels, 8, 8, generator=g),
            "encoder_hidden_states": torch.randn(batch, 5, cfg.joint_attention_dim, generator=g),
            "pooled_projections": torch.randn(batch, cfg.pooled_projection_dim, generator=g),
            "timestep": torch.rand(batch, generator=g) * 1000,
        }
    if name == "FluxTransformer2DModel":
        side, text = 4, 5
        img_ids = torch.zeros(side * side, 3)
        img_ids[:, 1] = torch.arange(side * side) // side
        img_ids[:, 2] = torch.arange(side * side) % side
        inputs = {
            "hidden_states": torch.randn(batch, side * side, cfg.in_channels, generator=g),
            "encoder_hidden_states": torch.randn(batch, text, cfg.joint_attention_dim, generator=g),
            "pooled_projections": torch.randn(batch, cfg.pooled_projection_dim, generator=g),
            "timestep": torch.rand(batch, generator=g),
            "img_ids": img_ids,
            "txt_ids": torch.zeros(text, 3),
        }
        if cfg.guidance_embeds:
            inputs["guidance"] = torch.full((batch,), 3.5)
        return inputs
    if name == "ZImageTransformer2DModel":
        return {
            "x": [torch.randn(cfg.in_channels, 1, 8, 8, generator=g) for _ in range(batch)],
            "t": torch.rand(batch, generator=g),
            "cap_feats": [torch.randn(7 - i, cfg.cap_feat_dim, generator=g) for i in range(batch)],
        }
    raise TypeError(f"no example inputs for {name}")


def forward(model: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
    """The model's output as one tensor (Z-Image returns one tensor per image)."""
    with torch.no_grad():
        sample = model(**inputs).sample
    return torch.stack(list(sample)) if isinstance(sample, list | tuple) else sample
