"""Running FLUX.1, SD3 and Z-Image ControlNets inside the transformer's call: the residuals of its blocks.

A transformer ControlNet is a shorter copy of the transformer (a few joint/single blocks) whose input is
the noisy latent plus the *VAE-encoded* control image through a zero-initialised embedder
(``controlnet_x_embedder`` for FLUX, ``pos_embed_input`` for SD3). After each of its blocks a
zero-initialised linear (``controlnet_blocks`` / ``controlnet_single_blocks``) gives a residual that the
transformer adds to its image tokens; with fewer ControlNet blocks than transformer blocks, each
residual serves a run of consecutive blocks (diffusers' ``interval_control``).

What the diffusers pipelines (``FluxControlNetPipeline``, ``StableDiffusion3ControlNetPipeline``) do,
done here the same way:

* the control image, at the sampled size, is encoded by the VAE (its mean: ComfyUI's and sdgraph's VAE
  Encode are deterministic) and normalised like the latents, ``(z − shift)·scale`` — without the shift
  for SD3 ControlNets trained with zeroed pooled text (``force_zeros_for_pooled_projection``, InstantX's);
  FLUX packs it into 2×2 patch tokens as the latent;
* the ControlNet gets the transformer's inputs (packed latent, timestep, text, pooled vector, positions;
  FLUX-dev's distilled guidance when it has the embedder; SD3: zero pooled vector when trained so, no
  text for SD3.5 Large's text-free blocks) and multiplies its residuals by the strength;
* it runs only between start_percent and end_percent of the schedule (as for the UNet ControlNets, by σ);
* a FLUX.1 union ControlNet gets its control type (SetUnionControlNetType's index, as ComfyUI passes it)
  as ``controlnet_mode``, one more text token; on "auto" it runs without that token, as ComfyUI runs it.

Z-Image's Fun ControlNets (``ZImageControlNetPipeline``) borrow the transformer's embedders and refiners
for the call, take the encoded control image zero-padded to their input channels (2.x: the mask and
inpaint channels stay empty) and return one hint per transformer layer they feed.

Stacked ControlNets (several Apply ControlNet nodes) sum their residuals, as diffusers' multi-ControlNet
models do. To sum ControlNets of different depths exactly, each one's residuals are first spread to one
per transformer block with the transformer's own rule; the sums are made once per distinct pair.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor

from nodes import families
from nodes.diffusion.controlnet import ControlHint, active_hints, batch_rows, control_image

Residuals = list[Tensor]


def misfit(control_net: Any, model: Any) -> str | None:
    """Why a ControlNet cannot steer ``model`` when either is a transformer: it must be made for the model's
    family and be as wide as its transformer."""
    name = f"the ControlNet {control_net.source}" if control_net.source else "the ControlNet"
    known = families.names(only_supported=False)
    theirs = families.get(model.family).display_name if model.family in known else model.family
    if control_net.family != model.family:
        made = control_net.display_family
        return f"{name} is for {made} but the model is {theirs}; load a ControlNet made for {theirs}"
    mine, width = _width(control_net.model), _width(model.unet)
    if mine != width:
        return (
            f"{name} is {mine} wide but this {theirs} transformer is {width} wide; "
            f"it was made for another {theirs} model"
        )
    places = control_net.model.config.get("control_layers_places") or [0]
    layers = int(model.unet.config.get("n_layers", max(places) + 1))
    if max(places) >= layers:
        return f"{name} feeds layer {max(places)} but this {theirs} transformer has {layers} layers"
    return None


def _width(network: Any) -> int:
    cfg = network.config
    if "dim" in cfg:  # Z-Image
        return int(cfg.dim)
    return int(cfg.num_attention_heads) * int(cfg.attention_head_dim)


def encoded_control(hint: ControlHint, h: int, w: int, scale: float, shift: float, like: Tensor) -> Tensor:
    """The hint's image for an ``h``×``w`` latent: resized to the pixel size (centre crop), VAE-encoded
    (mean) and normalised as ``(z − shift)·scale``; [1, C, h, w], cached on the hint for the run."""
    key = (h, w, scale, shift, like.device, like.dtype)
    cached = hint.encoded.get(key)
    if cached is not None:
        return cached
    from nodes.diffusion.checkpoint.vae_ops import downscale_factor

    vae = hint.vae.vae
    cell = downscale_factor(vae)
    param = next(vae.parameters())
    pixels = control_image(hint.image, h * cell, w * cell, 1) * 2 - 1
    with torch.no_grad():
        raw = vae.encode(pixels.to(param.device, param.dtype)).latent_dist.mode().float()
    latent: Tensor = ((raw - shift) * scale).to(like.device, like.dtype)
    hint.encoded[key] = latent
    return latent


def _net_on(hint: ControlHint, device: torch.device) -> Any:
    net = hint.control_net.model
    if next(net.parameters()).device != device:
        net.to(device)
    return net


def spread(samples: Sequence[Tensor], blocks: int, index: Callable[[int, int, int], int]) -> Residuals:
    """One residual per transformer block, chosen by the transformer's own ``index(block, blocks, n)``."""
    return [samples[index(i, blocks, len(samples))] for i in range(blocks)]


