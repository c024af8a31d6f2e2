"""The denoising timeline: what a sampler run looked like at every step, cheap to keep and to scrub.

When the run's settings ask for it (`record_timeline`), `nodes.diffusion.ksampler.sample` stores in
`ctx.records["timeline"]` a dict with `frames`, `family`, `sigmas`, `latent_scale` and `image_size`
((width, height) of the decoded image, the size the editor exports the GIF at). There are steps + 1
frames: frame 0 is the start (the input latent plus the seed's noise at the first σ, i.e. pure noise for
text-to-image) and frame k ≥ 1 is the state after step k, whose last frame holds the final latent. Each
frame is a dict:

* ``step`` (0…steps), ``sigma`` (the noise level of ``x``: σ_k, 0 for the last frame), ``t`` (the
  model's timestep for that σ, `model_sampling.timestep`: a table index 0…999, fractional, for SD
  models; σ·multiplier for flow models);
* ``x`` and ``denoised``: the raw latents [1, C, h, w] in the model's scaled space (``denoised`` is the
  x̂₀ prediction made during step k, at σ_{k−1}; None for frame 0), kept so one step can be decoded
  with the full VAE on request (`decode_frame`);
* ``preview_x`` and ``preview_denoised``: uint8 [h, w, 3] Latent2RGB previews (None for frame 0's x̂₀).
  The x preview shows ``x_scale``·x (also stored): for SD models x/√(σ²+1), the variance-preserving
  x_t the UNet was trained on (x_t = √ᾱ·x₀ + √(1−ᾱ)·ε, the same picture the Add Noise node draws) — the
  raw sample x = x₀ + σ·ε has a std of ~15 at the start and would just clip to a flat colour; for
  flow models x itself, which already is the flow path x_t = (1−σ)·x₀ + σ·ε (x_scale 1).

The previews cost a 4×3 matrix product per step; the UI only ever needs them and the numbers, so it
can show and export a timeline without touching torch. This module imports torch only inside the
functions that need it (`make_frame`, `decode_frame`), so the UI may import the rest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from torch import Tensor

    from nodes.diffusion.sampling import AnyModelSampling

Frame = dict[str, Any]
ANIMATION_SUFFIXES = (".gif", ".webp")


def make_frame(
    step: int, sigma: float, x: Tensor, denoised: Tensor | None, model_sampling: AnyModelSampling, family: str
) -> Frame:
    """One timeline frame from the sampler's state (first batch item only: previews show one image)."""
    from nodes.diffusion.previews import latent_to_rgb

    x1 = x[:1].detach().float().cpu()
    d1 = None if denoised is None else denoised[:1].detach().float().cpu()
    x_scale = model_sampling.process.unit_scale(float(sigma))
    return {
        "step": int(step),
        "sigma": float(sigma),
        "t": float(model_sampling.timestep(float(sigma))) if sigma > 0 else 0.0,
        "x": x1,
        "x_scale": x_scale,
        "denoised": d1,
        "preview_x": latent_to_rgb(x1 * x_scale, family),
        "preview_denoised": None if d1 is None else latent_to_rgb(d1, family),
    }


def decode_frame(vae: Any, frame: Mapping[str, Any], latent_scale: float, which: str = "denoised") -> np.ndarray:
    """Decode one step with the full VAE: uint8 [H, W, 3]. Slow next to the previews, so on request only.

    `vae` is the VAE socket's value (`VAEModel`) or a diffusers AutoencoderKL. ``which="denoised"``
    decodes the x̂₀ prediction (frame 0 has none, so its x is used), ``"x"`` the noisy sample, scaled
    to the VP x_t like its preview.
    """
    import torch

    from nodes.diffusion.checkpoint.vae_ops import decode

    if which not in ("denoised", "x"):
        raise ValueError(f"which must be 'denoised' or 'x', not {which!r}")
    latent = frame.get("denoised") if which == "denoised" else None
    if latent is None:
        scale = frame.get("x_scale", 1.0 / math.sqrt(float(frame["sigma"]) ** 2 + 1.0))
        latent = frame["x"] * scale
    autoencoder = getattr(vae, "vae", vae)
    with torch.inference_mode():
        image = decode(autoencoder, latent / latent_scale + float(frame.get("latent_shift", 0.0)), scaling_factor=1.0)
    return (image[0].clamp(0, 1).numpy() * 255.0).round().astype(np.uint8)  # type: ignore[no-any-return]


