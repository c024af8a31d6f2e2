"""GGUF files (the ComfyUI community's quantized FLUX/SD3/Z-Image transformers, T5/Qwen3 text encoders):
kept quantized, dequantized per layer.

A Q8_0 FLUX.1 is 12.7 GB where bf16 is 24 GB, Q4_0 6.8 GB; holding a float copy would defeat the
point. So the file is memory-mapped (``gguf.GGUFReader``) and every quantized tensor stays as its
raw block bytes (:class:`QuantizedWeight`). A linear layer whose weight is quantized becomes a
:class:`GGUFLinear`: it keeps those bytes as a uint8 buffer and dequantizes them to the input's dtype
for each call only, caching nothing, so at most one layer's float weight exists at a time. Q8_0 and
Q4_0 are dequantized with torch on the layer's device; the other types the ``gguf`` package knows
(Q5_K, Q4_K, Q6_K, …) go through ``gguf.quants.dequantize`` on the CPU. F32/F16/BF16 tensors in the
file load as ordinary (memory-mapped) tensors.

**Fused projections.** The original FLUX layout fuses q, k, v (and a single block's MLP input) in
one tensor that the converter splits by rows. GGUF quantizes each row on its own (a row is a whole
number of blocks), so splitting the raw bytes by rows is exact and nothing has to be dequantized at
load. Only a quantized tensor that is not a linear weight (a patch-embedding convolution, say; small)
is dequantized once at load, to float32.

Files from ComfyUI-GGUF's converter record a tensor's original shape when they stored it reshaped
(``comfy.gguf.orig_shape.<name>``); such a tensor's stored rows are not its own, so it is dequantized
at load to float32 (they are the few odd-shaped tensors, not the large linear weights). A quant type
the ``gguf`` package cannot dequantize is refused at load with one message naming it.

**Known cost.** The K-quants are dequantized by the gguf package in numpy, so on a GPU each call copies
that layer's bytes to the CPU and the floats back; Q8_0 and Q4_0 stay on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nodes.diffusion.errors import ModelError
from nodes.diffusion.stored_linear import StoredWeightLinear

SUFFIXES = (".gguf",)
_FLOAT_TYPES = {0: torch.float32, 1: torch.float16, 30: torch.bfloat16}  # GGMLQuantizationType F32, F16, BF16
_Q4_0, _Q8_0 = 2, 8
_ORIG_SHAPE = "comfy.gguf.orig_shape."


class UnsupportedQuantError(ModelError):
    """A tensor in a quantization the ``gguf`` package cannot turn back into floats."""


def is_gguf(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SUFFIXES


class QuantizedWeight:
    """One quantized tensor as stored: raw blocks ``[rows, bytes_per_row]`` (uint8), its type and its
    logical shape. It supports what the key converters do to tensors (row ``split``/``chunk`` and
    ``torch.cat`` along rows), all on whole rows, so the bytes are never dequantized there."""

    def __init__(self, raw: Tensor, qtype: int, shape: Sequence[int]) -> None:
        self.raw = raw
        self.qtype = int(qtype)
        self.shape = torch.Size(shape)

    @property
    def device(self) -> torch.device:
        return self.raw.device

    @property
    def type_name(self) -> str:
        import gguf

        return gguf.GGMLQuantizationType(self.qtype).name

    @property
    def nbytes(self) -> int:
        return self.raw.numel()

    def is_floating_point(self) -> bool:
        return False  # never cast by a loader's dtype handling: it stays quantized

    def _rows(self, parts: Sequence[Tensor], sizes: Sequence[int]) -> tuple[QuantizedWeight, ...]:
        return tuple(QuantizedWeight(p, self.qtype, (n, *self.shape[1:])) for p, n in zip(parts, sizes, strict=True))

    def split(self, sizes: Sequence[int], dim: int = 0) -> tuple[QuantizedWeight, ...]:
        if dim != 0:
            raise ValueError("a quantized tensor splits by rows only")
        rows = self.raw.reshape(self.shape[0], -1)
        return self._rows(rows.split(list(sizes), dim=0), sizes)

    def chunk(self, n: int, dim: int = 0) -> tuple[QuantizedWeight, ...]:
        if dim != 0 or self.shape[0] % n:
            raise ValueError("a quantized tensor chunks into equal row blocks only")
        return self.split([self.shape[0] // n] * n)

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        """``torch.cat`` of quantized row blocks of one type (the AdaLN half swap); nothing else."""
        kwargs = kwargs or {}
        if func is torch.cat:
            parts = args[0]
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            if dim == 0 and all(isinstance(p, QuantizedWeight) and p.qtype == parts[0].qtype for p in parts):
                raw = torch.cat([p.raw.reshape(p.shape[0], -1) for p in parts])
                return QuantizedWeight(raw, parts[0].qtype, (raw.shape[0], *parts[0].shape[1:]))
        raise TypeError(f"{getattr(func, '__name__', func)} is not defined on a quantized GGUF tensor")

    def dequantize(self, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> Tensor:
        """The float tensor, computed now and not kept."""
        device = device or self.raw.device
        if self.qtype in (_Q8_0, _Q4_0):
            return _dequantize_torch(self.raw.to(device), self.qtype, self.shape).to(dtype)
        from gguf import GGMLQuantizationType, quants

        data = self.raw.detach().cpu().numpy()
        values = quants.dequantize(data, GGMLQuantizationType(self.qtype))
        return torch.from_numpy(np.ascontiguousarray(values)).reshape(self.shape).to(device=device, dtype=dtype)

    def __repr__(self) -> str:
        return f"QuantizedWeight({self.type_name}, {list(self.shape)})"


def _dequantize_torch(raw: Tensor, qtype: int, shape: torch.Size) -> Tensor:
    """Q8_0 / Q4_0 as ggml defines them (blocks of 32 values with one fp16 scale), on ``raw``'s device."""
    size = 34 if qtype == _Q8_0 else 18
    blocks = raw.reshape(-1, size)
    scale = blocks[:, :2].contiguous().view(torch.float16).to(torch.float32)  # [n, 1]
    if qtype == _Q8_0:
        q = blocks[:, 2:].contiguous().view(torch.int8).to(torch.float32)
    else:  # low nibbles are values 0..15 of the block, high nibbles 16..31; stored offset by 8
        packed = blocks[:, 2:]
        q = torch.cat([packed & 0x0F, packed >> 4], dim=1).to(torch.float32) - 8.0
    return (scale * q).reshape(shape)


