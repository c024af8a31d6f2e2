"""Resizing images and latents the way ComfyUI's upscale nodes do (sizes in pixels, 0 keeps aspect)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def target_size(w: int, h: int, width: int, height: int) -> tuple[int, int]:
    if width == 0:
        width = max(1, round(w * height / h))
    elif height == 0:
        height = max(1, round(h * width / w))
    return width, height


def center_crop(x: Tensor, width: int, height: int) -> Tensor:
    """Crop [B, C, H, W] to the target aspect ratio around the centre."""
    h, w = x.shape[-2:]
    old, new = w / h, width / height
    if old > new:
        cw = round(w * new / old)
        x0 = (w - cw) // 2
        return x[..., :, x0 : x0 + cw]
    if old < new:
        ch = round(h * old / new)
        y0 = (h - ch) // 2
        return x[..., y0 : y0 + ch, :]
    return x


def _interpolate(x: Tensor, size: tuple[int, int], method: str) -> Tensor:
    if method == "nearest-exact":
        return F.interpolate(x, size=size, mode="nearest-exact")
    if method == "area":
        return F.interpolate(x, size=size, mode="area")
    if method in ("bilinear", "bislerp"):
        # bislerp (slerp between neighbours) behaves like bilinear for these sizes; bilinear is used.
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    if method in ("bicubic", "lanczos"):
        # latents have no lanczos; images use PIL's (resize_image)
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    raise ValueError(f"unknown upscale method {method!r}")


def resize_latent(samples: Tensor, width: int, height: int, method: str, crop: str) -> Tensor:
    h, w = samples.shape[-2:]
    width, height = target_size(w * 8, h * 8, width, height)
    width, height = max(64, width), max(64, height)
    x = center_crop(samples, width, height) if crop == "center" else samples
    return _interpolate(x.float(), (height // 8, width // 8), method)


def _lanczos(x: Tensor, width: int, height: int) -> Tensor:
    """PIL's Lanczos filter on 8-bit images, as ComfyUI's lanczos method does for images; [B, C, H, W]."""
    import numpy as np
    from PIL import Image

    out = []
    for img in x:
        arr = np.clip(255.0 * img.permute(1, 2, 0).cpu().numpy(), 0, 255).astype(np.uint8)
        pil = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
        res = np.asarray(pil.resize((width, height), resample=Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
        out.append(torch.from_numpy(res.reshape(height, width, -1).copy()).permute(2, 0, 1))
    return torch.stack(out)


def resize_latent_cells(samples: Tensor, width: int, height: int, method: str) -> Tensor:
    """Resize latents to ``width``×``height`` latent cells (Upscale Latent By), no minimum size."""
    return _interpolate(samples.float(), (height, width), method)


def resize_image(image: Tensor, width: int, height: int, method: str, crop: str) -> Tensor:
    """IMAGE [B, H, W, C] → resized IMAGE, values kept in 0..1."""
    _, h, w, _ = image.shape
    width, height = target_size(w, h, width, height)
    x = image.permute(0, 3, 1, 2)
    if crop == "center":
        x = center_crop(x, width, height)
    if method == "lanczos":
        x = _lanczos(x.float(), width, height)
    else:
        x = _interpolate(x.float(), (height, width), method).clamp(0, 1)
    return x.permute(0, 2, 3, 1).contiguous()


def grow_mask(mask: Tensor, pixels: int) -> Tensor:
    """Dilate a [B, H, W] mask by `pixels` with a square max filter."""
    if pixels <= 0:
        return mask
    k = 2 * pixels + 1
    return F.max_pool2d(mask[:, None].float(), kernel_size=k, stride=1, padding=pixels)[:, 0]


__all__ = ["center_crop", "grow_mask", "resize_image", "resize_latent", "resize_latent_cells", "target_size", "torch"]
