"""Noise lab: the Add Noise (forward diffusion) node, type `ForwardNoise`, which shows the forward
diffusion process one timestep at a time.

Feed it an image (with the VAE that encodes it) or a latent, drag `t` from 0 to 1000 and watch the
picture dissolve into static: x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε, or with the `flow` schedule the straight
path of rectified-flow models (SD3, FLUX, Z-Image), x_t = (1−σ)·x₀ + σ·ε with σ = shift(t/1000).
The node reports ᾱ_t, √ᾱ_t, √(1−ᾱ_t) (for flow: σ, 1−σ) and
SNR = ᾱ/(1−ᾱ) in its `ui` payload (drawn on the node under its widgets) and a cheap latent preview.
It is `live`: the editor re-runs it (and only what is downstream: the decode and the preview, since
the encode upstream is cached) shortly after `t` changes. The maths is in `nodes.diffusion.forward`.

Its type was `AddNoise` until schema 2 of the workflow format; that name is ComfyUI's custom-sampling node
(in `nodes.sampling`), so ComfyUI workflows using it run, and saved files are renamed by the migration in
`graph_engine.serialization`.
"""

from __future__ import annotations

import json
from typing import Any

from graph_engine import Combo, ExecutionContext, Float, InputError, Int, NodeOutput, Output, Socket, node
from nodes.folders import temp_dir

# = nodes.diffusion.forward.SCHEDULES, without importing torch
SCHEDULES = ["scaled_linear", "linear", "cosine", "flow"]
MAX_SEED = 0xFFFFFFFFFFFFFFFF
# A LATENT alone does not say which VAE made it; SD1/SD2's factor is the common case. Connect the VAE
# to use its own factor (SDXL: 0.13025).
DEFAULT_LATENT_SCALE = 0.18215


@node(
    "ForwardNoise",
    display_name="Add Noise (forward diffusion)",
    category="latent/noise lab",
    inputs=[
        Socket("image", "IMAGE", optional=True, tooltip="an image to noise; needs the VAE to encode it"),
        Socket("latent", "LATENT", optional=True, tooltip="or a latent to noise directly"),
        Socket("vae", "VAE", optional=True, tooltip="encodes the image; its scaling factor maps latents"),
        Int(
            "t",
            500,
            min=0,
            max=1000,
            step=10,
            display="slider",
            tooltip="0 = the clean image (ᾱ = 1); 1000 = the schedule's last step (almost pure noise)",
        ),
        Combo(
            "schedule",
            SCHEDULES,
            tooltip="how fast the signal fades: SD's scaled-linear, DDPM linear, cosine, or rectified flow",
        ),
        Int("seed", 0, min=0, max=MAX_SEED, tooltip="the noise ε; the same seed as a KSampler gives its start noise"),
        Float(
            "shift",
            1.0,
            min=0.01,
            max=100.0,
            step=0.01,
            tooltip="flow only: the timestep shift σ = shift·u/(1+(shift−1)·u), u = t/1000 (SD3, Z-Image: 3)",
        ),
    ],
    outputs=[Output("LATENT")],
    live=True,
)
def add_noise(
    ctx: ExecutionContext,
    t: int,
    schedule: str,
    seed: int,
    shift: float = 1.0,
    image: Any = None,
    latent: Any = None,
    vae: Any = None,
) -> NodeOutput:
    """Noises the input to timestep t, as diffusion training does, so you can see what the model undoes."""
    import torch

    from nodes.diffusion.forward import add_noise as forward
    from nodes.diffusion.forward import noise_level
    from nodes.diffusion.previews import latent_to_rgb

    if image is None and latent is None:
        raise InputError("image", "connect an image (with a VAE) or a latent to add noise to")
    if image is not None and latent is not None:
        raise InputError("latent", "connect either an image or a latent, not both")
    scale, offset = DEFAULT_LATENT_SCALE, 0.0
    if vae is not None:
        scale = float(vae.vae.config.scaling_factor)
        offset = float(getattr(vae.vae.config, "shift_factor", None) or 0.0)  # SD3/FLUX VAEs have one
    with torch.inference_mode():
        if image is not None:
            if vae is None:
                raise InputError("vae", "an image must be encoded first: connect the VAE (e.g. the checkpoint's)")
            from nodes.diffusion.checkpoint.vae_ops import encode

            raw = encode(vae.vae, image, scaling_factor=1.0)
        else:
            raw = latent["samples"]
        level = noise_level(schedule, int(t), shift)  # type: ignore[arg-type]
        x_t, _ = forward((raw.float() - offset) * scale, level, seed)
    noisy = x_t / scale + offset
    out = {"samples": noisy}
    if latent is not None:
        out = {**{k: v for k, v in latent.items() if k != "samples"}, "samples": noisy}
    rgb = latent_to_rgb(x_t, "sd3" if x_t.shape[1] == 16 else "sd1")
    ui: dict[str, Any] = {
        "text": level.lines(),
        "figures": level.figures(),
        "images": [
            _save_preview(ctx, rgb, f"{t}_{schedule}_{seed}_{shift:g}", int(raw.shape[-1]) * 8, int(raw.shape[-2]) * 8)
        ],
    }
    return NodeOutput((out,), ui)


def _save_preview(ctx: ExecutionContext, rgb: Any, key: str, width: int, height: int) -> dict[str, Any]:
    """The latent preview at pixel size, named by node and (t, schedule, seed) and overwritten in place:
    a slider scrubbing t makes hundreds of runs, and a bounded set of names keeps the temporary folder
    from filling up, while a cached result for another t still points at its own picture."""
    from PIL import Image

    from nodes.diffusion.images import PNG_WORKFLOW_KEY, png_bytes, write_atomic

    folder = ctx.temp_dir or temp_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"add_noise_{ctx.node_id}_{key}.png"
    img = Image.fromarray(rgb).resize((width, height), Image.Resampling.NEAREST)
    text = {}
    if ctx.workflow is not None:
        text[PNG_WORKFLOW_KEY] = json.dumps(ctx.workflow, ensure_ascii=False)
    write_atomic(path, png_bytes(img, text, 1))
    return {"path": str(path), "filename": path.name, "subfolder": "", "type": "temp"}


NODES = [add_noise]