class GGUFLinear(StoredWeightLinear):
    """A linear layer whose weight stays quantized (``qweight``, uint8) and is dequantized for each call."""

    def __init__(self, weight: QuantizedWeight, bias: Tensor | None, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        self.qtype = weight.qtype
        self.register_buffer("qweight", weight.raw)
        # Empty, but cast with the model: the dtype ``weight`` reports (code such as T5's reads it).
        self.register_buffer("dtype_hint", torch.empty(0, dtype=dtype), persistent=False)
        self.register_parameter("bias", None if bias is None else torch.nn.Parameter(bias, requires_grad=False))

    @property
    def quantized(self) -> QuantizedWeight:
        return QuantizedWeight(self.qweight, self.qtype, (self.out_features, self.in_features))

    def stored(self) -> QuantizedWeight:
        return self.quantized

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.quantized.type_name}"


def place_quantized(
    model: torch.nn.Module, state: dict[str, Any], dtype: torch.dtype = torch.float32
) -> dict[str, Tensor]:
    """Put the quantized entries of ``state`` (the model's names) into ``model`` (on the meta device):
    each linear weight's module becomes a :class:`GGUFLinear` holding the bytes; any other quantized
    tensor (a conv, a token embedding) is dequantized now to ``dtype``, once even when tied to two
    names (T5's ``shared``/``embed_tokens``). Returns the plain tensors left for ``load_state_dict``
    (biases of replaced linears included, under the same names)."""
    plain: dict[str, Tensor] = {}
    done: dict[int, Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, QuantizedWeight):
            plain[key] = value
            continue
        owner, _, leaf = key.rpartition(".")
        module = model.get_submodule(owner) if owner else model
        if leaf == "weight" and isinstance(module, torch.nn.Linear) and len(value.shape) == 2:
            replacement = GGUFLinear(value, None, dtype)
            if module.bias is not None:
                meta = torch.empty(module.out_features, device="meta")
                replacement.register_parameter("bias", torch.nn.Parameter(meta, requires_grad=False))
            parent, _, child = owner.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, replacement)
            plain.setdefault(f"{owner}.qweight", value.raw)
        else:
            if id(value) not in done:
                done[id(value)] = value.dequantize(dtype)
            plain[key] = done[id(value)]
    return plain


