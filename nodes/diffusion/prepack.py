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
resolution) and made again if the weight tensor is replaced (``.to()`` to another dtype, an
assignment) or, for a trainable weight, which keeps its Parameter, modified in place. The
plain path is used when compiling (inductor packs by itself), for grads, and for other dtypes or
devices. LoRA hooks still apply: they act on the module's output.

Memory: once a layer's weight is packed, the packed copy *replaces* the plain one (issue 15: keeping
both took fast mode's peak RSS from 3.16 to 4.80 GB for SD1.5). The layer's class becomes a subclass
(`_PackedConv2d`/`_PackedLinear`) whose ``weight`` is a property that unpacks the packed tensor on each
access (``to_dense()``: a pure reorder, bit-exact, ~20 ms for a 29 MB weight) and whose ``weight_meta()``
gives shape/dtype/device without unpacking (what LoRA's fitting reads). What else reads the weight:
``state_dict()`` writes the unpacked weight; ``load_state_dict()``, assigning ``.weight`` and a ``.to()``
that changes dtype or device first put the plain Parameter back (`unpack`), so ``.to(float32)`` gives the
original weights exactly; a ``.to(memory_format=…)`` (what `prepare_unet` does on every request) keeps
the packed copy. ``parameters()`` no longer lists the packed weights; `packed_nbytes` counts them.
In-place edits of ``.weight`` on a packed layer are not seen (each access is a fresh copy): assign a new
weight or call `unpack` first. `compile.py` calls `unpack` before compiling (inductor packs by itself).

Cost: packing SD1.5's UNet (282 layers, once, inside the first step that reaches each layer) takes
0.25 s of the first step (load 2.1, measured apart; not worth moving to the loading thread). Memory:
fast mode's peak RSS (`bench/sd.py`) is 3.31–3.52 GB with the packed copies replacing the plain
weights, 4.77 GB when both were kept; the step time is unchanged (interleaved, outputs bit-identical).
See docs/benchmarks.md.
"""

from __future__ import annotations

import threading
import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_packing = threading.Lock()
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
    """Bytes held by the packed weights (which are not in ``parameters()`` once they replace the plain ones)."""
    total = 0
    for m in module.modules():
        entry = m.__dict__.get(_ATTR)
        if entry is not None:
            total += _mkldnn_nbytes(entry[1]) if entry[1].is_mkldnn else entry[1].untyped_storage().nbytes()
    return total


def clear(module: nn.Module) -> None:
    """Drop the packed copies, putting the plain weights back (packed again on the next call)."""
    unpack(module)


def unpack(module: nn.Module) -> int:
    """Put the plain weight Parameter back in every packed layer of ``module`` and drop the packed copies;
    returns how many layers were unpacked. The forward stays the packing one: the next call packs again."""
    count = 0
    for m in module.modules():
        if isinstance(m, _PackedWeight):
            m._unpack_in_place()
            count += 1
        else:
            m.__dict__.pop(_ATTR, None)
    return count


def is_packed(module: nn.Module) -> bool:
    """The layer's plain weight has been replaced by its packed copy."""
    return isinstance(module, _PackedWeight)


class _PackedWeight:
    """Mixed into a packed layer's class: ``weight`` is unpacked from the packed copy on access.

    Why a class and not a Parameter subclass or a lazy tensor: ``nn.Module`` finds ``weight`` through
    ``_parameters``; removing it from there frees the plain storage, and a property on the class is then
    what ``m.weight`` finds. The hooks below keep the module's other protocols (``.to()``, state dicts,
    assignment) meaning what they mean for the plain layer.
    """

    __dict__: dict[str, Any]

    @property
    def weight(self) -> Tensor:
        """The plain weight, unpacked (a new tensor on each access: ~the cost of a copy)."""
        return self.__dict__[_ATTR][1].to_dense()  # type: ignore[no-any-return]

    def weight_meta(self) -> tuple[torch.Size, torch.dtype, torch.device]:
        packed: Tensor = self.__dict__[_ATTR][1]
        return packed.shape, packed.dtype, packed.device

    def _unpack_in_place(self) -> None:
        entry = self.__dict__.pop(_ATTR)
        base = type(self).__mro__[2]  # _PackedConv2d -> (_PackedWeight, nn.Conv2d)
        dense = entry[1].to_dense()
        layout = self.__dict__.pop(_LAYOUT, torch.contiguous_format)
        object.__setattr__(self, "__class__", base)
        self._parameters["weight"] = nn.Parameter(dense.contiguous(memory_format=layout), requires_grad=False)  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "weight":
            self._unpack_in_place()
            nn.Module.__setattr__(self, name, value)  # type: ignore[arg-type]  # now the plain class's
        else:
            super().__setattr__(name, value)

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        packed: Tensor = self.__dict__[_ATTR][1]
        probe = torch.zeros((1,) * packed.dim(), dtype=packed.dtype, device=packed.device)
        moved = fn(probe)
        if moved.dtype != probe.dtype or moved.device != probe.device:
            self._unpack_in_place()  # a real conversion: do it on the plain weight
            return self._apply(fn, recurse)  # now the plain class's
        return super()._apply(fn, recurse)  # type: ignore[misc]

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        destination[prefix + "weight"] = self.weight
        super()._save_to_state_dict(destination, prefix, keep_vars)  # type: ignore[misc]

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._unpack_in_place()
        self._load_from_state_dict(*args, **kwargs)  # now the plain class's


class _PackedConv2d(_PackedWeight, nn.Conv2d):
    pass


class _PackedLinear(_PackedWeight, nn.Linear):
    pass


_LAYOUT = "_sdgraph_packed_layout"  # the memory format the plain weight had, restored by unpacking


def _replace_plain(m: nn.Module) -> None:
    """Free the plain weight of a just-packed layer (its packed copy now stands in for it)."""
    weight = m._parameters.get("weight")
    if weight is None or weight.requires_grad:
        return  # a trainable weight keeps its Parameter: gradients and optimizers need it
    m.__dict__[_LAYOUT] = (
        torch.channels_last
        if weight.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
        else torch.contiguous_format
    )
    object.__setattr__(m, "__class__", _PackedConv2d if type(m) is nn.Conv2d else _PackedLinear)
    del m._parameters["weight"]


def _mkldnn_nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _usable(m: nn.Module, x: Tensor) -> bool:
    if isinstance(m, _PackedWeight):
        _, dtype, device = m.weight_meta()
        needs_grad = False
    else:
        w = m.weight  # type: ignore[union-attr]
        dtype, device, needs_grad = w.dtype, w.device, w.requires_grad
    return (
        x.dtype == torch.bfloat16
        and dtype == torch.bfloat16
        and x.device.type == "cpu"
        and device.type == "cpu"
        and not torch.compiler.is_compiling()
        and not (torch.is_grad_enabled() and (needs_grad or x.requires_grad))
    )


def _packed(m: nn.Module, make: Any) -> Tensor:
    """The packed weight, remade when the weight was replaced or changed in place; made, it replaces the
    plain weight (`_replace_plain`)."""
    if isinstance(m, _PackedWeight):
        return m.__dict__[_ATTR][1]  # type: ignore[no-any-return]
    # Two graphs may sample one model at once: packing (which swaps the layer's class and frees its plain
    # weight) happens once per layer, under a lock, and a thread that waited finds it done.
    with _packing:
        if isinstance(m, _PackedWeight):
            return m.__dict__[_ATTR][1]  # type: ignore[no-any-return]
        w: Tensor = m.weight  # type: ignore[assignment]
        ident = (id(w), w.data_ptr(), w._version)
        entry: tuple[Any, Tensor] | None = m.__dict__.get(_ATTR)
        if entry is None or entry[0] != ident:
            with torch.no_grad():
                entry = (ident, make(w))
            m.__dict__[_ATTR] = entry
            del w
            _replace_plain(m)
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
