"""One full-size SD1.5 UNet step on this CPU in each precision/layout variant, interleaved.

    .venv/bin/python bench/unet_cpu.py [--repeats 4] [--size 32] [--variants fp32,fp32_cl,bf16,bf16_cl,bf16_cl_pk]
                                       [--compile]

Batch 2 (cond + uncond, as the sampler runs it), latents ``size``×``size`` (32 = 256 px). The UNet is
loaded from bench/sd.py's random checkpoint. Each repeat runs every variant once, so load from other
processes hits them alike; the median and the fastest of the repeats are printed. ``--compile`` adds
torch.compile with inductor freezing for each variant (one warm-up call, timed separately: that is
the per-shape compile cost). ``_pk`` variants pack the weights for oneDNN (`nodes.diffusion.prepack`,
what fast mode does on AMX CPUs) on a second copy of the UNet. This is what decides
`nodes/diffusion/devices.py`'s CPU policy: fast mode picks bf16 only where it beats fp32,
channels_last only where it helps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--variants", default="fp32,fp32_cl,bf16,bf16_cl,bf16_cl_pk")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    from bench.sd import write_checkpoint
    from nodes.diffusion.checkpoint.load import load_checkpoint
    from nodes.diffusion.compile import compiled
    from nodes.diffusion.devices import cpu_has_native_bf16, describe_cpu

    path = write_checkpoint("fp16")
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    unets = {}
    from nodes.diffusion import prepack

    for name in sorted({v.split("_")[0] + ("_pk" if v.endswith("_pk") else "") for v in args.variants.split(",")}):
        t0 = time.perf_counter()
        ckpt = load_checkpoint(path, dtype=dtypes[name.split("_")[0]], require_vae=False)
        unets[name] = ckpt.unet
        if name.endswith("_pk"):
            prepack.prepack(ckpt.unet)
        print(f"loaded UNet {name} in {time.perf_counter() - t0:.1f} s")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, args.size, args.size, generator=g)
    ctx = torch.randn(2, 77, 768, generator=g)
    t = torch.tensor([500.0, 500.0])

    calls = {}
    for v in args.variants.split(","):
        base, _, layout = v.partition("_")
        dtype = dtypes[base]
        unet = unets[base + ("_pk" if v.endswith("_pk") else "")]
        cl = layout.startswith("cl")
        fmt = torch.channels_last if cl else torch.contiguous_format

        def call(unet=unet, dtype=dtype, fmt=fmt, cl=cl):
            unet.to(memory_format=fmt)
            xi = x.to(dtype).contiguous(memory_format=fmt)
            return unet(xi, t, encoder_hidden_states=ctx.to(dtype), return_dict=False)[0]

        calls[v] = call
        if args.compile:
            fn = compiled(unet, key=(v, args.size), channels_last=cl)

            def ccall(fn=fn, dtype=dtype, fmt=fmt):
                xi = x.to(dtype).contiguous(memory_format=fmt)
                return fn(xi, t, encoder_hidden_states=ctx.to(dtype), return_dict=False)[0]

            calls[v + "+compile"] = ccall

    times: dict[str, list[float]] = {k: [] for k in calls}
    with torch.inference_mode():
        for k, fn in calls.items():  # warm-up (and the compile, for compiled variants)
            t0 = time.perf_counter()
            fn()
            print(f"warm-up {k}: {time.perf_counter() - t0:.1f} s", flush=True)
        for _ in range(args.repeats):
            for k, fn in calls.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    print(
        f"\n{describe_cpu()}; native bf16: {cpu_has_native_bf16()}; torch {torch.__version__}; "
        f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.2f}"
    )
    ref = statistics.median(times[next(iter(times))])
    print(f"{'variant':<22}{'median s/step':>14}{'min':>8}{'vs first':>10}")
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"{k:<22}{med:>14.3f}{min(ts):>8.3f}{ref / med:>9.2f}×")


if __name__ == "__main__":
    main()