# Text encoders in GGUF files (city96's t5-v1_1-xxl-encoder-Q8_0.gguf, Qwen3 from llama.cpp) use
# llama.cpp's tensor names (``enc.blk.0.attn_q.weight``, ``blk.0.ffn_gate.weight``); they are read back
# under the Hugging Face names the text-encoder loader knows, the correspondence taken from the gguf
# package's own TensorNameMap for the file's ``general.architecture``.
_T5_BLOCK = (
    *(f"layer.0.SelfAttention.{p}.weight" for p in ("q", "k", "v", "o", "relative_attention_bias")),
    "layer.0.layer_norm.weight",
    *(f"layer.1.DenseReluDense.{p}.weight" for p in ("wi_0", "wi_1", "wo")),  # ffn_gate, ffn_up, ffn_down
    "layer.1.layer_norm.weight",
)
_QWEN_BLOCK = (
    *(f"self_attn.{p}_proj.{w}" for p in ("q", "k", "v", "o") for w in ("weight", "bias")),
    "self_attn.q_norm.weight",
    "self_attn.k_norm.weight",
    "input_layernorm.weight",
    "post_attention_layernorm.weight",
    *(f"mlp.{p}_proj.weight" for p in ("gate", "up", "down")),
)
_TEXT_ARCHS = {
    # arch: (gguf MODEL_ARCH name, HF names outside blocks, block prefix, block names, prefix asked of the map)
    "t5encoder": ("T5ENCODER", ("shared.weight", "encoder.final_layer_norm.weight"), "encoder.block.", _T5_BLOCK, ""),
    "t5": ("T5", ("shared.weight", "encoder.final_layer_norm.weight"), "encoder.block.", _T5_BLOCK, ""),
    "qwen3": ("QWEN3", ("embed_tokens.weight", "norm.weight"), "layers.", _QWEN_BLOCK, "model."),
}


def _hf_names(reader: Any, names: Sequence[str]) -> dict[str, str]:
    """llama.cpp name -> Hugging Face name for a text-encoder file; empty for anything else."""
    field = reader.fields.get("general.architecture")
    arch = bytes(field.parts[field.data[0]]).decode() if field is not None else ""
    if arch not in _TEXT_ARCHS:
        return {}
    import gguf

    model_arch, top, block_prefix, block, asked = _TEXT_ARCHS[arch]
    blocks = 1 + max(
        (int(n.split(".")[n.split(".").index("blk") + 1]) for n in names if ".blk." in f".{n}"), default=-1
    )
    tmap = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, model_arch), blocks)
    hf = [*top, *(f"{block_prefix}{i}.{b}" for i in range(blocks) for b in block)]
    out: dict[str, str] = {}
    for name in hf:
        suffix = name.rsplit(".", 1)[1]
        found = tmap.get_name(asked + name.rsplit(".", 1)[0])
        if found is not None:
            out.setdefault(f"{found}.{suffix}", name)
    if arch.startswith("t5") and not any("ffn_gate" in n for n in names):  # original T5: one ReLU input
        out = {k: v.replace(".wi_1.", ".wi.") for k, v in out.items()}
    return out


