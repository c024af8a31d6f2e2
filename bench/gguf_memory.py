"""Memory of a GGUF Q8_0 FLUX-shaped transformer against the same weights as a bf16 safetensors file.

    .venv/bin/python bench/gguf_memory.py [--width 768] [--double 3] [--single 6] [--qtype Q8_0] [--keep DIR]

A FLUX.1-shaped network (128-wide heads, FLUX's block structure, text width 4096, pooled 768) with
seeded random weights, smaller than the release so it runs on a laptop (the defaults make ~0.12 B
parameters: 0.24 GB in bf16, 0.13 GB in Q8_0). It is written once as a bf16 safetensors file and once
as a GGUF file quantized with the ``gguf`` package; then each file is loaded by ``load_transformer``
(computing in float32 on the CPU) in a fresh process, which reports the growth of its peak RSS over
its own baseline (after importing torch and diffusers) at two points: after loading, and after one
forward pass, which has touched every weight page of the memory-mapped file. The GGUF model must stay
near its quantized size (the raw blocks; one layer is dequantized at a time), not the bf16 or the
float32 size. Prints a table; asserts nothing (RSS on a shared machine varies by a few MB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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


def config(width: int, double: int, single: int) -> dict:
    heads = width // 128
    return {
        "patch_size": 1,
        "in_channels": 64,
        "out_channels": 64,
        "num_layers": double,
        "num_single_layers": single,
        "attention_head_dim": 128,
        "num_attention_heads": heads,
        "joint_attention_dim": 4096,
        "pooled_projection_dim": 768,
        "guidance_embeds": True,
        "axes_dims_rope": (16, 56, 56),
    }


def write_files(folder: Path, cfg: dict, qtype: str) -> tuple[Path, Path, int]:
    """The random model as bf16 safetensors and as GGUF (2-D weights in ``qtype``, the rest float32)."""
    import torch
    from diffusers import FluxTransformer2DModel

    from tests.support import tiny_flow as tf
    from tests.support.gguf_files import write_gguf

    torch.manual_seed(0)
    model = FluxTransformer2DModel.from_config(cfg).eval()
    state = tf.flux_to_original(model)
    del model
    params = sum(t.numel() for t in state.values())
    bf16 = tf.write_file(folder / "flux_bf16.safetensors", state, dtype=torch.bfloat16)
    gguf_path, _ = write_gguf(folder / f"flux-{qtype}.gguf", state, qtype)
    return bf16, gguf_path, params


def measure(path: str, cfg: dict) -> dict:
    """In this (fresh) process: RSS growth from loading ``path`` and from one forward pass."""
    import torch
    from diffusers import FluxTransformer2DModel  # noqa: F401  (import cost is part of the baseline)

    from nodes.diffusion.dit.loading import load_transformer

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    base = _rss_mb()
    loaded = load_transformer(path, dtype=torch.float32)
    after_load = _peak_mb() - base
    inputs = {
        "hidden_states": torch.randn(1, 64, 64),
        "encoder_hidden_states": torch.randn(1, 32, 4096),
        "pooled_projections": torch.randn(1, 768),
        "timestep": torch.tensor([0.5]),
        "img_ids": torch.zeros(64, 3),
        "txt_ids": torch.zeros(32, 3),
        "guidance": torch.tensor([3.5]),
    }
    with torch.inference_mode():
        loaded.network(**inputs, return_dict=False)
    return {"load_mb": after_load, "forward_mb": _peak_mb() - base, "weights_mb": loaded.nbytes() / MB}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--double", type=int, default=3)
    parser.add_argument("--single", type=int, default=6)
    parser.add_argument("--qtype", default="Q8_0", choices=["Q8_0", "Q4_0"])
    parser.add_argument("--keep", help="write the files here (default: a temporary folder)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cfg = config(args.width, args.double, args.single)
    if args.measure:
        print(json.dumps(measure(args.measure, cfg)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        bf16, quantized, params = write_files(folder, cfg, args.qtype)
        print(
            f"FLUX-shaped: width {args.width}, {args.double} double + {args.single} single blocks, "
            f"{params / 1e6:.0f} M params"
        )
        print(f"{'file':<28}{'on disk MB':>12}{'weights MB':>12}{'peak RSS +load':>16}{'+forward':>10}")
        for path in (bf16, quantized):
            cmd = [sys.executable, __file__, "--measure", str(path), "--width", str(args.width)]
            cmd += ["--double", str(args.double), "--single", str(args.single)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
            r = json.loads(out.strip().splitlines()[-1])
            disk = path.stat().st_size / MB
            print(f"{path.name:<28}{disk:>12.0f}{r['weights_mb']:>12.0f}{r['load_mb']:>16.0f}{r['forward_mb']:>10.0f}")
        print(f"(float32 would be {params * 4 / MB:.0f} MB)")


if __name__ == "__main__":
    main()