def frame_label(frame: Mapping[str, Any], steps: int, *, sigma: str = "σ") -> str:
    """The caption of one frame. `sigma` is how σ is written: "sigma" for a font that lacks the glyph
    (Pillow's built-in font does, and would draw a box)."""
    return f"step {frame['step']}/{steps}   t {frame['t']:.0f}   {sigma} {frame['sigma']:.3f}"


def timeline_image_size(
    frames: Sequence[Mapping[str, Any]], record: Mapping[str, Any] | None = None
) -> tuple[int, int]:
    """(width, height) of the image the run decodes to: the record's `image_size` when the sampler stored
    it, else the latent's size × 8 (every supported VAE downsamples 8×), else the preview's × 8."""
    if record is not None and record.get("image_size"):
        w, h = record["image_size"]
        return int(w), int(h)
    if not frames:
        raise ValueError("the timeline is empty: run a sampler with timeline recording on first")
    x = frames[0].get("x")
    if x is not None and hasattr(x, "shape") and len(x.shape) >= 2:
        return int(x.shape[-1]) * 8, int(x.shape[-2]) * 8
    h, w = np.asarray(frames[0]["preview_x"]).shape[:2]
    return int(w) * 8, int(h) * 8


def compose_frame(frame: Mapping[str, Any], steps: int, scale: int = 4, *, label: bool = True) -> Image.Image:
    """x_t and x̂₀ previews side by side (upscaled `scale`×, nearest), with the step's numbers on top.

    The headless export's frame; the editor draws its own at the image's size with a font that has σ
    (`ui.panels.timeline_export`). Pillow's built-in font has no σ, so the label spells it "sigma".
    """
    x = np.asarray(frame["preview_x"], dtype=np.uint8)
    h, w = x.shape[:2]
    d = frame.get("preview_denoised")
    d = np.full_like(x, 40) if d is None else np.asarray(d, dtype=np.uint8)
    gap = 2
    header = 14 if label else 0
    canvas = Image.new("RGB", (2 * w * scale + gap, h * scale + header), (24, 24, 24))
    size = (w * scale, h * scale)
    canvas.paste(Image.fromarray(x).resize(size, Image.Resampling.NEAREST), (0, header))
    canvas.paste(Image.fromarray(d).resize(size, Image.Resampling.NEAREST), (w * scale + gap, header))
    if label:
        ImageDraw.Draw(canvas).text((3, 1), frame_label(frame, steps, sigma="sigma"), fill=(230, 230, 230))
    return canvas


def check_animation_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in ANIMATION_SUFFIXES:
        raise ValueError(f"export as .gif or .webp, not {path.suffix or 'no suffix'!r}")
    return path


def write_animation(images: Sequence[Image.Image], path: str | Path, *, duration_ms: int = 200) -> int:
    """Write `images` as an animated GIF or WebP (by suffix), looping; the last frame lingers so the
    result is seen before the loop restarts. Returns the number of frames written."""
    path = check_animation_path(path)
    if not images:
        raise ValueError("the timeline is empty: run a sampler with timeline recording on first")
    durations = [duration_ms] * (len(images) - 1) + [duration_ms * 5]
    path.parent.mkdir(parents=True, exist_ok=True)
    first, rest = images[0], list(images[1:])
    if path.suffix.lower() == ".webp":
        first.save(path, save_all=True, append_images=rest, duration=durations, loop=0, lossless=True)
    else:
        # Pillow merges consecutive identical GIF frames (the last steps often look alike); the step
        # label drawn on every frame keeps them distinct, so the file has one frame per timeline frame.
        first.save(path, save_all=True, append_images=rest, duration=durations, loop=0, optimize=False, disposal=1)
    return len(images)


def export_animation(
    frames: Sequence[Mapping[str, Any]], path: str | Path, *, scale: int = 4, duration_ms: int = 200
) -> int:
    """Write the timeline as an animated GIF or WebP (by suffix), one animation frame per timeline frame
    (steps + 1 of them: the noise start, then one per step), previews side by side (`compose_frame`).
    Returns the number of frames written."""
    check_animation_path(path)
    if not frames:
        raise ValueError("the timeline is empty: run a sampler with timeline recording on first")
    steps = max(int(f["step"]) for f in frames)
    return write_animation([compose_frame(f, steps, scale) for f in frames], path, duration_ms=duration_ms)
