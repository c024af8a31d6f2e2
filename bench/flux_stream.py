"""A FLUX.1-dev-shaped transformer (11.9 B parameters, 23.8 GB in bf16) larger than the model budget,
sampled with its blocks streamed from the memory-mapped file.

    .venv/bin/python bench/flux_stream.py [--double 19] [--single 38] [--size 256] [--steps 2]
                                          [--budget-mb 12288] [--compare] [--json out.json]

Writes the random-weight file once, tensor by tensor (never more than one tensor in memory), as
``.bench-cache/home/models/diffusion_models/flux1-dev-random-<d>x<s>-bf16.safetensors`` (FLUX's original
key layout, as the released file). Then, in a fresh process, Load Diffusion Model loads it in fast
precision (bf16 compute on a CPU with native bf16) with ``model_budget_mb`` set below its size, so it
is streamed (and says so), and sdgraph's guider + euler sampler run ``--steps`` steps at ``--size``²
with random prompt embeddings of the released shape (512 × 4096, pooled 768), guidance 3.5, cfg 1.
Prints the load time, seconds per step, the peak RSS of the process over its baseline, and the load
average. ``--double/--single`` below 19/38 make a shorter model of the same width, for machines
where the full one is too slow. ``--compare`` (for a model that fits) then loads the same file whole
in the same process and samples again: seconds per step and peak RSS of both, and whether the
latents are identical (they must be).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SDGRAPH_HOME", str(ROOT / ".bench-cache" / "home"))
CONFIG = ROOT / "resources" / "dit_configs" / "flux1_dev" / "transformer" / "config.json"
GB = 1e9


def _peak() -> int:
    with open("/proc/self/status") as f:
        return int(next(x for x in f if x.startswith("VmHWM:")).split()[1]) * 1024


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def write_model(path: Path, double: int, single: int) -> None:
    """The random bf16 file, streamed to disk: shapes from the architecture built on the meta device."""
    import torch
    from diffusers import FluxTransformer2DModel

    from tests.support.tiny_flow import flux_to_original

    config = dict(json.loads(CONFIG.read_text()), num_layers=double, num_single_layers=single)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in flux_to_original(FluxTransformer2DModel.from_config(config)).items()}
    header: dict[str, object] = {}
    offset = 0
    for name, shape in shapes.items():
        n = 1
        for s in shape:
            n *= s
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + 2 * n]}
        offset += 2 * n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((-len(raw)) % 8)
    tmp = path.with_suffix(".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    with open(tmp, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for name in shapes:
            n = header[name]["data_offsets"][1] - header[name]["data_offsets"][0]  # type: ignore[index]
            left = n // 2
            while left:
                chunk = min(left, 1 << 24)
                t = torch.randn(chunk, generator=g).mul_(0.02)
                if name.endswith("scale"):  # RMSNorm scales near 1, as trained ones are
                    t.add_(1.0)
                f.write(t.to(torch.bfloat16).view(torch.int16).numpy().tobytes())
                left -= chunk
    tmp.rename(path)
    print(f"wrote {path.name} ({path.stat().st_size / GB:.1f} GB) in {time.perf_counter() - t0:.0f} s", flush=True)


def measure(name: str, size: int, steps: int, budget_mb: int, compare: bool = False) -> dict[str, object]:
    """In this fresh process: load through Load Diffusion Model over the budget, then sample."""
    import torch

    from graph_engine import ExecutionContext
    from nodes.diffusion.conditioning import CondEntry
    from nodes.diffusion.guidance import Guider
    from nodes.diffusion.ksampler import Noise, sample
    from nodes.diffusion.loading import load_diffusion_model
    from nodes.diffusion.sampling import sigmas_for

    torch.set_grad_enabled(False)
    import diffusers  # noqa: F401  (the imports' memory is part of the baseline, not of the model)

    base = _rss()
    settings = {"precision": "fast", "model_budget_mb": budget_mb}
    ctx = ExecutionContext(node_id=1, title="bench", settings=settings)
    t0 = time.perf_counter()
    model = load_diffusion_model(ctx, name, "default")
    load_s = time.perf_counter() - t0
    after_load = _peak() - base
    g = torch.Generator().manual_seed(5)
    cond = [
        CondEntry(
            torch.randn(1, 512, 4096, generator=g),
            torch.randn(1, 768, generator=g),
            {"text_recipe": "flux", "guidance": 3.5},
        )
    ]
    guider = Guider(model, cond, [], 1.0)
    latent = {"samples": torch.zeros(1, 16, size // 8, size // 8)}
    sigmas = sigmas_for(model.model_sampling, "linspace_diffusers", steps)
    stamps: list[float] = []
    ctx = ExecutionContext(
        node_id=1, title="bench", settings=settings, on_progress=lambda i, n: stamps.append(time.perf_counter())
    )
    t0 = time.perf_counter()
    out, _ = sample(ctx, guider, latent, sigmas, "euler", Noise(42))
    total = time.perf_counter() - t0
    streamer = getattr(model.unet, "_sdgraph_streamer", None)
    finite = bool(torch.isfinite(out["samples"]).all())
    peak = _peak()  # before the --compare run, which has its own
    whole: dict[str, object] = {}
    if compare:  # the same file loaded whole (it must fit), sampled in this process after the streamed run
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # a new peak for this run
        base_whole = _rss()
        settings_whole = {"precision": "fast", "model_budget_mb": 16384}  # above the file: not streamed
        loaded = load_diffusion_model(ExecutionContext(node_id=1, title="b", settings=settings_whole), name, "default")
        guider_whole = Guider(loaded, cond, [], 1.0)
        t1 = time.perf_counter()
        out_whole, _ = sample(ExecutionContext(node_id=1, title="b"), guider_whole, latent, sigmas, "euler", Noise(42))
        whole = {
            "whole_s_per_step": (time.perf_counter() - t1) / steps,
            "whole_peak_rss_growth_gb": (_peak() - base_whole) / GB,
            "whole_equals_streamed": bool(torch.equal(out_whole["samples"], out["samples"])),
        }
    return {
        **whole,
        "load_s": load_s,
        "s_per_step": total / steps,
        "step_times": [b - a for a, b in zip([t0, *stamps], stamps, strict=False)],
        "peak_rss_growth_gb_after_load": after_load / GB,
        "peak_rss_growth_gb": (peak - base) / GB,
        "peak_rss_gb": peak / GB,
        "released_gb": (streamer.released_bytes if streamer else 0) / GB,
        "streamed": streamer is not None,
        "finite": finite,
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--double", type=int, default=19)
    parser.add_argument("--single", type=int, default=38)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--budget-mb", type=int, default=12288)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--compare", action="store_true", help="also load the file whole (it must fit) and sample")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.size, args.steps, args.budget_mb, args.compare)))
        return
    name = f"flux1-dev-random-{args.double}x{args.single}-bf16.safetensors"
    path = Path(os.environ["SDGRAPH_HOME"]) / "models" / "diffusion_models" / name
    if not path.is_file():
        write_model(path, args.double, args.single)
    print(f"load average before: {os.getloadavg()}", flush=True)
    cmd = [sys.executable, __file__, "--measure", name, "--size", str(args.size), "--steps", str(args.steps)]
    cmd += ["--budget-mb", str(args.budget_mb)] + (["--compare"] if args.compare else [])
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    sys.stderr.write(run.stderr[-3000:])
    run.check_returncode()
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    figures.update(file_gb=path.stat().st_size / GB, double=args.double, single=args.single, size=args.size)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