def _flux_index(i: int, blocks: int, n: int) -> int:
    return i // math.ceil(blocks / n)  # FluxTransformer2DModel's interval_control


def _sd3_index(i: int, blocks: int, n: int) -> int:
    return int(i / (blocks / n))  # SD3Transformer2DModel's interval_control


def _per_row(t: Tensor, batch: int) -> Tensor:
    return t.expand(batch) if t.ndim == 0 else t


def _full(part: Tensor, rows: Tensor, batch: int) -> Tensor:
    """``part`` (the residual of some rows) as a residual of the whole batch, zero elsewhere."""
    if part.shape[0] == batch:
        return part
    out = part.new_zeros((batch, *part.shape[1:]))
    out[rows] = part
    return out


def _add(total: Residuals | None, more: Residuals, memo: dict[tuple[int, int], Tensor]) -> Residuals:
    """Element-wise sum of two per-block lists whose entries repeat; each distinct pair is added once."""
    if total is None:
        return list(more)
    out = []
    for a, b in zip(total, more, strict=True):
        key = (id(a), id(b))
        if key not in memo:
            memo[key] = a + b
        out.append(memo[key])
    return out


def _stack(
    parts: Sequence[tuple[Sequence[Tensor], Tensor]], blocks: int, batch: int, index: Callable[[int, int, int], int]
) -> Residuals | None:
    """The summed per-block residuals of several ControlNets (each with the rows it ran on)."""
    total: Residuals | None = None
    memo: dict[tuple[int, int], Tensor] = {}
    for samples, rows in parts:
        if not samples:
            continue
        whole = [_full(s, rows, batch) for s in samples]
        total = _add(total, spread(whole, blocks, index), memo)
    return total


def flux_residuals(
    model: Any,
    conds: Sequence[Any],
    per: int,
    sigma: float | None,
    inputs: dict[str, Any],
    latent_hw: tuple[int, int],
    guidance: Sequence[float],
) -> dict[str, Any]:
    """``controlnet_block_samples`` / ``controlnet_single_block_samples`` for ``FluxTransformer2DModel``
    from every active ControlNet (empty when none is). ``inputs`` are the transformer's keyword inputs;
    ``latent_hw`` the padded latent's size; ``guidance`` the distilled guidance of each row."""
    from nodes.diffusion.dit.flux import pack

    active = active_hints(conds, sigma, model.model_sampling)
    if not active:
        return {}
    hidden = inputs["hidden_states"]
    batch, (h, w) = hidden.shape[0], latent_hw
    doubles: list[tuple[Sequence[Tensor], Tensor]] = []
    singles: list[tuple[Sequence[Tensor], Tensor]] = []
    for hint, entries in active:
        rows = batch_rows(entries, per).to(hidden.device)
        net = _net_on(hint, hidden.device)
        latent = encoded_control(hint, h, w, model.latent_scale, model.latent_shift, hidden)
        cond = pack(latent).expand(len(rows), -1, -1)
        g = None
        if net.config.guidance_embeds:
            g = torch.tensor([guidance[i] for i in rows.tolist()], dtype=torch.float32, device=hidden.device)
        mode, union = _flux_mode(hint, len(rows), hidden.device)
        with union:
            d, s = net(
                hidden_states=hidden[rows],
                controlnet_cond=cond,
                controlnet_mode=mode,
                conditioning_scale=hint.strength,
                timestep=_per_row(inputs["timestep"], batch)[rows],
                guidance=g,
                pooled_projections=inputs["pooled_projections"][rows],
                encoder_hidden_states=inputs["encoder_hidden_states"][rows],
                txt_ids=inputs["txt_ids"],
                img_ids=inputs["img_ids"],
                return_dict=False,
            )
        doubles.append((d or [], rows))
        singles.append((s or [], rows))
    transformer = model.unet
    out: dict[str, Any] = {}
    double = _stack(doubles, len(transformer.transformer_blocks), batch, _flux_index)
    single = _stack(singles, len(transformer.single_transformer_blocks), batch, _flux_index)
    if double is not None:
        out["controlnet_block_samples"] = double
    if single is not None:
        out["controlnet_single_block_samples"] = single
    return out


def _flux_mode(hint: ControlHint, rows: int, device: torch.device) -> tuple[Tensor | None, Any]:
    """The ``controlnet_mode`` of a FLUX.1 union ControlNet ([rows, 1], as ``FluxControlNetPipeline`` passes
    ``control_mode``) and the context to run it in: on "auto" the union runs without a mode token."""
    control_net = hint.control_net
    if control_net.union_types is None:
        return None, nullcontext()
    problem = control_net.union_problem()
    if problem is not None:
        from nodes.diffusion.errors import ModelError

        raise ModelError(problem)
    index = control_net.union_index
    if index is None:
        return None, _without_mode(control_net.model)
    return torch.full((rows, 1), index, dtype=torch.long, device=device), nullcontext()


