"""Eager oneDNN weight prepacking for bf16 convolutions and linears on CPUs with AMX / AVX512-BF16.

Why: in eager mode every ``F.conv2d``/``F.linear`` in bf16 hands oneDNN a plain weight, which it
reorders into its blocked AMX layout *on every call*. For the SD1.5 UNet at 256² that reorder costs
more than the arithmetic in many layers (a 320→320 3×3 convolution on 2×320×32×32: 25.9 ms eager,
3.6 ms with the weight packed once; see docs/benchmarks.md). Inductor's ``freezing`` packs the weights
too, but costs a minute of compile per shape; this gets the packing without compiling.

How: `prepack(module)` gives each ``nn.Conv2d``/``nn.Linear`` a forward that calls
``torch.ops.mkldnn._convolution_pointwise``/``_linear_pointwise`` with a packed copy of its weight,
made on first use (packed for that first input shape; checked: the packed weight gives results
identical to the plain op for other sizes and batches too, so one copy per layer serves every
resolution) and made again if the weight tensor is replaced or modified in place (``.to()``, a
LoRA merge). The
plain path is used when compiling (inductor packs by itself), for grads, and for other dtypes or
devices. LoRA hooks still apply: they act on the module's output.

Cost: the packed copies live next to the plain weights (a bf16 SD1.5 UNet is 1.7 GB), so the
model manager counts them (`packed_nbytes`).
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_ATTR = "_sdgraph_packed"  # per-module (weight identity, packed weight)


def available() -> bool:
    """oneDNN's packed-weight ops exist in this torch build (CPU builds with mkldnn)."""
    return bool(torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


def prepack(module: nn.Module) -> int:
    """Give every plain Conv2d/Linear in ``module`` the prepacked forward; returns how many."""
    if not available():
        return 0
    count = 0
    for m in module.modules():
        if type(m) is nn.Conv2d and m.padding_mode == "zeros" and isinstance(m.padding, tuple):
            object.__setattr__(m, "forward", types.MethodType(_conv_forward, m))
            count += 1
        elif type(m) is nn.Linear:
            object.__setattr__(m, "forward", types.MethodType(_linear_forward, m))
            count += 1
    return count


def packed_nbytes(module: nn.Module) -> int:
    total = 0
    for m in module.modules():
        entry = m.__dict__.get(_ATTR)
        if entry is not None:
            total += _mkldnn_nbytes(entry[1]) if entry[1].is_mkldnn else entry[1].untyped_storage().nbytes()
    return total


def clear(module: nn.Module) -> None:
    """Drop the packed copies (they are made again on the next call)."""
    for m in module.modules():
        m.__dict__.pop(_ATTR, None)


def _mkldnn_nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _usable(m: nn.Module, x: Tensor) -> bool:
    w = m.weight  # type: ignore[union-attr]
    return (
        x.dtype == torch.bfloat16
        and w.dtype == torch.bfloat16
        and x.device.type == "cpu"
        and w.device.type == "cpu"
        and not torch.compiler.is_compiling()
        and not (torch.is_grad_enabled() and (w.requires_grad or x.requires_grad))
    )


def _packed(m: nn.Module, make: Any) -> Tensor:
    """The packed weight, remade when the weight was replaced or changed in place."""
    w: Tensor = m.weight  # type: ignore[assignment]
    ident = (id(w), w.data_ptr(), w._version)
    entry: tuple[Any, Tensor] | None = m.__dict__.get(_ATTR)
    if entry is None or entry[0] != ident:
        with torch.no_grad():
            entry = (ident, make(w))
        m.__dict__[_ATTR] = entry
    return entry[1]


def _conv_forward(self: nn.Conv2d, x: Tensor) -> Tensor:
    if not _usable(self, x) or x.dim() != 4:
        return self._conv_forward(x, self.weight, self.bias)
    padding, stride, dilation = list(self.padding), list(self.stride), list(self.dilation)  # type: ignore[arg-type]
    packed = _packed(
        self,
        lambda w: torch.ops.mkldnn._reorder_convolution_weight(
            w.contiguous(memory_format=torch.channels_last)
            if x.is_contiguous(memory_format=torch.channels_last)
            else w.contiguous(),
            padding,
            stride,
            dilation,
            self.groups,
            list(x.shape),
        ),
    )
    return torch.ops.mkldnn._convolution_pointwise(  # type: ignore[no-any-return]
        x, packed, self.bias, padding, stride, dilation, self.groups, "none", [], ""
    )


def _linear_forward(self: nn.Linear, x: Tensor) -> Tensor:
    if not _usable(self, x) or x.dim() < 2:
        return F.linear(x, self.weight, self.bias)
    rows = x.numel() // x.shape[-1]
    packed = _packed(self, lambda w: torch.ops.mkldnn._reorder_linear_weight(w, rows))
    flat = x.reshape(rows, x.shape[-1])
    if not flat.is_contiguous():
        flat = flat.contiguous()
    out = torch.ops.mkldnn._linear_pointwise(flat, packed, self.bias, "none", [], "")
    return out.reshape(*x.shape[:-1], self.out_features)  # type: ignore[no-any-return]
