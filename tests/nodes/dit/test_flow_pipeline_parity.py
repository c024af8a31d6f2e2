"""sdgraph's graph against diffusers' own pipelines for SD3.5, FLUX.1 and Z-Image, on the same weights.

Tiny seeded models are written in the layouts users download — all-in-one checkpoints (SD3.5, FLUX),
ComfyUI's separate ``diffusion_models`` / ``text_encoders`` / ``vae`` files, diffusers folders — and
loaded through the real loader nodes, tokenizers, text encoders and samplers. The oracle is
``StableDiffusion3Pipeline`` / ``FluxPipeline`` / ``ZImagePipeline`` built from the very modules the
files were written from, with the same seed (both draw the start noise as ``torch.randn`` from a
generator seeded with it) and the same sigmas: the final latents, in the denoiser's space, agree to 1e-4.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from graph_engine import Executor, Graph, ResultCache, make_plan
from graph_engine.events import NodeFinished
from nodes import builtin_registry
from nodes.diffusion.text.encoder_files import CLIP_L, QWEN3, T5XXL
from nodes.diffusion.text.llm_vocab import build_qwen3_tokenizer, build_t5_tokenizer
from nodes.diffusion.text.vocab import build_clip_tokenizer
from tests.support import tiny_flow as tf
from tests.support.tiny_text import save_encoder, tiny_encoder

SEED = 11
PROMPT = "a red fox jumping over a lazy dog, photograph"
W, H = 64, 48  # 8×6 latents: not square, so a swapped height/width shows
TOL = 1e-4
CONFIGS = Path(__file__).resolve().parents[3] / "resources" / "dit_configs"


@pytest.fixture
def models(tmp_path: Path) -> Iterator[Path]:
    import nodes.folders

    root = tmp_path / "models"
    for kind in ("checkpoints", "diffusion_models", "text_encoders", "vae"):
        (root / kind).mkdir(parents=True)
    nodes.folders.configure(extra_roots=[str(root)])
    yield root
    nodes.folders.configure()


def _link(g: Graph, a: int, out: str, b: int, inp: str) -> None:
    g.add_link(a, out, b, inp, out)


def flow_graph(
    loaders: dict[str, tuple[int, str]],
    g: Graph,
    *,
    steps: int,
    cfg: float,
    scheduler: str,
    negative: str | None = "",
    model_sampling: tuple[str, dict[str, Any]] | None = None,
) -> int:
    """Encode ×2 → (ModelSampling*) → EmptySD3LatentImage → KSampler; returns the KSampler's id.
    ``loaders`` maps MODEL/CLIP to (node id, output name)."""
    pos = g.add_node("CLIPTextEncode", {"text": PROMPT}).id
    neg = g.add_node("CLIPTextEncode", {"text": negative or ""}).id
    for n in (pos, neg):
        g.add_link(loaders["CLIP"][0], "CLIP", n, "clip", "CLIP")
    model = loaders["MODEL"]
    if model_sampling is not None:
        ms = g.add_node(model_sampling[0], model_sampling[1]).id
        g.add_link(model[0], "MODEL", ms, "model", "MODEL")
        model = (ms, "MODEL")
    latent = g.add_node("EmptySD3LatentImage", {"width": W, "height": H, "batch_size": 1}).id
    ks = g.add_node(
        "KSampler",
        {"seed": SEED, "steps": steps, "cfg": cfg, "sampler_name": "euler", "scheduler": scheduler, "denoise": 1.0},
    ).id
    g.add_link(model[0], "MODEL", ks, "model", "MODEL")
    _link(g, pos, "CONDITIONING", ks, "positive")
    _link(g, neg, "CONDITIONING", ks, "negative")
    _link(g, latent, "LATENT", ks, "latent_image")
    dec = g.add_node("VAEDecode").id
    _link(g, ks, "LATENT", dec, "samples")
    g.add_link(loaders["VAE"][0], "VAE", dec, "vae", "VAE")
    out = g.add_node("PreviewImage").id
    _link(g, dec, "IMAGE", out, "images")
    return ks


def run_latents(g: Graph, ks: int, tmp_path: Path) -> tuple[torch.Tensor, Any]:
    """The KSampler's LATENT samples (the VAE's space) and the MODEL it sampled with."""
    registry = builtin_registry()
    executor = Executor(registry, output_dir=tmp_path / "out", cache=ResultCache())
    plan = make_plan(g, registry)
    grabbed: list[torch.Tensor] = []

    def grab(event: object) -> None:
        if isinstance(event, NodeFinished) and event.node_id == ks:
            grabbed.append(executor.cache.get(executor.signatures(plan)[ks]).outputs[0]["samples"])

    result = executor.execute(plan, on_event=grab)
    assert result.status == "done", result.error
    model_node = g.link_into(ks, "model").src_node
    (model,) = [o for o in executor.cache.get(executor.signatures(plan)[model_node]).outputs if hasattr(o, "unet")]
    return grabbed[0], model


def scheduler_for(folder: str) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    config = json.loads((CONFIGS / folder / "scheduler" / "scheduler_config.json").read_text())
    return FlowMatchEulerDiscreteScheduler.from_config(config)


def _close(ours_vae_space: torch.Tensor, model: Any, reference: torch.Tensor) -> None:
    ours = model.to_model_space(ours_vae_space)
    assert ours.shape == reference.shape
    assert reference.abs().max() > 0.5  # a real latent, not zeros
    assert (ours - reference).abs().max().item() < TOL


# --------------------------------------------------------------------------------------------
# FLUX.1
# --------------------------------------------------------------------------------------------


def flux_reference(transformer: Any, vae: Any, clip_l: Any, t5: Any, steps: int, *, dev: bool) -> torch.Tensor:
    from diffusers import FluxPipeline

    pipe = FluxPipeline(
        scheduler=scheduler_for("flux1_dev" if dev else "flux1_schnell"),
        vae=vae,
        text_encoder=clip_l.text_model,
        tokenizer=build_clip_tokenizer(),
        text_encoder_2=t5,
        tokenizer_2=build_t5_tokenizer(),
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    packed = pipe(
        prompt=PROMPT,
        height=H,
        width=W,
        num_inference_steps=steps,
        guidance_scale=3.5,
        generator=torch.Generator().manual_seed(SEED),
        output_type="latent",
        max_sequence_length=512,
    ).images
    return FluxPipeline._unpack_latents(packed, H, W, 8)


def test_flux_dev_all_in_one_checkpoint_matches_flux_pipeline(models: Path, tmp_path: Path) -> None:
    """CheckpointLoaderSimple on a FLUX.1-dev all-in-one file; ModelSamplingFlux at the image size gives
    the pipeline's dynamic shift, linspace_diffusers its sigmas, the default distilled guidance 3.5."""
    ckpt = tf.write_flux_all_in_one(models / "checkpoints" / "flux1-dev-tiny.safetensors", seed=3)
    g = Graph()
    loader = g.add_node("CheckpointLoaderSimple", {"ckpt_name": "flux1-dev-tiny.safetensors"}).id
    sampling = ("ModelSamplingFlux", {"width": W, "height": H, "max_shift": 1.15, "base_shift": 0.5})
    ks = flow_graph(
        {k: (loader, k) for k in ("MODEL", "CLIP", "VAE")},
        g,
        steps=4,
        cfg=1.0,
        scheduler="linspace_diffusers",
        model_sampling=sampling,
    )
    ours, model = run_latents(g, ks, tmp_path)
    assert model.family == "flux" and model.latent_channels == 16
    _close(ours, model, flux_reference(ckpt.transformer, ckpt.vae, ckpt.clip_l, ckpt.t5, 4, dev=True))


