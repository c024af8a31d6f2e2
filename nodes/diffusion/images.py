"""Images in and out: PIL ↔ IMAGE tensors, and saving PNGs with the workflow embedded.

IMAGE values are float32 [B, H, W, C] in 0..1 (ComfyUI's layout); MASK values are [B, H, W] with
1 where the image should be regenerated (transparent pixels of a loaded image).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin

from graph_engine.serialization import PNG_WORKFLOW_KEY, atomic_write


def load_image(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(IMAGE [F, H, W, 3], MASK [F, H, W]) — every frame of an animated file with the first frame's size."""
    frames, masks = [], []
    with Image.open(path) as img:
        size = None
        for index in range(getattr(img, "n_frames", 1)):
            img.seek(index)
            frame = ImageOps.exif_transpose(img) or img
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            if size is None:
                size = frame.size
            elif frame.size != size:
                continue
            rgba = frame.convert("RGBA") if "A" in frame.getbands() or "transparency" in frame.info else None
            rgb = np.asarray(frame.convert("RGB"), dtype=np.float32) / 255.0
            frames.append(torch.from_numpy(rgb))
            if rgba is not None:
                alpha = np.asarray(rgba, dtype=np.float32)[..., 3] / 255.0
                masks.append(1.0 - torch.from_numpy(alpha))
            else:
                masks.append(torch.zeros(rgb.shape[:2], dtype=torch.float32))
    return torch.stack(frames), torch.stack(masks)


def to_pil(image: torch.Tensor) -> list[Image.Image]:
    arr = (image.detach().float().cpu().clamp(0, 1).numpy() * 255.0).round().astype(np.uint8)
    return [Image.fromarray(a[..., :3] if a.shape[-1] >= 3 else a[..., 0]) for a in arr]


def safe_prefix(output_dir: Path, prefix: str) -> tuple[Path, str]:
    """Split a filename prefix into (folder inside output_dir, file stem); refuse anything that escapes."""
    if not prefix or "\x00" in prefix or Path(prefix).is_absolute() or re.match(r"^[A-Za-z]:", prefix):
        raise ValueError(f"{prefix!r} must be a relative name inside the output folder")
    parts = Path(prefix).parts
    if ".." in parts:
        raise ValueError(f"{prefix!r} may not contain '..'")
    root = output_dir.resolve()
    folder = (root / Path(*parts[:-1])).resolve() if len(parts) > 1 else root
    if not folder.is_relative_to(root):
        raise ValueError(f"{prefix!r} leads outside the output folder")
    return folder, parts[-1]


def next_counter(folder: Path, stem: str) -> int:
    pattern = re.compile(re.escape(stem) + r"_(\d{5})_?\.png$")
    highest = 0
    if folder.is_dir():
        for p in folder.iterdir():
            m = pattern.match(p.name)
            if m:
                highest = max(highest, int(m.group(1)))
    return highest + 1


def png_bytes(img: Image.Image, text: Mapping[str, str], compress_level: int) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info, compress_level=compress_level)
    return buf.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """A rename-into-place write (a reader never sees half a PNG) with the mode a plain write would give.

    No fsync: previews and outputs are cheap to lose in a power cut, and a run writes many of them.
    """
    atomic_write(path, data, fsync=False)


def save_images(
    images: torch.Tensor,
    output_dir: Path,
    prefix: str,
    workflow: Mapping[str, Any] | None,
    *,
    kind: str = "output",
    compress_level: int = 4,
    extra_text: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    folder, stem = safe_prefix(output_dir, prefix)
    folder.mkdir(parents=True, exist_ok=True)
    text = dict(extra_text or {})
    if workflow is not None:
        text[PNG_WORKFLOW_KEY] = json.dumps(workflow, ensure_ascii=False)
    counter = next_counter(folder, stem)
    saved = []
    for i, img in enumerate(to_pil(images)):
        path = folder / f"{stem}_{counter + i:05}_.png"
        write_atomic(path, png_bytes(img, text, compress_level))
        saved.append(
            {
                "path": str(path),
                "filename": path.name,
                "subfolder": folder.relative_to(output_dir.resolve()).as_posix(),
                "type": kind,
            }
        )
    return saved
