"""A full-size SD3.5-Medium (or FLUX.1-shaped) transformer with seeded random weights: sdgraph's sampler
against diffusers' pipeline on the same module, in one process.

    .venv/bin/python bench/flow.py [--family sd3|flux] [--size 256] [--steps 3] [--cfg 4.5] [--repeats 1]
                                   [--no-fast] [--json out.json]

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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


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
    args = parser.parse_args()
    cfg = args.cfg if args.family == "sd3" else 1.0
    torch.set_grad_enabled(False)
    figures: dict[str, object] = {"family": args.family, "size": args.size, "steps": args.steps, "cfg": cfg}
    exact_dtype = torch.float32 if args.family == "sd3" else torch.bfloat16
    model = build(args.family, exact_dtype)
    mine, ref = [], []
    for _ in range(args.repeats):  # interleaved, so load changes hit both sides alike
        s, ours_latent = ours(model, args.family, args.size, args.steps, cfg, exact_dtype)
        mine.append(s)
        s, their_latent = theirs(model, args.family, args.size, args.steps, cfg)
        ref.append(s)
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
        s, _ = ours(model, args.family, args.size, args.steps, cfg, compute)
        figures.update(fast_s_per_step=s, fast_compute=str(compute), fast_vs_exact=s / min(mine))
        print(f"fast (bf16 weights, {compute} compute; native bf16 {native}): {s:.3f} s/step, {s / min(mine):.2f}x")
    figures["peak_rss_gb"] = peak_rss_gb()
    print(f"peak RSS: {figures['peak_rss_gb']:.2f} GB")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
