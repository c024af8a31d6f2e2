"""A full-size SD3.5-Medium (or FLUX.1-shaped) transformer with seeded random weights: sdgraph's sampler
against diffusers' pipeline on the same module, in one process.

    .venv/bin/python bench/flow.py [--family sd3|flux] [--size 256] [--steps 3] [--cfg 4.5] [--repeats 1]
                                   [--no-fast] [--json out.json]
    .venv/bin/python bench/flow.py --variants [--size 128] [--steps 2]     # files: bf16, Q8_0, Q4_K, fp8

``--variants`` (SD3.5-Medium only) writes the same random transformer into ``.bench-cache/flow/`` as the
files people download (bf16 safetensors, GGUF Q8_0 and Q4_K with the ``gguf`` package as
``tests/support/gguf_files`` does, ComfyUI's scaled fp8 as ``tests/support/scaled_fp8_files`` does; the
K-quant blocks are random, the package cannot quantize to them) and runs each in a fresh process through
``load_transformer`` in fast precision: seconds per step and the peak RSS of that process (total, and
its growth over the baseline after the imports).

Both sides get the same prompt embeddings (random, the released shapes: SD3 333 tokens × 4096 with a 2048
pooled vector, FLUX 512 × 4096 with 768), the same start noise and the same sigmas, and run the same
``nn.Module``; text encoders and the VAE are left out, so what is timed is the denoising loop. Prints
seconds per step for each (wall time of the loop / steps; fastest of ``--repeats``), their ratio (the
exact-mode target is ≤ 1.02), the largest latent difference between the two (they must agree), the
fast mode's seconds per step (bf16 weights, bf16 compute where the CPU has native bf16) and the peak
RSS of the process. The FLUX.1 shape (12 B parameters, 48 GB in float32) only fits in memory in bf16;
``--family flux`` therefore runs bf16 on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SDGRAPH_HOME", str(ROOT / ".bench-cache" / "home"))

CONFIGS = ROOT / "resources" / "dit_configs"
SEED = 4242


def build(family: str, dtype: object) -> object:
    """The released architecture from the shipped config, seeded random weights, in ``dtype``."""
    import torch
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    classes = {"sd3": ("sd3.5_medium", SD3Transformer2DModel), "flux": ("flux1_dev", FluxTransformer2DModel)}
    folder, cls = classes[family]
    config = json.loads((CONFIGS / folder / "transformer" / "config.json").read_text())
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device("meta"):
        model = cls.from_config(config)
    model = model.to_empty(device="cpu").to(dtype)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).mul_(0.02).to(p.dtype))
    n = sum(p.numel() for p in model.parameters())
    print(f"built {cls.__name__} ({n / 1e9:.2f} B parameters, {dtype}) in {time.perf_counter() - t0:.0f} s")
    return model.eval().requires_grad_(False)


def conditioning(family: str, negative: bool) -> list[object]:
    import torch

    from nodes.diffusion.conditioning import CondEntry

    g = torch.Generator().manual_seed(7 if negative else 5)
    tokens, pooled = (333, 2048) if family == "sd3" else (512, 768)
    extras = {"text_recipe": family}
    if family == "flux":
        extras["guidance"] = 3.5
    return [CondEntry(torch.randn(1, tokens, 4096, generator=g), torch.randn(1, pooled, generator=g), extras)]


def ours(model: object, family: str, size: int, steps: int, cfg: float, compute: object) -> tuple[float, object]:
    """sdgraph's KSampler path (guider, model sampling, sampler) on the module; seconds per step, latent."""
    import torch

    from graph_engine import ExecutionContext
    from nodes.diffusion.dit.loading import model_sampling_for
    from nodes.diffusion.guidance import Guider
    from nodes.diffusion.ksampler import Noise, sample
    from nodes.diffusion.model import DiffusionModel
    from nodes.diffusion.sampling import FlowModelSampling, flux_mu, sigmas_for

    ms = model_sampling_for(family) if family == "sd3" else FlowModelSampling(mu=flux_mu(size, size), multiplier=1.0)
    dm = DiffusionModel(
        unet=model, family=family, prediction_type="flow", model_sampling=ms, latent_channels=16,
        latent_scale=1.0, compute_dtype=compute,  # type: ignore[arg-type]
    )  # fmt: skip
    guider = Guider(dm, conditioning(family, False), conditioning(family, True), cfg)
    latent = {"samples": torch.zeros(1, 16, size // 8, size // 8)}
    sigmas = sigmas_for(ms, "normal" if family == "sd3" else "linspace_diffusers", steps)
    t0 = time.perf_counter()
    out, _ = sample(ExecutionContext(node_id=1, title="bench"), guider, latent, sigmas, "euler", Noise(SEED))
    return (time.perf_counter() - t0) / steps, out["samples"]


def theirs(model: object, family: str, size: int, steps: int, cfg: float) -> tuple[float, object]:
    """The diffusers pipeline's loop on the same module, same embeddings, noise and sigmas."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, StableDiffusion3Pipeline

    from nodes.diffusion.sampling import initial_noise

    folder = "sd3.5_medium" if family == "sd3" else "flux1_dev"
    sched_cfg = json.loads((CONFIGS / folder / "scheduler" / "scheduler_config.json").read_text())
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(sched_cfg)
    pos, neg = conditioning(family, False)[0], conditioning(family, True)[0]
    noise = initial_noise(SEED, (1, 16, size // 8, size // 8))
    common = dict(height=size, width=size, num_inference_steps=steps, output_type="latent")
    if family == "sd3":
        pipe = StableDiffusion3Pipeline(
            transformer=model, scheduler=scheduler, vae=None, text_encoder=None, tokenizer=None,
            text_encoder_2=None, tokenizer_2=None, text_encoder_3=None, tokenizer_3=None,
        )  # fmt: skip
        kwargs = dict(
            prompt_embeds=pos.embeds, pooled_prompt_embeds=pos.pooled, negative_prompt_embeds=neg.embeds,
            negative_pooled_prompt_embeds=neg.pooled, guidance_scale=cfg, latents=noise,
        )  # fmt: skip
    else:
        pipe = FluxPipeline(
            scheduler=scheduler, vae=None, text_encoder=None, tokenizer=None, text_encoder_2=None,
            tokenizer_2=None, transformer=model,
        )  # fmt: skip
        packed = FluxPipeline._pack_latents(noise, 1, 16, size // 8, size // 8)
        kwargs = dict(prompt_embeds=pos.embeds, pooled_prompt_embeds=pos.pooled, guidance_scale=3.5, latents=packed)
    pipe.set_progress_bar_config(disable=True)
    t0 = time.perf_counter()
    with torch.inference_mode():
        latents = pipe(**common, **kwargs).images  # type: ignore[operator]
    seconds = (time.perf_counter() - t0) / steps
    if family == "flux":
        latents = FluxPipeline._unpack_latents(latents, size, size, 8)
    return seconds, latents


def peak_rss_gb() -> float:
    """This process's peak RSS since the last ``reset_peak_rss`` (VmHWM; ru_maxrss where /proc is absent)."""
    try:
        with open("/proc/self/status") as f:
            return int(next(x for x in f if x.startswith("VmHWM:")).split()[1]) / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peak_rss() -> None:
    """Start a new peak (Linux: writing 5 to clear_refs resets VmHWM), so each mode gets its own figure."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


VARIANTS = ("bf16", "Q8_0", "Q4_K", "fp8_scaled")


def write_variants(folder: Path) -> dict[str, Path]:
    """The SD3.5-Medium transformer (random, bf16) in each file format, written once. Tensor by tensor,
    so at most the bf16 model plus one file's quantized bytes are in memory."""
    import torch
    from safetensors.torch import save_file

    from tests.support.scaled_fp8_files import E4M3_MAX
    from tests.support.tiny_flow import sd3_to_original

    paths = {
        "bf16": folder / "sd3.5m-bf16.safetensors",
        "Q8_0": folder / "sd3.5m-Q8_0.gguf",
        "Q4_K": folder / "sd3.5m-Q4_K.gguf",
        "fp8_scaled": folder / "sd3.5m-fp8_scaled.safetensors",
    }
    if all(p.is_file() for p in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    model = build("sd3", torch.bfloat16)
    state = {k: v.contiguous() for k, v in sd3_to_original(model, prefix="").items()}
    del model
    t0 = time.perf_counter()
    if not paths["bf16"].is_file():
        save_file(state, str(paths["bf16"]))
    for kind in ("Q8_0", "Q4_K"):
        if not paths[kind].is_file():
            _write_gguf(paths[kind], state, kind)
    if paths["fp8_scaled"].is_file():
        return paths
    scaled: dict[str, object] = {"scaled_fp8": torch.zeros(2, dtype=torch.float8_e4m3fn)}
    for name, tensor in state.items():
        if name.endswith(".weight") and tensor.ndim == 2:
            w = tensor.float()
            scale = (w.abs().max() / E4M3_MAX).clamp_min(1e-12).reshape(())
            scaled[name] = (w / scale).to(torch.float8_e4m3fn)
            scaled[name[: -len(".weight")] + ".scale_weight"] = scale
        else:
            scaled[name] = tensor
    save_file(scaled, str(paths["fp8_scaled"]))  # type: ignore[arg-type]
    print(f"wrote the variants in {time.perf_counter() - t0:.0f} s", flush=True)
    return paths


def _write_gguf(path: Path, state: dict[str, object], kind: str) -> None:
    """As tests/support/gguf_files.write_gguf, without keeping a dequantized float copy of the model."""
    import gguf
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType, quants

    from tests.support.gguf_files import BLOCK, random_k_blocks

    writer = gguf.GGUFWriter(str(path), "sd3")
    for i, (name, tensor) in enumerate(state.items()):
        assert isinstance(tensor, torch.Tensor)
        data = tensor.float().numpy()
        if data.ndim == 2 and data.shape[1] % BLOCK[kind] == 0:
            q = GGMLQuantizationType[kind]
            if kind == "Q4_K":  # random blocks, their fp16 scales small enough for weights of ~0.01
                raw = random_k_blocks(data.shape, kind, seed=i)
                blocks = raw.reshape(data.shape[0], -1, 144)  # Q4_K: 144 bytes per 256 values
                blocks[..., 0:4] = np.array([1e-5, 1e-5], np.float16).view(np.uint8)  # d and dmin
            else:
                raw = quants.quantize(data, q)
            writer.add_tensor(name, raw, raw_dtype=q)
        else:
            writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def measure_variant(path: Path, size: int, steps: int, cfg: float) -> dict[str, object]:
    """In this fresh process: load the file as Load Diffusion Model does (fast precision) and sample."""
    import diffusers  # noqa: F401  (the imports' memory is part of the baseline)
    import torch

    from nodes.diffusion.devices import cpu_has_native_bf16
    from nodes.diffusion.dit.loading import load_transformer

    torch.set_grad_enabled(False)
    compute = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    base = rss_gb()
    t0 = time.perf_counter()
    loaded = load_transformer(path, dtype=compute)
    load_s = time.perf_counter() - t0
    s, latent = ours(loaded.network, "sd3", size, steps, cfg, compute)
    return {
        "file_gb": path.stat().st_size / 1e9,
        "load_s": load_s,
        "s_per_step": s,
        "peak_rss_gb": peak_rss_gb(),
        "peak_rss_growth_gb": peak_rss_gb() - base,
        "compute": str(compute),
        "finite": bool(torch.isfinite(latent).all()),  # type: ignore[call-overload]
        "load_average": os.getloadavg()[0],
    }


def run_variants(size: int, steps: int, cfg: float) -> dict[str, object]:
    import subprocess

    paths = write_variants(ROOT / ".bench-cache" / "flow")
    results: dict[str, object] = {}
    for name in VARIANTS:  # one at a time, each in its own process
        cmd = [sys.executable, __file__, "--measure-variant", str(paths[name]), "--size", str(size)]
        cmd += ["--steps", str(steps), "--cfg", str(cfg)]
        run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if run.returncode:
            results[name] = {"error": run.stderr.strip().splitlines()[-1]}
        else:
            results[name] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{name:<11} {json.dumps(results[name])}", flush=True)
    return results


def main() -> None:
    import torch

    from nodes.diffusion.devices import cpu_has_native_bf16

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["sd3", "flux"], default="sd3")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--cfg", type=float, default=4.5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-fast", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--variants", action="store_true", help="SD3.5-Medium as bf16, Q8_0, Q4_K and fp8 files")
    parser.add_argument("--measure-variant", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cfg = args.cfg if args.family == "sd3" else 1.0
    torch.set_grad_enabled(False)
    if args.measure_variant:
        print(json.dumps(measure_variant(args.measure_variant, args.size, args.steps, cfg)))
        return
    if args.variants:
        variants = run_variants(args.size, args.steps, cfg)
        if args.json:
            args.json.write_text(json.dumps(variants, indent=2))
        return
    figures: dict[str, object] = {"family": args.family, "size": args.size, "steps": args.steps, "cfg": cfg}
    exact_dtype = torch.float32 if args.family == "sd3" else torch.bfloat16
    model = build(args.family, exact_dtype)
    mine, ref = [], []
    peaks: dict[str, float] = {}
    for _ in range(args.repeats):  # interleaved, so load changes hit both sides alike
        reset_peak_rss()
        s, ours_latent = ours(model, args.family, args.size, args.steps, cfg, exact_dtype)
        mine.append(s)
        peaks["exact"] = max(peaks.get("exact", 0.0), peak_rss_gb())
        reset_peak_rss()
        s, their_latent = theirs(model, args.family, args.size, args.steps, cfg)
        ref.append(s)
        peaks["diffusers"] = max(peaks.get("diffusers", 0.0), peak_rss_gb())
    diff = float((ours_latent - their_latent.float()).abs().max())  # type: ignore[operator, union-attr]
    figures.update(exact_s_per_step=min(mine), diffusers_s_per_step=min(ref), ratio=min(mine) / min(ref))
    figures.update(exact_runs=mine, diffusers_runs=ref, max_latent_difference=diff)
    print(f"exact ({exact_dtype}): {min(mine):.3f} s/step (runs {', '.join(f'{x:.3f}' for x in mine)})")
    print(f"diffusers:           {min(ref):.3f} s/step (runs {', '.join(f'{x:.3f}' for x in ref)})")
    print(f"exact / diffusers:   {min(mine) / min(ref):.3f}  (target <= 1.02); max latent difference {diff:.2e}")
    if not args.no_fast and args.family == "sd3":
        native = cpu_has_native_bf16()
        compute = torch.bfloat16 if native else torch.float32
        model = model.to(torch.bfloat16)  # weights as a bf16 file stores them
        reset_peak_rss()
        s, _ = ours(model, args.family, args.size, args.steps, cfg, compute)
        peaks["fast"] = peak_rss_gb()
        figures.update(fast_s_per_step=s, fast_compute=str(compute), fast_vs_exact=s / min(mine))
        print(f"fast (bf16 weights, {compute} compute; native bf16 {native}): {s:.3f} s/step, {s / min(mine):.2f}x")
    figures["peak_rss_gb_per_mode"] = peaks  # each mode's own peak (the model it runs is resident in all)
    print("peak RSS per mode: " + ", ".join(f"{k} {v:.2f} GB" for k, v in peaks.items()))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
