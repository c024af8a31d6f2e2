"""Writing tiny GGUF files with the ``gguf`` package itself (GGUFWriter + gguf.quants.quantize), as
ComfyUI-GGUF's converter lays them out: original tensor names, 2-D weights quantized, the rest float32."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

#: Tensors quantized with each type need rows that are whole blocks of this many values.
BLOCK = {"Q8_0": 32, "Q4_0": 32, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256}


#: Where each K-quant block keeps its fp16 super-block scale(s): byte offsets (the rest is packed ints).
K_SCALES = {"Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def random_k_blocks(shape: tuple[int, ...], kind: str, seed: int = 0) -> np.ndarray:
    """Valid ``kind`` blocks for a ``shape`` tensor with random contents and small fp16 scales. The gguf
    package dequantizes K-quants but cannot quantize to them, so tests build the bytes directly."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[kind]]
    rows, cols = shape
    raw = np.random.default_rng(seed).integers(0, 256, (rows, cols // block, size), dtype=np.uint8)
    for offset in K_SCALES[kind]:
        raw[..., offset : offset + 2] = np.array([1e-3], np.float16).view(np.uint8)
    return raw.reshape(rows, -1)


def write_gguf(
    path: str | Path,
    state: Mapping[str, torch.Tensor],
    qtype: str | Callable[[str, torch.Tensor], str | None],
    *,
    arch: str = "flux",
) -> tuple[Path, dict[str, torch.Tensor]]:
    """Write ``state`` to ``path``; ``qtype`` names the quantization of each 2-D tensor whose rows fit its
    blocks (or picks one per tensor; None keeps it float32). Returns the path and the *dequantized*
    tensors (what the file holds, as floats), the reference a quantized model must equal."""
    import gguf
    from gguf import GGMLQuantizationType, quants

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    dequantized: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        data = tensor.detach().float().numpy()
        kind = qtype(name, tensor) if callable(qtype) else qtype
        if kind is not None and data.ndim == 2 and data.shape[1] % BLOCK[kind] == 0:
            q = GGMLQuantizationType[kind]
            raw = (
                random_k_blocks(data.shape, kind, seed=len(dequantized))
                if kind in K_SCALES
                else quants.quantize(data, q)
            )
            writer.add_tensor(name, raw, raw_dtype=q)
            dequantized[name] = torch.from_numpy(quants.dequantize(raw, q)).reshape(tensor.shape)
        else:
            writer.add_tensor(name, data)
            dequantized[name] = tensor.detach().float()
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path, dequantized


def write_text_encoder_gguf(
    path: str | Path, state: Mapping[str, torch.Tensor], arch: str, qtype: str = "Q8_0"
) -> tuple[Path, dict[str, torch.Tensor]]:
    """A text encoder (Hugging Face names, as ``tiny_text.encoder_state`` gives them) written as llama.cpp
    writes it: names from the gguf package's TensorNameMap for ``arch`` (``t5encoder``, ``qwen3``), 2-D
    tensors in ``qtype``. Returns the path and the dequantized tensors under the Hugging Face names."""
    import gguf

    model_arch = {"t5encoder": gguf.MODEL_ARCH.T5ENCODER, "qwen3": gguf.MODEL_ARCH.QWEN3}[arch]
    blocks = 1 + max(int(k.split(".")[k.split(".").index(b) + 1]) for k in state for b in ("block", "layers") if b in k)
    tmap = gguf.get_tensor_name_map(model_arch, blocks)
    renamed = {}
    for name, tensor in state.items():
        base, suffix = name.rsplit(".", 1)
        found = tmap.get_name(base)
        assert found is not None, f"the gguf package has no name for {name}"
        renamed[f"{found}.{suffix}"] = (name, tensor)
    path, dequantized = write_gguf(path, {k: t for k, (_, t) in renamed.items()}, qtype, arch=arch)
    return path, {renamed[k][0]: v for k, v in dequantized.items()}
