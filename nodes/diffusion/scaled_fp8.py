"""fp8 weights kept in fp8 and scaled back per call: ComfyUI's "scaled fp8" transformer files
(``flux1-dev-kontext_fp8_scaled``, ``sd3.5_large_fp8_scaled``, …) and fp8 text encoders, plain
(``t5xxl_fp8_e4m3fn``) or scaled (``t5xxl_fp8_e4m3fn_scaled``).

Plain fp8 rounds every weight onto the e4m3fn grid, whose range (±448) and 3 mantissa bits fit some
layers badly. A scaled file stores, for each quantized linear layer, ``<layer>.weight`` in fp8 together
with one float32 scalar ``<layer>.scale_weight`` chosen when the file was made (typically
``amax(|w|) / 448``, so the layer uses the whole fp8 range); the real weight is

    weight = fp8_weight.to(float32) * scale_weight

A marker tensor ``scaled_fp8`` at the top of the file says it is such a file. Layers without a
``scale_weight`` are stored as they are (bf16 biases, norms, embedders) and load as in any file.

**Kept in fp8.** The key converters (``nodes.diffusion.dit.assembly.apply_rules``) pair each weight with
its scale in a :class:`ScaledWeight`, which supports the row splits and half swaps the converters make
(the scale is one scalar for the whole tensor, so every part keeps it). A linear layer whose weight is
scaled becomes a :class:`ScaledFp8Linear`: it keeps the fp8 tensor as a buffer and the scale in
float32, and for each call computes ``(fp8.float() * scale).to(x.dtype)`` (by a lookup in a table of
the 256 possible products: the same values, faster on a CPU) and the ``linear`` with it, caching
nothing, so at most one layer's float weight exists at a time. The multiplication is done in float32
before rounding to the working dtype, so a bf16 run rounds once (a bf16 scale would add a second
rounding). A scaled weight that is not a linear's (none in the transformer files we know of) is
dequantized once at load (to float32 for a transformer, to the working dtype for a text encoder), as the
GGUF loader does.

**Text encoders** (``nodes.diffusion.text.encoder_files``) use the same pieces for every fp8 weight
(:func:`keep_fp8`): a scaled one as above, a plain one (no ``scale_weight``) as a :class:`ScaledWeight`
of scale 1 — ``fp8.float() * 1`` is the fp8 value itself, exactly representable in bf16, fp16 and
float32 — so a linear's stays fp8 in a :class:`ScaledFp8Linear`, and the rest (token tables, norms, T5's
relative-attention table, if a file has them in fp8) is dequantized at load. That is a choice by size:
the token table is the only large one (T5-XXL's ``shared`` 32128×4096: 126 MB in fp8, 251 MB in bf16,
2.6 % of the 4.9 GB fp8 file; Qwen3-4B's 151936×2560: 371 MB → 742 MB, 9 %; CLIP-L's 36 → 72 MB), and
a dequantized table is an ordinary ``nn.Embedding`` that textual-inversion lookups, weight tying and
transformers' own code read as they expect. Only the looked-up rows would be needed per call, so a
lookup-time table is the next step should the 0.4 GB of Qwen3 matter.

**``scale_input``.** Some files also carry ``<layer>.scale_input``: a scale for the layer's *input*,
meant for kernels that multiply in fp8 (``torch._scaled_mm``), which quantize the activations too as
``x_fp8 = (x / scale_input).to(fp8)`` and multiply the product back by ``scale_input * scale_weight``.
sdgraph never multiplies in fp8; it computes in bf16/fp32, where dividing the input by ``scale_input``
and multiplying the product back by it cancel exactly up to rounding. So ``scale_input`` is read
(it must be a positive finite scalar, or the file is refused naming the tensor) and not applied: the
result is the unquantized-activation product, which is what the fp8 kernels approximate.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import torch
from torch import Tensor

from nodes.diffusion.stored_linear import StoredWeightLinear

#: The marker tensor a scaled file has at the top level (also under an all-in-one file's model prefix).
MARKER = "scaled_fp8"
SCALE_WEIGHT = ".scale_weight"
SCALE_INPUT = ".scale_input"
#: The fp8 formats files use (ComfyUI writes e4m3fn; e5m2 has more range and one mantissa bit less).
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


def is_fp8(dtype: torch.dtype) -> bool:
    return dtype in FP8_DTYPES


@cache
def _fp8_values(dtype: torch.dtype, device: torch.device) -> Tensor:
    """The float32 value of each of the 256 bytes of ``dtype`` (NaN for its NaN codes), on ``device``."""
    return torch.arange(256, dtype=torch.uint8).view(dtype).to(torch.float32).to(device)


class ScaledWeight:
    """A stored (fp8) weight and the float32 scalar it is multiplied by. Supports what the key
    converters do to tensors (row ``split``/``chunk``, ``torch.cat`` of parts sharing the scale), on the
    fp8 tensor only; the values are never materialised in float there."""

    def __init__(self, data: Tensor, scale: Tensor) -> None:
        self.data = data
        self.scale = scale.detach().to(torch.float32).reshape(())
        self.shape = data.shape

    @property
    def device(self) -> torch.device:
        return self.data.device

    def is_floating_point(self) -> bool:
        return False  # never cast by a loader's dtype handling: it stays as stored

    def split(self, sizes: Sequence[int], dim: int = 0) -> tuple[ScaledWeight, ...]:
        parts = torch.split(self.data, list(sizes), dim=dim)
        return tuple(ScaledWeight(p, self.scale) for p in parts)

    def chunk(self, n: int, dim: int = 0) -> tuple[ScaledWeight, ...]:
        return tuple(ScaledWeight(p, self.scale) for p in self.data.chunk(n, dim=dim))

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        """``torch.cat`` of parts with one scale (the AdaLN half swap); nothing else."""
        kwargs = kwargs or {}
        if func is torch.cat:
            parts = args[0]
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            if all(isinstance(p, ScaledWeight) and torch.equal(p.scale, parts[0].scale) for p in parts):
                return ScaledWeight(torch.cat([p.data for p in parts], dim=dim), parts[0].scale)
        raise TypeError(f"{getattr(func, '__name__', func)} is not defined on a scaled fp8 weight")

    def dequantize(self, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> Tensor:
        """``data * scale`` in float32, then rounded once to ``dtype``; computed now and not kept.

        An fp8 byte has 256 possible values, so the products are computed for those 256 and each weight
        looked up by its byte: per element the same float32 product and the same rounding as
        ``(data.float() * scale).to(dtype)``, but ~3.5× faster on a CPU, where torch converts fp8 one
        element at a time (47 ms against 11 ms for a 2816×1024 layer; bench/fp8_text_memory.py)."""
        device = device or self.data.device
        data = self.data.to(device)
        scale = self.scale.to(device)
        if not is_fp8(data.dtype):
            return (data.to(torch.float32) * scale).to(dtype)
        table = (_fp8_values(data.dtype, device) * scale).to(dtype)
        return table.index_select(0, data.view(torch.uint8).reshape(-1).int()).view(data.shape)

    def __repr__(self) -> str:
        return f"ScaledWeight({self.data.dtype}, {list(self.shape)}, scale={float(self.scale):.3g})"


class ScaledFp8Linear(StoredWeightLinear):
    """A linear layer whose weight stays as stored (``fp8_weight``) and is scaled for each call.

    It manages its own dtypes (``own_dtypes``): the runtime's compute-dtype pass only calls
    :meth:`compute_in`, which casts the bias and sets the dtype ``weight`` reports."""

    own_dtypes = True
    fp8_weight: Tensor
    scale_weight: Tensor

    def __init__(self, weight: ScaledWeight, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        self.register_buffer("fp8_weight", weight.data)
        self.register_buffer("scale_weight", weight.scale)
        # Empty, but tells what dtype ``weight`` reports (code such as Z-Image's timestep embedder reads it).
        self.register_buffer("dtype_hint", torch.empty(0, dtype=dtype), persistent=False)
        self.register_parameter("bias", None)

    def compute_in(self, dtype: torch.dtype) -> None:
        """Work in ``dtype``: the bias is cast once (it is small); the weight stays stored."""
        self.dtype_hint = torch.empty(0, dtype=dtype, device=self.fp8_weight.device)
        if self.bias is not None and self.bias.dtype != dtype:
            self.bias.data = self.bias.data.to(dtype)

    @property
    def scaled(self) -> ScaledWeight:
        return ScaledWeight(self.fp8_weight, self.scale_weight)

    def stored(self) -> ScaledWeight:
        return self.scaled

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.fp8_weight.dtype} scaled"


def is_scaled(keys: Sequence[str] | Any, prefix: str = "") -> bool:
    """Whether a state dict under ``prefix`` is a scaled-fp8 file (the marker or any per-layer scale)."""
    return any(k == prefix + MARKER or (k.startswith(prefix) and k.endswith(SCALE_WEIGHT)) for k in keys)


def scale_keys(keys: Sequence[str] | Any, prefix: str, weights: Sequence[str]) -> set[str]:
    """The marker and the ``scale_weight``/``scale_input`` of the given weight names (``x.weight``): the
    keys a scaled file may have besides the architecture's own, all under ``prefix``."""
    present = set(keys)
    allowed = {prefix + MARKER}
    for w in weights:
        if w.endswith(".weight"):
            layer = prefix + w[: -len(".weight")]
            allowed |= {layer + SCALE_WEIGHT, layer + SCALE_INPUT}
    return allowed & present


