"""The linear layer whose weight stays in its compact stored form (GGUF blocks, fp8 with a scale) and is
turned into floats for each call only.

GGUF and scaled-fp8 files differ in how the stored bytes become floats, not in what the layer does with
them, so that part lives here once: ``forward`` and ``weight`` dequantize to the dtype asked for, and
:meth:`weight_meta` tells shape, dtype and device without dequantizing — what a LoRA needs to hook the
layer (``nodes.diffusion.lora``), which it does exactly as for an ``nn.Linear``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class StoredWeightLinear(torch.nn.Module):
    """Base class: subclasses register their stored buffers and say how to read them (:meth:`stored`)."""

    in_features: int
    out_features: int
    dtype_hint: Tensor  # empty; the dtype ``weight`` reports (code such as T5's and Z-Image's reads it)
    bias: torch.nn.Parameter | None

    def stored(self) -> Any:
        """The stored weight: an object with ``dequantize(dtype, device)`` and a ``device``."""
        raise NotImplementedError

    def weight_meta(self) -> tuple[torch.Size, torch.dtype, torch.device]:
        """Shape, dtype and device of ``weight`` without computing it."""
        return torch.Size((self.out_features, self.in_features)), self.dtype_hint.dtype, self.stored().device

    @property
    def weight(self) -> Tensor:
        """The float weight, computed on each access (for code that reads it; nothing is kept)."""
        stored = self.stored()
        return stored.dequantize(self.dtype_hint.dtype, stored.device)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.stored().dequantize(x.dtype, x.device)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return torch.nn.functional.linear(x, weight, bias)
