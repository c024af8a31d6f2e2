"""Latent nodes: empty latents, VAE encode/decode, inpainting masks, latent upscale.

A LATENT is a dict, as in ComfyUI: `samples` is a float32 tensor [B, C, H/8, W/8] (C = 4 for SD1/SDXL,
16 for SD3/FLUX/Z-Image) of the VAE's own
latents (the sampler applies the model's scale factor on the way in and out), and `noise_mask`
(optional, [B, 1, H, W] or [B, H, W], 1 = regenerate) limits sampling to part of the image.
"""

from __future__ import annotations

from typing import Any

from graph_engine import Combo, ExecutionContext, InputError, Int, Output, Socket, node

MAX_RESOLUTION = 16384
UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
CROP_METHODS = ["disabled", "center"]


@node(
    "EmptyLatentImage",
    display_name="Empty Latent Image",
    category="latent",
    inputs=[
        Int("width", 512, min=16, max=MAX_RESOLUTION, step=8, multiple_of=8),
        Int("height", 512, min=16, max=MAX_RESOLUTION, step=8, multiple_of=8),
        Int("batch_size", 1, min=1, max=4096),
    ],
    outputs=[Output("LATENT")],
)
def empty_latent(ctx: ExecutionContext, width: int, height: int, batch_size: int) -> tuple[Any]:
    """The starting point for text-to-image: zeros, which the sampler replaces with seeded noise."""
    import torch

    return ({"samples": torch.zeros([batch_size, 4, height // 8, width // 8])},)


@node(
    "EmptySD3LatentImage",
    display_name="Empty Latent Image (16 channels)",
    category="latent/sd3",
    inputs=[
        Int("width", 1024, min=16, max=MAX_RESOLUTION, step=16),
        Int("height", 1024, min=16, max=MAX_RESOLUTION, step=16),
        Int("batch_size", 1, min=1, max=4096),
    ],
    outputs=[Output("LATENT")],
)
def empty_sd3_latent(ctx: ExecutionContext, width: int, height: int, batch_size: int) -> tuple[Any]:
    """Text-to-image start for 16-channel latent models (SD3, FLUX.1, Z-Image): zeros, which the
    sampler replaces with seeded noise."""
    import torch

    return ({"samples": torch.zeros([batch_size, 16, height // 8, width // 8])},)


@node(
    "VAEDecode",
    display_name="VAE Decode",
    category="latent",
    inputs=[Socket("samples", "LATENT"), Socket("vae", "VAE")],
    outputs=[Output("IMAGE")],
)
def vae_decode(ctx: ExecutionContext, samples: Any, vae: Any) -> tuple[Any]:
    """Latents to pixels (with an fp32 retry if reduced precision overflows)."""
    import torch

    from nodes.diffusion.checkpoint.vae_ops import decode

    with torch.inference_mode():
        image = decode(vae.vae, samples["samples"], scaling_factor=1.0)
    if not torch.isfinite(image).all():
        raise InputError("samples", "the decoded image contains NaN values; the latent is corrupt")
    return (image,)


@node(
    "VAEEncode",
    display_name="VAE Encode",
    category="latent",
    inputs=[Socket("pixels", "IMAGE"), Socket("vae", "VAE")],
    outputs=[Output("LATENT")],
)
def vae_encode(ctx: ExecutionContext, pixels: Any, vae: Any) -> tuple[Any]:
    """Pixels to latents, for image-to-image."""
    import torch

    from nodes.diffusion.checkpoint.vae_ops import encode

    with torch.inference_mode():
        return ({"samples": encode(vae.vae, pixels, scaling_factor=1.0)},)


@node(
    "VAEEncodeForInpaint",
    display_name="VAE Encode (for Inpainting)",
    category="latent/inpaint",
    inputs=[
        Socket("pixels", "IMAGE"),
        Socket("vae", "VAE"),
        Socket("mask", "MASK"),
        Int("grow_mask_by", 6, min=0, max=64),
    ],
    outputs=[Output("LATENT")],
)
def vae_encode_for_inpaint(ctx: ExecutionContext, pixels: Any, vae: Any, mask: Any, grow_mask_by: int) -> tuple[Any]:
    """Greys out the masked pixels before encoding and marks them for regeneration (for inpainting
    checkpoints at denoise 1)."""
    import torch

    from nodes.diffusion.checkpoint.vae_ops import encode
    from nodes.diffusion.inpaint import prepare_inpaint

    pixels, noise_mask = prepare_inpaint(pixels, mask, grow_mask_by)
    with torch.inference_mode():
        latent = encode(vae.vae, pixels, scaling_factor=1.0)
    return ({"samples": latent, "noise_mask": noise_mask},)


@node(
    "SetLatentNoiseMask",
    display_name="Set Latent Noise Mask",
    category="latent/inpaint",
    inputs=[Socket("samples", "LATENT"), Socket("mask", "MASK")],
    outputs=[Output("LATENT")],
)
def set_latent_noise_mask(ctx: ExecutionContext, samples: Any, mask: Any) -> tuple[Any]:
    """Only the masked area is resampled (for inpainting with ordinary checkpoints at denoise < 1)."""
    out = dict(samples)
    out["noise_mask"] = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float()
    return (out,)


@node(
    "LatentUpscale",
    display_name="Upscale Latent",
    category="latent",
    inputs=[
        Socket("samples", "LATENT"),
        Combo("upscale_method", UPSCALE_METHODS),
        Int("width", 512, min=0, max=MAX_RESOLUTION, step=8),
        Int("height", 512, min=0, max=MAX_RESOLUTION, step=8),
        Combo("crop", CROP_METHODS),
    ],
    outputs=[Output("LATENT")],
)
def latent_upscale(
    ctx: ExecutionContext, samples: Any, upscale_method: str, width: int, height: int, crop: str
) -> tuple[Any]:
    """Resizes latents (sizes in pixels; 0 keeps the aspect ratio), e.g. for a hires-fix second pass."""
    from nodes.diffusion.resize import resize_latent

    if width == 0 and height == 0:
        return (samples,)
    out = {k: v for k, v in samples.items() if k != "noise_mask"}
    out["samples"] = resize_latent(samples["samples"], width, height, upscale_method, crop)
    return (out,)


NODES = [
    empty_latent,
    empty_sd3_latent,
    vae_decode,
    vae_encode,
    vae_encode_for_inpaint,
    set_latent_noise_mask,
    latent_upscale,
]