def test_flux_schnell_separate_files_match_flux_pipeline(models: Path, tmp_path: Path) -> None:
    """ComfyUI's layout: UNETLoader (bare BFL names), DualCLIPLoader type flux (T5 first, as the anchors
    have it), VAELoader on ae.safetensors. Schnell has no guidance embedder and runs unshifted."""
    transformer = tf.tiny_flux(5, guidance=False)
    vae = tf.tiny_vae16(6, "flux")
    clip_l, t5 = tf.tiny_flux_text_encoders(7)
    tf.write_file(models / "diffusion_models" / "flux1-schnell.safetensors", tf.flux_to_original(transformer))
    tf.write_file(models / "vae" / "ae.safetensors", tf.vae16_to_original(vae))
    save_encoder(clip_l, CLIP_L, models / "text_encoders" / "clip_l.safetensors")
    save_encoder(t5, T5XXL, models / "text_encoders" / "t5xxl_fp16.safetensors")
    g = Graph()
    unet = g.add_node("UNETLoader", {"unet_name": "flux1-schnell.safetensors", "weight_dtype": "default"}).id
    clip = g.add_node(
        "DualCLIPLoader",
        {"clip_name1": "t5xxl_fp16.safetensors", "clip_name2": "clip_l.safetensors", "type": "flux"},
    ).id
    vae_node = g.add_node("VAELoader", {"vae_name": "ae.safetensors"}).id
    loaders = {"MODEL": (unet, "MODEL"), "CLIP": (clip, "CLIP"), "VAE": (vae_node, "VAE")}
    ks = flow_graph(loaders, g, steps=3, cfg=1.0, scheduler="linspace_diffusers")
    ours, model = run_latents(g, ks, tmp_path)
    _close(ours, model, flux_reference(transformer, vae, clip_l, t5, 3, dev=False))