def read_gguf(path: str | Path) -> dict[str, Tensor | QuantizedWeight]:
    """Every tensor of a GGUF file by name: floats as memory-mapped tensors, the rest quantized.
    Refuses, naming it, a quant type the ``gguf`` package cannot dequantize."""
    reader = _reader(path)
    orig = _orig_shapes(reader)
    rename = _hf_names(reader, [t.name for t in reader.tensors])
    out: dict[str, Tensor | QuantizedWeight] = {}
    for t in reader.tensors:
        stored = tuple(int(d) for d in reversed(t.shape.tolist()))
        shape = orig.get(t.name) or stored
        qtype = int(t.tensor_type)
        data = torch.from_numpy(t.data)  # a view of the mapped file, no copy
        if qtype in _FLOAT_TYPES:
            dtype = _FLOAT_TYPES[qtype]
            tensor = data.view(torch.uint8).view(dtype) if dtype == torch.bfloat16 else data
            out[t.name] = tensor.reshape(shape)
            continue
        _check_supported(path, t.name, qtype)
        rows = stored[0] if len(stored) > 1 else 1
        weight = QuantizedWeight(data.reshape(rows, -1), qtype, stored)
        if shape != stored:  # stored reshaped (its rows are not the tensor's rows): floats now, see above
            out[t.name] = weight.dequantize(torch.float32).reshape(shape)
        else:
            out[t.name] = weight
    return {rename.get(k, k): v for k, v in out.items()}


def read_gguf_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Names and logical (torch-order) shapes of a GGUF file's tensors, from its header."""
    reader = _reader(path)
    orig = _orig_shapes(reader)
    rename = _hf_names(reader, [t.name for t in reader.tensors])
    return {
        rename.get(t.name, t.name): orig.get(t.name) or tuple(int(d) for d in reversed(t.shape.tolist()))
        for t in reader.tensors
    }


def stored_float_dtype(path: str | Path) -> torch.dtype:
    """The float dtype holding most bytes among a GGUF file's unquantized tensors (bf16 when none are)."""
    sizes: dict[torch.dtype, int] = {}
    for t in _reader(path).tensors:
        dtype = _FLOAT_TYPES.get(int(t.tensor_type))
        if dtype is not None:
            sizes[dtype] = sizes.get(dtype, 0) + int(t.n_bytes)
    return max(sizes, key=lambda d: sizes[d]) if sizes else torch.bfloat16


def _reader(path: str | Path) -> Any:
    try:
        import gguf
    except ImportError:
        raise ModelError(
            f"{Path(path).name} is a GGUF file; reading it needs the 'gguf' package (pip install gguf, or "
            "./scripts/setup.sh)"
        ) from None
    try:
        return gguf.GGUFReader(str(path), "c")  # copy-on-write map: writable views, nothing copied
    except Exception as exc:
        raise ModelError(f"{Path(path).name} is not a readable GGUF file ({exc})") from exc


def _orig_shapes(reader: Any) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for name, field in reader.fields.items():
        if name.startswith(_ORIG_SHAPE):
            shapes[name[len(_ORIG_SHAPE) :]] = tuple(int(field.parts[i][0]) for i in field.data)
    return shapes


def _check_supported(path: str | Path, name: str, qtype: int) -> None:
    from gguf import GGMLQuantizationType, quants

    kind = GGMLQuantizationType(qtype)
    if kind not in getattr(quants, "_type_traits", {}):
        raise UnsupportedQuantError(
            f"{Path(path).name}: the tensor {name} is quantized as {kind.name}, which the installed gguf "
            "package cannot dequantize; use a file in Q8_0, Q6_K, Q5_K, Q4_K, Q4_0 (or F16/BF16)"
        )