def pair(sd: Any, key: str, tensor: Tensor, source: Any, network: str) -> Tensor | ScaledWeight:
    """``tensor`` (the file's ``key``) with its ``scale_weight`` when the file has one; the
    ``scale_input`` is checked and left (see the module docstring)."""
    if not key.endswith(".weight"):
        return tensor
    layer = key[: -len(".weight")]
    scale_input = layer + SCALE_INPUT
    if scale_input in sd:
        _scalar(sd[scale_input], scale_input, source, network)
    scale_key = layer + SCALE_WEIGHT
    if scale_key not in sd:
        return tensor
    return ScaledWeight(tensor, _scalar(sd[scale_key], scale_key, source, network))


def keep_fp8(sd: Any, key: str, tensor: Tensor, source: Any, network: str) -> Tensor | ScaledWeight:
    """A text encoder's weight as :func:`pair` gives it, and a plain fp8 ``.weight`` (no scale in the
    file) as a :class:`ScaledWeight` of scale 1, so :func:`place_scaled` keeps it in fp8 the same way."""
    paired = pair(sd, key, tensor, source, network)
    if isinstance(paired, Tensor) and key.endswith(".weight") and is_fp8(paired.dtype):
        return ScaledWeight(paired, torch.ones((), dtype=torch.float32))
    return paired


