"""Memory of an fp8 T5 text encoder (plain and scaled) against the same weights in bf16.

    .venv/bin/python bench/fp8_text_memory.py [--d-model 1024] [--d-ff 2816] [--layers 24] [--keep DIR]

A T5 v1.1 encoder (gated-GELU, T5-XXL's vocabulary and 64-wide heads) with seeded random weights,
smaller than T5-XXL so it runs on a laptop (the defaults make ~0.34 B parameters, T5-large's shape: 0.68 GB
in bf16). It is written three times, as the files people download are: in bf16, as plain fp8
(``t5xxl_fp8_e4m3fn``: the linear weights in float8_e4m3fn, the token table and norms in bf16 — the
published 4.89 GB T5-XXL file is 4.63 GB of fp8 linears plus a 0.26 GB 16-bit table) and as scaled fp8
(``*_fp8_e4m3fn_scaled``: each linear divided by ``amax / 448`` first, its ``scale_weight`` beside it).
Each file is then loaded by ``load_text_encoder`` computing in bf16, in a fresh process that reports
the growth of its peak RSS over its own baseline (after importing torch and transformers) after loading
and after one forward pass of 77 tokens, and the time of a second pass. The bf16 row is also what the
loader used to build from an fp8 file (it cast every tensor to bf16); the fp8 rows must stay near the
fp8 size, never the bf16 one. Prints a table; asserts nothing (RSS and time on a shared machine vary).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")
MB = 2**20


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def _peak_mb() -> float:
    """VmHWM: this address space's peak RSS (ru_maxrss would carry the parent's peak across exec)."""
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024  # kB


def write_files(folder: Path, d_model: int, d_ff: int, layers: int) -> tuple[list[Path], int]:
    """The random encoder as bf16, plain fp8 and scaled fp8 files (linear weights quantized)."""
    import torch
    from safetensors.torch import save_file
    from transformers import T5Config, T5EncoderModel

    from nodes.diffusion.text.encoder_files import T5XXL, base_config

    cfg = base_config(T5XXL)
    cfg.update(d_model=d_model, d_ff=d_ff, num_layers=layers, num_heads=d_model // 64, d_kv=64)
    cfg = {k: v for k, v in cfg.items() if k not in ("architectures", "_name_or_path")}
    torch.manual_seed(0)
    model = T5EncoderModel(T5Config(**cfg)).eval()
    state = {k: v.detach() for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"}
    params = sum(t.numel() for t in state.values())
    linears = {n + ".weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    del model
    bf16 = {k: v.to(torch.bfloat16) for k, v in state.items()}
    save_file(bf16, str(folder / "t5_bf16.safetensors"))
    plain = {k: v.to(torch.float8_e4m3fn) if k in linears else bf16[k] for k, v in state.items()}
    save_file(plain, str(folder / "t5_fp8_e4m3fn.safetensors"))
    del plain
    scaled: dict[str, torch.Tensor] = {"scaled_fp8": torch.zeros(2, dtype=torch.float8_e4m3fn)}
    for key, value in state.items():
        if key in linears:
            scale = (value.abs().max().float() / 448.0).reshape(())
            scaled[key] = (value / scale).to(torch.float8_e4m3fn)
            scaled[key.removesuffix(".weight") + ".scale_weight"] = scale
        else:
            scaled[key] = bf16[key]
    save_file(scaled, str(folder / "t5_fp8_e4m3fn_scaled.safetensors"))
    names = ("t5_bf16", "t5_fp8_e4m3fn", "t5_fp8_e4m3fn_scaled")
    return [folder / f"{n}.safetensors" for n in names], params


def measure(path: str) -> dict[str, float]:
    """In this (fresh) process: RSS growth from loading ``path`` and from one forward pass."""
    import torch
    import transformers  # noqa: F401  (import cost is part of the baseline)
    from transformers import T5EncoderModel  # noqa: F401

    from nodes.diffusion.scaled_fp8 import ScaledFp8Linear
    from nodes.diffusion.text.encoder_files import T5XXL, load_text_encoder

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    base = _rss_mb()
    model = load_text_encoder(path, prefix="", role=T5XXL, dtype=torch.bfloat16)
    after_load = _peak_mb() - base
    ids = torch.arange(77).reshape(1, 77) % 1000 + 5
    with torch.inference_mode():
        model(input_ids=ids)
        forward_mb = _peak_mb() - base
        start = time.perf_counter()
        model(input_ids=ids)
        seconds = time.perf_counter() - start
    tensors = [*model.parameters(), *model.buffers()]
    fp8 = sum(m.fp8_weight.nbytes for m in model.modules() if isinstance(m, ScaledFp8Linear))
    return {
        "load_mb": after_load,
        "forward_mb": forward_mb,
        "forward_s": seconds,
        "weights_mb": sum(t.nbytes for t in tensors) / MB,
        "fp8_mb": fp8 / MB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--d-model", type=int, default=1024)
    parser.add_argument("--d-ff", type=int, default=2816)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--keep", help="write the files here (default: a temporary folder)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        paths, params = write_files(folder, args.d_model, args.d_ff, args.layers)
        shape = f"d_model {args.d_model}, d_ff {args.d_ff}, {args.layers} layers"
        print(f"T5 encoder: {shape}, {params / 1e6:.0f} M params")
        head = f"{'file':<32}{'on disk MB':>12}{'weights MB':>12}{'of it fp8':>11}"
        print(f"{head}{'peak RSS +load':>16}{'+forward':>10}{'forward s':>11}")
        for path in paths:
            cmd = [sys.executable, __file__, "--measure", str(path)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
            r = json.loads(out.strip().splitlines()[-1])
            disk = path.stat().st_size / MB
            print(
                f"{path.name:<32}{disk:>12.0f}{r['weights_mb']:>12.0f}{r['fp8_mb']:>11.0f}"
                f"{r['load_mb']:>16.0f}{r['forward_mb']:>10.0f}{r['forward_s']:>11.2f}"
            )
        print(f"(float32 would be {params * 4 / MB:.0f} MB)")


if __name__ == "__main__":
    main()
