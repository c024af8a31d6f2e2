"""GPU section of the benchmark suite: SD1.5 at 512² and SDXL at 1024², 20 euler steps, cfg 7, in exact
and fast precision: iterations per second and peak VRAM, through sdgraph's own graph and nodes.

    .venv/bin/python bench/gpu.py [--quick] [--time-limit 480] [--families sd1,sdxl] [--steps 20]
                                  [--json out.json]

One short command for a GPU loan (15 minutes of device time, all tries together): rows are printed
(and written to ``--json``) as each finishes, and at ``--time-limit`` seconds the script prints what
it has and exits 124, so a loan is never spent on a run that reports nothing. ``--quick``: 10
steps. Runs on CUDA when a device is present and prints "no GPU" (exit 0) otherwise, so
`bench/run_all.py` can call it anywhere. Weights are seeded random (full-size architectures, written once to
.bench-cache/ in the real single-file layout, fp16), so no download is needed; speed does not depend
on what the weights are. it/s is timed between the first and the last step callback (prompt
encoding and VAE decode excluded); peak VRAM is torch.cuda.max_memory_allocated over the whole run
(load + sample + decode), reset before each mode.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SDGRAPH_HOME", str(ROOT / ".bench-cache" / "home"))

CACHE = ROOT / ".bench-cache"
JOBS = {"sd1": 512, "sdxl": 1024}


def write_random_checkpoint(family: str) -> Path:
    """A full-size random checkpoint of ``family`` (sd1 or sdxl), fp16, in the single-file layout."""
    path = CACHE / "models" / "checkpoints" / f"random_{family}_fp16.safetensors"
    if path.exists():
        return path
    if family == "sd1":
        from bench.sd import write_checkpoint

        return write_checkpoint("fp16")
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from nodes.diffusion.checkpoint.detect import base_config
    from nodes.diffusion.checkpoint.ldm_layout import save_single_file

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        unet = UNet2DConditionModel.from_config(base_config(family, "unet")).half()
        vae = AutoencoderKL.from_config(base_config(family, "vae")).half()
        encoders = []
        for part, cls in (("text_encoder", CLIPTextModel), ("text_encoder_2", CLIPTextModelWithProjection)):
            cfg = {k: v for k, v in base_config(family, part).items() if k != "architectures"}
            encoders.append(cls(CLIPTextConfig(**cfg)).half())
    save_single_file(path, family, unet=unet.cpu(), vae=vae.cpu(), text_encoders=[e.cpu() for e in encoders])
    return path


def run_job(family: str, precision: str, steps: int) -> dict:
    import torch

    from bench.sd import build_graph
    from graph_engine import Executor
    from graph_engine.events import NodeProgress
    from nodes import builtin_registry
    from nodes.diffusion.runtime import manager

    path = write_random_checkpoint(family)
    size = JOBS[family]
    g, ks = build_graph(path.name, size, steps, 7.0, seed=1)
    manager().unload_all()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    executor = Executor(
        builtin_registry(), device="cuda", output_dir=CACHE / "output", settings={"precision": precision}
    )
    stamps: list[float] = []

    def on_event(e):
        if isinstance(e, NodeProgress) and e.node_id == ks:
            torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    t0 = time.perf_counter()
    result = executor.run(g, on_event=on_event)
    first = time.perf_counter() - t0
    assert result.status == "done", result.error
    # A second run with another seed: the model is loaded and the kernels are warm.
    g.set_value(ks, "seed", 2)
    stamps.clear()
    executor.run(g, on_event=on_event)
    it_s = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    return {
        "family": family,
        "size": size,
        "precision": precision,
        "steps": steps,
        "it_s": it_s,
        "first_run_s": first,
        "peak_vram_gb": torch.cuda.max_memory_allocated() / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="sd1,sdxl")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the rows here (after each row)")
    parser.add_argument("--quick", action="store_true", help="10 steps instead of 20")
    parser.add_argument("--time-limit", type=float, default=480.0, help="seconds; then print what is done, exit 124")
    args = parser.parse_args()
    if args.quick:
        args.steps = min(args.steps, 10)
    started = time.perf_counter()

    import torch

    if not torch.cuda.is_available():
        print("no GPU: torch.cuda.is_available() is False; nothing measured")
        return
    import threading

    def out_of_time() -> None:
        print(f"time limit ({args.time_limit:.0f} s) reached; rows above are all that was measured", flush=True)
        os._exit(124)  # the GPU work in progress cannot be interrupted any other way

    watchdog = threading.Timer(args.time_limit - (time.perf_counter() - started), out_of_time)
    watchdog.daemon = True
    watchdog.start()
    name = torch.cuda.get_device_name()
    print(f"GPU: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    rows = []
    for family in args.families.split(","):
        for precision in ("exact", "fast"):
            row = run_job(family, precision, args.steps)
            rows.append(row)
            print(
                f"{family:5} {row['size']}² {precision:5}: {row['it_s']:.2f} it/s, "
                f"peak VRAM {row['peak_vram_gb']:.2f} GB, first run {row['first_run_s']:.1f} s",
                flush=True,
            )
            if args.json:
                args.json.write_text(json.dumps({"gpu": name, "torch": torch.__version__, "rows": rows}, indent=2))
    watchdog.cancel()
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