# --------------------------------------------------------------------------------------------
# SD3.5
# --------------------------------------------------------------------------------------------


def sd3_reference(ckpt: Any, steps: int, cfg: float) -> torch.Tensor:
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline(
        transformer=ckpt.transformer,
        scheduler=scheduler_for("sd3.5_medium"),
        vae=ckpt.vae,
        text_encoder=ckpt.clip_l,
        tokenizer=build_clip_tokenizer(),
        text_encoder_2=ckpt.clip_g,
        tokenizer_2=build_clip_tokenizer(pad_token="!"),
        text_encoder_3=ckpt.t5,
        tokenizer_3=build_t5_tokenizer(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        prompt=PROMPT,
        negative_prompt="",
        height=H,
        width=W,
        num_inference_steps=steps,
        guidance_scale=cfg,
        generator=torch.Generator().manual_seed(SEED),
        output_type="latent",
    ).images


def test_sd35_all_in_one_checkpoint_matches_sd3_pipeline(models: Path, tmp_path: Path) -> None:
    """CheckpointLoaderSimple on an SD3.5-Medium-style file (MMDiT-X block, q/k norms, three encoders);
    the default model sampling (shift 3) and the `normal` schedule give the pipeline's default sigmas;
    real classifier-free guidance with an empty negative."""
    ckpt = tf.write_sd35_all_in_one(models / "checkpoints" / "sd3.5_medium_tiny.safetensors", seed=2)
    g = Graph()
    loader = g.add_node("CheckpointLoaderSimple", {"ckpt_name": "sd3.5_medium_tiny.safetensors"}).id
    ks = flow_graph({k: (loader, k) for k in ("MODEL", "CLIP", "VAE")}, g, steps=4, cfg=4.5, scheduler="normal")
    ours, model = run_latents(g, ks, tmp_path)
    assert model.family == "sd3"
    _close(ours, model, sd3_reference(ckpt, 4, 4.5))


# --------------------------------------------------------------------------------------------
# Z-Image
# --------------------------------------------------------------------------------------------


def z_image_reference(transformer: Any, vae: Any, qwen: Any, steps: int, guidance: float) -> torch.Tensor:
    from diffusers import ZImagePipeline

    pipe = ZImagePipeline(
        scheduler=scheduler_for("z_image_turbo"),
        vae=vae,
        text_encoder=qwen,
        tokenizer=build_qwen3_tokenizer(),
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        prompt=PROMPT,
        negative_prompt="",
        height=H,
        width=W,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator().manual_seed(SEED),
        output_type="latent",
    ).images


@pytest.mark.parametrize(("guidance", "layout"), [(0.0, "single_file"), (2.0, "diffusers")])
def test_z_image_matches_z_image_pipeline(models: Path, tmp_path: Path, guidance: float, layout: str) -> None:
    """UNETLoader (ComfyUI's bare Tongyi-MAI names, or a diffusers transformer folder), CLIPLoader type
    lumina2 with Qwen3, VAELoader. Turbo runs without guidance (cfg 1); with guidance g the pipeline's
    ``pos + g·(pos − neg)`` is cfg 1 + g."""
    transformer = tf.tiny_z_image(8)
    vae = tf.tiny_vae16(9, "z_image")
    qwen = tiny_encoder(QWEN3, 10)
    if layout == "single_file":
        tf.write_file(models / "diffusion_models" / "z_image_turbo.safetensors", tf.z_image_to_original(transformer))
        tf.write_file(models / "vae" / "ae.safetensors", tf.vae16_to_original(vae))
        unet_name, vae_name = "z_image_turbo.safetensors", "ae.safetensors"
    else:
        tf.write_diffusers_folder(models / "diffusion_models" / "Z-Image-Turbo", transformer=transformer)
        tf.write_diffusers_folder(models / "vae" / "Z-Image-Turbo", vae=vae)
        unet_name, vae_name = "Z-Image-Turbo/transformer", "Z-Image-Turbo/vae"  # as the loaders list them
    save_encoder(qwen, QWEN3, models / "text_encoders" / "qwen_3_4b.safetensors")
    g = Graph()
    unet = g.add_node("UNETLoader", {"unet_name": unet_name, "weight_dtype": "default"}).id
    clip = g.add_node("CLIPLoader", {"clip_name": "qwen_3_4b.safetensors", "type": "lumina2"}).id
    vae_node = g.add_node("VAELoader", {"vae_name": vae_name}).id
    loaders = {"MODEL": (unet, "MODEL"), "CLIP": (clip, "CLIP"), "VAE": (vae_node, "VAE")}
    ks = flow_graph(loaders, g, steps=4, cfg=1.0 + guidance, scheduler="linspace_diffusers")
    ours, model = run_latents(g, ks, tmp_path)
    assert model.family == "z_image"
    _close(ours, model, z_image_reference(transformer, vae, qwen, 4, guidance))


# --------------------------------------------------------------------------------------------
# Whole diffusers pipeline folders through Load Checkpoint
# --------------------------------------------------------------------------------------------


def test_diffusers_folders_load_through_load_checkpoint(models: Path, tmp_path: Path) -> None:
    """``FluxPipeline.save_pretrained`` / ``StableDiffusion3Pipeline.save_pretrained`` folders (what a
    Hugging Face download is) in models/checkpoints: Load Checkpoint gives MODEL, CLIP and VAE that
    reproduce the pipeline that wrote them."""
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    ckpt = tf.write_sd35_all_in_one(tmp_path / "unused_sd3.safetensors", seed=5)
    sd3 = StableDiffusion3Pipeline(
        transformer=ckpt.transformer, scheduler=scheduler_for("sd3.5_medium"), vae=ckpt.vae,
        text_encoder=ckpt.clip_l, tokenizer=build_clip_tokenizer(), text_encoder_2=ckpt.clip_g,
        tokenizer_2=build_clip_tokenizer(pad_token="!"), text_encoder_3=ckpt.t5, tokenizer_3=build_t5_tokenizer(),
    )  # fmt: skip
    sd3.save_pretrained(models / "checkpoints" / "sd3.5-medium-diffusers")
    transformer, vae = tf.tiny_flux(12), tf.tiny_vae16(13)
    clip_l, t5 = tf.tiny_flux_text_encoders(14)
    flux = FluxPipeline(
        scheduler=scheduler_for("flux1_dev"), vae=vae, text_encoder=clip_l.text_model, tokenizer=build_clip_tokenizer(),
        text_encoder_2=t5, tokenizer_2=build_t5_tokenizer(), transformer=transformer,
    )  # fmt: skip
    flux.save_pretrained(models / "checkpoints" / "FLUX.1-dev")

    g = Graph()
    loader = g.add_node("CheckpointLoaderSimple", {"ckpt_name": "sd3.5-medium-diffusers"}).id
    ks = flow_graph({k: (loader, k) for k in ("MODEL", "CLIP", "VAE")}, g, steps=3, cfg=4.5, scheduler="normal")
    ours, model = run_latents(g, ks, tmp_path / "sd3")
    _close(ours, model, sd3_reference(ckpt, 3, 4.5))

    g = Graph()
    loader = g.add_node("CheckpointLoaderSimple", {"ckpt_name": "FLUX.1-dev"}).id
    sampling = ("ModelSamplingFlux", {"width": W, "height": H, "max_shift": 1.15, "base_shift": 0.5})
    loaders = {k: (loader, k) for k in ("MODEL", "CLIP", "VAE")}
    ks = flow_graph(loaders, g, steps=3, cfg=1.0, scheduler="linspace_diffusers", model_sampling=sampling)
    ours, model = run_latents(g, ks, tmp_path / "flux")
    _close(ours, model, flux_reference(transformer, vae, clip_l, t5, 3, dev=True))
