"""Our graph (Load Checkpoint → Encode Prompt ×2 → Empty Latent → KSampler) against diffusers' own
pipelines on the same weights and seed: the final latents must agree to 1e-4.

The schedule is `linspace_diffusers` (diffusers' EulerDiscreteScheduler with linspace spacing),
the sampler euler, cfg 7.5, 10 steps. The diffusers pipeline is the oracle: it is built from the
very models the tiny checkpoint file was written from, while our side loads that file through the
real loader, tokenizer, text encoder and sampler code.
"""

from __future__ import annotations

import pytest
import torch

from graph_engine import Executor
from nodes import builtin_registry
from tests.support.graphs import txt2img_graph
from tests.support.tiny_sd import build_tiny_models, write_diffusers_folder, write_single_file

PROMPT = "a (red:1.0) fox jumping over a lazy dog, photograph"
SEED = 1234
STEPS = 10
CFG = 7.5
SIZE = 64


def run_graph_latents(tmp_path, name: str, family: str) -> torch.Tensor:
    from graph_engine import ResultCache

    g_latent: list[torch.Tensor] = []
    executor = Executor(builtin_registry(), output_dir=tmp_path, cache=ResultCache())
    g, ids = txt2img_graph(
        name,
        prompt=PROMPT,
        negative=None if family == "sdxl" else "",
        size=SIZE,
        output="PreviewImage",
        seed=SEED,
        steps=STEPS,
        cfg=CFG,
        sampler_name="euler",
        scheduler="linspace_diffusers",
        denoise=1.0,
    )
    ks = ids["ks"]
    from graph_engine.events import NodeFinished

    def grab(event):
        if isinstance(event, NodeFinished) and event.node_id == ks:
            (latent,) = executor.cache.get(executor.signatures(plan)[ks]).outputs
            g_latent.append(latent["samples"])

    from graph_engine import make_plan

    plan = make_plan(g, builtin_registry())
    result = executor.execute(plan, on_event=grab)
    assert result.status == "done", result.error
    return g_latent[0]


def diffusers_latents(models, family: str) -> torch.Tensor:
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    from nodes.diffusion.text.vocab import build_clip_tokenizer

    scheduler = EulerDiscreteScheduler.from_config({**models.scheduler_config, "timestep_spacing": "linspace"})
    generator = torch.Generator("cpu").manual_seed(SEED)
    common = dict(
        num_inference_steps=STEPS,
        guidance_scale=CFG,
        generator=generator,
        output_type="latent",
        height=SIZE,
        width=SIZE,
    )
    if family == "sdxl":
        pipe = StableDiffusionXLPipeline(
            vae=models.vae,
            text_encoder=models.text_encoders[0],
            text_encoder_2=models.text_encoders[1],
            tokenizer=build_clip_tokenizer(),
            tokenizer_2=build_clip_tokenizer(pad_token="!"),
            unet=models.unet,
            scheduler=scheduler,
            force_zeros_for_empty_prompt=True,
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe(prompt=PROMPT.replace("(red:1.0)", "red"), **common).images
    # SD2's OpenCLIP encoder was trained with zero padding: diffusers configures that as pad token "!" (id 0).
    pipe = StableDiffusionPipeline(
        vae=models.vae,
        text_encoder=models.text_encoders[0],
        tokenizer=build_clip_tokenizer(pad_token="!" if family == "sd2" else "<|endoftext|>"),
        unet=models.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt=PROMPT.replace("(red:1.0)", "red"), negative_prompt="", **common).images


@pytest.mark.parametrize(
    ("family", "layout"),
    [
        ("sd1", "single_file"),
        ("sd1", "diffusers"),
        ("sd2", "single_file"),
        ("sdxl", "single_file"),
        ("sdxl", "diffusers"),
    ],
)
def test_ksampler_matches_diffusers_pipeline(family, layout, tmp_path):
    import nodes.folders

    root = tmp_path / "models"
    (root / "checkpoints").mkdir(parents=True)
    models = build_tiny_models(family, seed=3)
    if layout == "single_file":
        name = f"parity_{family}.safetensors"
        write_single_file(models, root / "checkpoints" / name)
    else:
        name = f"parity_{family}"
        write_diffusers_folder(models, root / "checkpoints" / name)
    nodes.folders.configure(extra_roots=[str(root)])
    try:
        ours = run_graph_latents(tmp_path, name, family)
    finally:
        nodes.folders.configure()
    with torch.inference_mode():
        # diffusers returns latents in the UNet's scaled space; LATENT values hold the VAE's own.
        theirs = diffusers_latents(models, family) / models.vae.config.scaling_factor
    assert ours.shape == theirs.shape
    assert theirs.abs().max() > 0.5  # a real, non-trivial result
    diff = (ours - theirs).abs().max().item()
    assert diff <= 1e-4, f"max abs latent difference {diff:.2e}"