@contextmanager
def _without_mode(net: Any) -> Iterator[None]:
    """Within it, diffusers' FluxControlNetModel runs as a single-type one (no mode token)."""
    net.union = False
    try:
        yield
    finally:
        net.union = True


def sd3_residuals(
    model: Any, conds: Sequence[Any], per: int, sigma: float | None, inputs: dict[str, Any]
) -> dict[str, Any]:
    """``block_controlnet_hidden_states`` for ``SD3Transformer2DModel`` from every active ControlNet."""
    active = active_hints(conds, sigma, model.model_sampling)
    if not active:
        return {}
    hidden = inputs["hidden_states"]
    batch = hidden.shape[0]
    parts: list[tuple[Sequence[Tensor], Tensor]] = []
    for hint, entries in active:
        rows = batch_rows(entries, per).to(hidden.device)
        net = _net_on(hint, hidden.device)
        if not net.config.use_pos_embed and getattr(net, "_sdgraph_pos_embed_of", None) != id(model.unet):
            # SD3.5 Large's ControlNets use the transformer's patch embedder (as diffusers' pipeline arranges)
            net.pos_embed = net._get_pos_embed_from_transformer(model.unet).to(hidden.device, hidden.dtype)
            net._sdgraph_pos_embed_of = id(model.unet)
        zeros = bool(net.config.force_zeros_for_pooled_projection)
        shift = 0.0 if zeros else model.latent_shift
        h, w = hidden.shape[-2:]
        latent = encoded_control(hint, int(h), int(w), model.latent_scale, shift, hidden)
        pooled = inputs["pooled_projections"][rows]
        text = inputs["encoder_hidden_states"][rows] if net.config.joint_attention_dim is not None else None
        (samples,) = net(
            hidden_states=hidden[rows],
            controlnet_cond=latent.expand(len(rows), -1, -1, -1),
            conditioning_scale=hint.strength,
            pooled_projections=torch.zeros_like(pooled) if zeros else pooled,
            encoder_hidden_states=text,
            timestep=_per_row(inputs["timestep"], batch)[rows],
            return_dict=False,
        )
        parts.append((samples, rows))
    stacked = _stack(parts, len(model.unet.transformer_blocks), batch, _sd3_index)
    return {} if stacked is None else {"block_controlnet_hidden_states": stacked}


Z_IMAGE_SHARED = (
    "t_scale",
    "t_embedder",
    "all_x_embedder",
    "cap_embedder",
    "rope_embedder",
    "noise_refiner",
    "context_refiner",
    "x_pad_token",
    "cap_pad_token",
)
"""What a ``ZImageControlNetModel`` takes from the transformer (its ``from_transformer``)."""


@contextmanager
def _borrowing(net: Any, transformer: Any) -> Iterator[None]:
    """The ControlNet with the transformer's shared parts for one call, given back after it (the cached
    ControlNet keeps no reference to a transformer, which may be unloaded or replaced)."""
    for name in Z_IMAGE_SHARED:
        setattr(net, name, getattr(transformer, name))
    try:
        yield
    finally:
        for name in Z_IMAGE_SHARED:
            setattr(net, name, None)


def z_image_residuals(
    model: Any,
    conds: Sequence[Any],
    per: int,
    sigma: float | None,
    latents: Sequence[Tensor],
    t: Tensor,
    captions: Sequence[Tensor],
) -> dict[str, Any]:
    """``controlnet_block_samples`` for ``ZImageTransformer2DModel``: every active ControlNet's hints,
    summed per layer. ``latents`` ([C, 1, h, w] each), ``t`` and ``captions`` are the transformer's inputs.
    A ControlNet runs on the whole batch, so its hints are padded as the transformer pads (caption lengths
    differ per row); rows whose entry does not carry it get nothing from it."""
    active = active_hints(conds, sigma, model.model_sampling)
    if not active:
        return {}
    first = latents[0]
    h, w = int(first.shape[-2]), int(first.shape[-1])
    total: dict[int, Tensor] = {}
    for hint, entries in active:
        rows = batch_rows(entries, per).to(first.device)
        net = _net_on(hint, first.device)
        control = encoded_control(hint, h, w, model.latent_scale, model.latent_shift, first)
        extra = int(net.config.control_in_dim) - control.shape[1]
        if extra > 0:
            control = torch.cat([control, control.new_zeros((1, extra, h, w))], dim=1)
        context = control.unsqueeze(2).expand(len(latents), -1, -1, -1, -1)
        with _borrowing(net, model.unet):
            hints = net(list(latents), t, list(captions), context, conditioning_scale=hint.strength)
        keep = torch.zeros(len(latents), dtype=torch.bool, device=first.device)
        keep[rows] = True
        for layer, sample in hints.items():
            sample = sample if bool(keep.all()) else sample * keep.view(-1, 1, 1).to(sample.dtype)
            total[layer] = total[layer] + sample if layer in total else sample
    return {"controlnet_block_samples": total}
