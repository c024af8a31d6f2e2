"""Edge maps for ControlNets, by scikit-image (an existing, tested implementation of Canny's detector).

ComfyUI's Canny node runs kornia's detector on the grey image in 0..1: a 5×5 Gaussian (σ = 1), the
unnormalised Sobel gradient, non-maximum suppression and hysteresis between the two thresholds.
scikit-image's ``canny`` does the same steps with the same unnormalised Sobel kernel, so the thresholds
mean the same gradient strength in both (a hard black-to-white step peaks near 3.2).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def canny_edges(image: Tensor, low: float, high: float) -> Tensor:
    """[B, H, W, C] IMAGE in 0..1 -> the same-size IMAGE of edges (1 on edges, 0 elsewhere, in all three
    channels)."""
    try:
        from skimage.feature import canny
    except ImportError as exc:  # pragma: no cover - scikit-image is in the "sd" extra
        raise RuntimeError("the Canny node needs scikit-image: pip install 'sdgraph[sd]'") from exc
    rgb = image[..., :3].float().cpu()
    if rgb.shape[-1] == 1:
        rgb = rgb.expand(-1, -1, -1, 3)
    # ITU-R 601 luma, the weights kornia's rgb_to_grayscale uses.
    grey = (rgb * torch.tensor([0.299, 0.587, 0.114])).sum(-1).numpy().astype(np.float64)
    edges = [canny(g, sigma=1.0, low_threshold=low, high_threshold=high, mode="nearest") for g in grey]
    out = torch.from_numpy(np.stack(edges).astype(np.float32))
    return out.unsqueeze(-1).expand(-1, -1, -1, 3).contiguous()
