"""The parts of a graph around the sampler, in exact vs fast precision: text encode, VAE decode and
encode, PNG saving and step previews (issue 15, "everything in the graph is fast").

Full-size architectures with seeded random weights, built in memory from the shipped configs (the
same modules `bench/sd.py` writes into its checkpoint): the SD1.5 VAE, CLIP-L and SDXL's CLIP-G.
Random weights give a noisy picture, but the PSNR of a fast decode against the fp32 one still
measures the numerical gap that bf16 opens. Variants are timed interleaved in one process
(A, B, C, A, B, C, ...) and the fastest repeat is reported, because other engineers share the cores;
the load average is printed with every table. Peak RSS is sampled by a thread every 2 ms while a
call runs, and given above the process's RSS before the call.

Run: ``OMP_NUM_THREADS=2 python bench/graph_parts.py`` (``--parts vae,text,png,preview``,
``--sizes 512,1024``, ``--big`` adds a 2048² decode with and without tiles).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "a lighthouse on a cliff at sunset, oil painting, dramatic clouds, highly detailed"
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def with_peak_rss(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """(result, seconds, peak RSS above the RSS at the start, bytes) of one call."""
    base = rss_bytes()
    peak = [base]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - t0
        done.set()
        watcher.join()
    return result, seconds, max(peak[0], rss_bytes()) - base


def psnr(a: Any, b: Any) -> float:
    """PSNR in dB of two images in 0..1 (inf when identical)."""
    mse = float(((a.float() - b.float()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (5 min {five:.2f}) on {os.cpu_count()} cores"


def interleaved(variants: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, Any]]:
    """Run each variant ``repeats`` times, interleaved; keep the fastest time, the largest peak RSS and
    the first result."""
    out: dict[str, dict[str, Any]] = {name: {"times": [], "rss": 0, "result": None} for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            result, seconds, peak = with_peak_rss(fn)
            row = out[name]
            row["times"].append(seconds)
            row["rss"] = max(row["rss"], peak)
            if row["result"] is None:
                row["result"] = result
            del result
    return out


def fmt_runs(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


# --- VAE ---------------------------------------------------------------------------------------


def sd_vae(dtype: Any, channels_last: bool = False) -> Any:
    import torch
    from diffusers import AutoencoderKL

    from nodes.diffusion.checkpoint.detect import base_config

    torch.manual_seed(0)
    vae = AutoencoderKL.from_config(base_config("sd1", "vae")).eval()
    vae.to(dtype=dtype)
    if channels_last:
        vae.to(memory_format=torch.channels_last)
    return vae


def bench_vae(sizes: list[int], repeats: int, big: bool, encode: bool = True) -> None:
    import torch

    from nodes.diffusion.checkpoint import vae_ops

    models = {
        "fp32": sd_vae(torch.float32),
        "bf16": sd_vae(torch.bfloat16),
        "bf16+channels_last": sd_vae(torch.bfloat16, channels_last=True),
    }
    print(f"\n### VAE decode/encode (full-size SD1.5 VAE, random weights; {load_line()})\n")
    print("| part | size | variant | s (fastest) | runs | peak RSS above start, MiB | PSNR vs fp32, dB | speed-up |")
    print("| --- | --- | --- | ---: | --- | ---: | ---: | ---: |")
    for size in sizes:
        g = torch.Generator().manual_seed(size)
        latents = torch.randn(1, 4, size // 8, size // 8, generator=g)
        runs = interleaved(
            {name: (lambda m=m, z=latents: vae_ops.decode(m, z, tile=False)) for name, m in models.items()}, repeats
        )
        _print_rows("decode", size, runs)
        if not encode:
            continue
        image = runs["fp32"]["result"]
        enc = interleaved({name: (lambda m=m, im=image: vae_ops.encode(m, im)) for name, m in models.items()}, repeats)
        ref = enc["fp32"]["result"]
        for row in enc.values():  # latents have no 0..1 range: report the relative error instead
            err = float((row["result"] - ref).abs().max() / ref.abs().max())
            row["note"] = f"max rel err {err:.2e}"
        _print_rows("encode", size, enc)
    if big:
        del models["fp32"], models["bf16"]
        g = torch.Generator().manual_seed(2048)
        latents = torch.randn(1, 4, 256, 256, generator=g)
        m = models["bf16+channels_last"]
        runs = interleaved(
            {
                "bf16+cl, tiled (automatic)": lambda: vae_ops.decode(m, latents),
                "bf16+cl, whole": lambda: vae_ops.decode(m, latents, tile=False),
            },
            1,
        )
        whole = runs["bf16+cl, whole"]["result"]
        for row in runs.values():
            row["note"] = f"PSNR vs whole {psnr(row['result'], whole):.1f}"
        _print_rows("decode", 2048, runs)


def _print_rows(part: str, size: int, runs: dict[str, dict[str, Any]]) -> None:
    base = min(next(iter(runs.values()))["times"])
    ref = next(iter(runs.values()))["result"]
    for name, row in runs.items():
        best = min(row["times"])
        quality = row.get("note") or f"{psnr(row['result'], ref):.1f}"
        print(
            f"| {part} | {size}² | {name} | {best:.2f} | {fmt_runs(row['times'])} | {row['rss'] / 2**20:.0f} "
            f"| {quality} | {base / best:.2f}× |"
        )
    sys.stdout.flush()


# --- text encoders -----------------------------------------------------------------------------


def bench_text(repeats: int) -> None:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from nodes.diffusion.checkpoint.detect import base_config
    from nodes.diffusion.clip import ClipModel

    def config(family: str, part: str) -> Any:
        return CLIPTextConfig(**{k: v for k, v in base_config(family, part).items() if k != "architectures"})

    def build(dtype: Any) -> tuple[Any, Any]:
        torch.manual_seed(0)
        clip_l = CLIPTextModel(config("sd1", "text_encoder")).eval().to(dtype)
        torch.manual_seed(1)
        clip_g = CLIPTextModelWithProjection(config("sdxl", "text_encoder_2")).eval().to(dtype)
        return clip_l, clip_g

    models = {"fp32": build(torch.float32), "bf16": build(torch.bfloat16)}
    print(f"\n### Text encode (one prompt, full-size encoders, random weights; {load_line()})\n")
    print("| encoder | variant | s (fastest) | runs | cosine vs fp32 (min over tokens) | max abs err | speed-up |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: |")
    for label, family, count in (("CLIP-L (SD1)", "sd1", 1), ("CLIP-L + CLIP-G (SDXL)", "sdxl", 2)):
        variants = {}
        for name, encoders in models.items():

            def run(family: str = family, encoders: tuple[Any, ...] = encoders[:count]) -> Any:
                with torch.inference_mode():
                    return ClipModel(family, encoders).encode(PROMPT)[0].embeds.float()

            variants[name] = run
        runs = interleaved(variants, repeats)
        ref = runs["fp32"]["result"]
        base = min(runs["fp32"]["times"])
        for name, row in runs.items():
            got = row["result"]
            cos = float(torch.nn.functional.cosine_similarity(got, ref, dim=-1).min())
            err = float((got - ref).abs().max())
            best = min(row["times"])
            runs_text = fmt_runs(row["times"])
            print(f"| {label} | {name} | {best:.3f} | {runs_text} | {cos:.5f} | {err:.3g} | {base / best:.2f}× |")


# --- PNG ---------------------------------------------------------------------------------------


def test_image(size: int = 1024, noise: float = 0.02) -> Any:
    """A photo-like picture: smooth colour gradients and soft shapes with sensor-like noise (σ = ``noise``)."""
    import numpy as np

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    r = 0.5 + 0.4 * np.sin(3 * x + 1.5 * y)
    g = 0.5 + 0.35 * np.cos(2 * y - x) * np.exp(-((x - 0.6) ** 2 + (y - 0.4) ** 2) * 4)
    b = 0.3 + 0.5 * y * (1 - x)
    img = np.stack([r, g, b], -1) + rng.normal(0, noise, (size, size, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def bench_png(repeats: int) -> None:
    from PIL import Image

    from nodes.diffusion.images import png_bytes

    text = {"workflow": "{}" * 2000}
    print(f"\n### PNG save, 1024² photo-like image (gradients + noise; {load_line()})\n")
    print("| noise σ | compress_level | s (fastest) | runs | size, KiB |")
    print("| ---: | ---: | ---: | --- | ---: |")
    levels = (1, 4, 6, 9)
    for noise in (0.02, 0.005):
        picture = Image.fromarray(test_image(1024, noise))
        runs = interleaved(
            {str(lv): (lambda lv=lv, pic=picture: len(png_bytes(pic, text, lv))) for lv in levels}, repeats
        )
        for lv in levels:
            row = runs[str(lv)]
            size_kib = row["result"] / 1024
            print(f"| {noise} | {lv} | {min(row['times']):.3f} | {fmt_runs(row['times'])} | {size_kib:.0f} |")


# --- previews ----------------------------------------------------------------------------------


def bench_preview(repeats: int) -> None:
    import torch
    from PIL import Image

    from app.server.messages import preview_frame
    from graph_engine.previews import PreviewWorker, render
    from nodes.diffusion.previews import latent_to_rgb

    print(f"\n### Step preview cost (per step; {load_line()})\n")
    print(
        "| image | latent2rgb, ms | JPEG for the server, ms | PNG level 1, ms "
        "| left on the sampling thread (copy + submit), ms |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    worker = PreviewWorker(lambda frame: render(frame))
    for size in (256, 512, 1024):
        latent = torch.randn(2, 4, size // 8, size // 8)
        best = [math.inf] * 4
        rgb = latent_to_rgb(latent)
        for _ in range(20 * repeats):  # fastest single call: the cost without other engineers' load
            t0 = time.perf_counter()
            rgb = latent_to_rgb(latent)
            t1 = time.perf_counter()
            preview_frame(rgb)
            t2 = time.perf_counter()
            Image.fromarray(rgb).save(io.BytesIO(), format="PNG", compress_level=1)
            t3 = time.perf_counter()
            worker.submit(partial(latent_to_rgb, latent[:1].detach().clone(), "sd1"))  # what KSampler does now
            t4 = time.perf_counter()
            times = (t1 - t0, t2 - t1, t3 - t2, t4 - t3)
            best = [min(b, t) for b, t in zip(best, times, strict=True)]
        print(f"| {size}² | " + " | ".join(f"{b * 1e3:.3f}" for b in best) + " |")
    worker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="vae,text,png,preview")
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--big", action="store_true", help="also decode 2048² with and without tiles (slow)")
    parser.add_argument("--no-encode", action="store_true", help="time VAE decoding only")
    args = parser.parse_args()
    os.environ.setdefault("SDGRAPH_HOME", str(ROOT / ".bench-cache" / "home"))
    import torch

    from nodes.diffusion.devices import cpu_has_native_bf16, describe_cpu

    print(
        f"CPU: {describe_cpu()}; native bf16: {cpu_has_native_bf16()}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    parts = args.parts.split(",")
    if "png" in parts:
        bench_png(max(7, args.repeats))
    if "preview" in parts:
        bench_preview(max(3, args.repeats))
    if "text" in parts:
        bench_text(max(3, args.repeats))
    if "vae" in parts:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        bench_vae(sizes, args.repeats, args.big, encode=not args.no_encode)


if __name__ == "__main__":
    main()
