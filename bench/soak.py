"""Soak: many consecutive txt2img runs in one process must not make it grow (issue 14, "long runs").

    .venv/bin/python bench/soak.py [--runs 200] [--every 20] [--size 64] [--steps 2]
                                   [--ckpt A.safetensors --ckpt B.safetensors --lora L.safetensors]
                                   [--model-root DIR] [--json out.json]

Every run changes the seed and the prompt; every fifth run switches between two checkpoints, and
every other run puts a LoRA between the checkpoint and the sampler, so model loads, LoRA patches and
unpatches, text encodes and the result cache are all exercised the way an editor session does (one
`Executor` with its cache, like the window's). Without `--ckpt`/`--lora` it writes two tiny SD1
checkpoints (different seeds) and a tiny LoRA into a temp folder; give real files (found in
`--model-root` or the configured model folders) for a full-size soak.

Prints the resident set size after a garbage collection every `--every` runs. Memory leaks are the
most common complaint against ComfyUI; `tests/app/test_soak.py` runs 60 of these and fails on
growth after warm-up.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = ["a red fox in the snow", "a lighthouse at dusk", "a bowl of ripe pears", "a city street in rain"]
LORA_TARGET = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"  # tiny SD1's first cross-attention


def rss_mb() -> float:
    """The current resident set size in MB (not the peak: a leak shows as a rising current size)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20


def write_tiny_models(root: Path) -> tuple[list[str], str]:
    """Two tiny SD1 checkpoints (different weights) and a LoRA for them, in the real folder layout."""
    from tests.nodes.lora.lora_support import LoraWriter
    from tests.support.tiny_sd import build_tiny_models, make_tiny

    ckpts = root / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    names = [make_tiny("sd1", ckpts, seed=seed, name=f"soak_sd1_{seed}").name for seed in (0, 1)]
    writer = LoraWriter(seed=1)
    writer.kohya(build_tiny_models("sd1").unet, LORA_TARGET, "lora_unet_" + LORA_TARGET.replace(".", "_"), alpha=2.0)
    (root / "loras").mkdir(exist_ok=True)
    writer.save(root / "loras" / "soak_style.safetensors")
    return names, "soak_style.safetensors"


def build_graph(ckpt: str, lora: str | None, prompt: str, seed: int, size: int, steps: int) -> Any:
    """Checkpoint (→ LoRA) → prompts → KSampler → VAE Decode → Save Image."""
    from graph_engine import Graph

    g = Graph()
    ckpt_id = g.add_node("CheckpointLoaderSimple", {"ckpt_name": ckpt}).id
    model, clip = (ckpt_id, "MODEL"), (ckpt_id, "CLIP")
    if lora is not None:
        lora_id = g.add_node("LoraLoader", {"lora_name": lora, "strength_model": 0.8, "strength_clip": 0.8}).id
        g.add_link(ckpt_id, "MODEL", lora_id, "model", "MODEL")
        g.add_link(ckpt_id, "CLIP", lora_id, "clip", "CLIP")
        model, clip = (lora_id, "MODEL"), (lora_id, "CLIP")
    pos = g.add_node("CLIPTextEncode", {"text": prompt}).id
    neg = g.add_node("CLIPTextEncode", {"text": "blurry"}).id
    empty = g.add_node("EmptyLatentImage", {"width": size, "height": size, "batch_size": 1}).id
    ks = g.add_node("KSampler", {"seed": seed, "steps": steps}).id
    dec = g.add_node("VAEDecode").id
    out = g.add_node("SaveImage", {"filename_prefix": "soak"}).id
    g.add_link(*clip, pos, "clip", "CLIP")
    g.add_link(*clip, neg, "clip", "CLIP")
    g.add_link(*model, ks, "model", "MODEL")
    g.add_link(pos, "CONDITIONING", ks, "positive", "CONDITIONING")
    g.add_link(neg, "CONDITIONING", ks, "negative", "CONDITIONING")
    g.add_link(empty, "LATENT", ks, "latent_image", "LATENT")
    g.add_link(ks, "LATENT", dec, "samples", "LATENT")
    g.add_link(ckpt_id, "VAE", dec, "vae", "VAE")
    g.add_link(dec, "IMAGE", out, "images", "IMAGE")
    return g


def soak(
    runs: int,
    ckpts: list[str],
    lora: str,
    output_dir: Path,
    *,
    every: int = 20,
    size: int = 64,
    steps: int = 2,
    cache_mb: int = 0,
    report: Callable[[int, float], None] | None = None,
) -> list[tuple[int, float]]:
    """Run `runs` graphs in this process; returns (runs done, RSS MB after gc) every `every` runs."""
    from graph_engine import Executor, ResultCache
    from nodes import builtin_registry

    executor = Executor(builtin_registry(), cache=ResultCache(cache_mb * 2**20), output_dir=output_dir)
    samples: list[tuple[int, float]] = []
    for i in range(1, runs + 1):
        ckpt = ckpts[(i // 5) % len(ckpts)]
        graph = build_graph(ckpt, lora if i % 2 else None, f"{PROMPTS[i % len(PROMPTS)]}, take {i}", i, size, steps)
        result = executor.run(graph)
        if result.status != "done":
            raise RuntimeError(f"run {i} failed: {result.error}")
        for image in output_dir.glob("soak_*.png"):  # the disk is not what is measured
            image.unlink()
        if i % every == 0:
            gc.collect()
            samples.append((i, rss_mb()))
            if report is not None:
                report(i, samples[-1][1])
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--ckpt", action="append", default=[], help="a checkpoint name (give two to switch)")
    parser.add_argument("--lora", help="a LoRA name that fits the checkpoints")
    parser.add_argument("--model-root", type=Path, help="an extra model folder to find them in")
    parser.add_argument(
        "--cache-mb", type=int, default=0, help="the result cache's budget (it fills up to that by design)"
    )
    parser.add_argument("--json", type=Path, help="write the RSS samples here")
    args = parser.parse_args(argv)

    import torch

    import nodes.folders

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    with tempfile.TemporaryDirectory(prefix="sdgraph-soak-") as tmp:
        os.environ.setdefault("SDGRAPH_HOME", str(Path(tmp) / "home"))
        if args.ckpt:
            if not args.lora:
                parser.error("--ckpt needs --lora too")
            ckpts, lora = args.ckpt, args.lora
            roots = [str(args.model_root)] if args.model_root else []
        else:
            ckpts, lora = write_tiny_models(Path(tmp) / "models")
            roots = [str(Path(tmp) / "models")]
        nodes.folders.configure(extra_roots=roots)
        started = time.perf_counter()

        def report(done: int, mb: float) -> None:
            print(f"run {done:5d}  RSS {mb:8.1f} MB  ({time.perf_counter() - started:.0f} s)", flush=True)

        samples = soak(
            args.runs,
            ckpts,
            lora,
            Path(tmp) / "out",
            every=args.every,
            size=args.size,
            steps=args.steps,
            cache_mb=args.cache_mb,
            report=report,
        )
    if args.json:
        args.json.write_text(json.dumps({"samples": samples}))
    if len(samples) >= 2:
        print(f"growth after the first report: {samples[-1][1] - samples[0][1]:+.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