def _scalar(value: Tensor, key: str, source: Any, network: str) -> Tensor:
    from nodes.diffusion.dit.shapes import UnusableWeightsError

    if value.numel() != 1 or not bool(torch.isfinite(value.float()).all()) or float(value.float()) <= 0:
        raise UnusableWeightsError(
            source, network, f"{key} should be one positive number but is {list(value.shape)} {value.flatten()[:3]}"
        )
    return value


def place_scaled(model: torch.nn.Module, state: dict[str, Any], dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Put the :class:`ScaledWeight` entries of ``state`` (the model's names) into ``model`` (on the meta
    device): a linear's weight makes its module a :class:`ScaledFp8Linear`; any other is dequantized now
    to ``dtype``, once even when tied to two names (T5's ``shared``/``embed_tokens``). Returns the
    entries left for ``load_state_dict`` (a replaced linear's bias included)."""
    plain: dict[str, Any] = {}
    done: dict[int, Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, ScaledWeight):
            plain[key] = value
            continue
        owner, _, leaf = key.rpartition(".")
        module = model.get_submodule(owner) if owner else model
        if leaf == "weight" and isinstance(module, torch.nn.Linear) and len(value.shape) == 2:
            replacement = ScaledFp8Linear(value, dtype)
            if module.bias is not None:
                meta = torch.empty(module.out_features, device="meta")
                replacement.register_parameter("bias", torch.nn.Parameter(meta, requires_grad=False))
            parent, _, child = owner.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, replacement)
            plain[f"{owner}.fp8_weight"] = value.data
            plain[f"{owner}.scale_weight"] = value.scale
        else:
            if id(value) not in done:
                done[id(value)] = value.dequantize(dtype)
            plain[key] = done[id(value)]
    return plain
