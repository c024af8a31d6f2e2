"""FLUX.1 and SD3 ControlNets through sdgraph's graph against diffusers' ControlNet pipelines.

The graph is the one of ``test_flow_pipeline_parity`` with Load ControlNet Model + Load Image + Apply
ControlNet (its ``vae`` input connected: these ControlNets take the control image VAE-encoded) between
the prompts and the KSampler. The oracle is ``FluxControlNetPipeline`` / ``StableDiffusion3ControlNetPipeline``
built from the very modules the files were written from, with the same seed and sigmas; final latents
agree to 1e-4. The ControlNets are tiny seeded copies of the tiny transformers
(``tests/support/tiny_flow_controlnet.py``), written as diffusers-layout single files and as folders.

One difference is bridged in the oracle: the pipelines *sample* the VAE posterior of the control image
(FLUX with the run's generator, before drawing the start noise), while ComfyUI and sdgraph encode with its
mean, so the same image always gives the same control. The oracle runs with the posterior's ``sample``
returning its mean (``deterministic_vae`` below); everything else is the pipelines' own code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from graph_engine import Executor, Graph, ResultCache, make_plan
from nodes import builtin_registry
from nodes.folders import input_dir
from tests.nodes.dit.test_flow_pipeline_parity import PROMPT, SEED, TOL, H, W, run_latents, scheduler_for
from tests.support import tiny_flow as tf
from tests.support import tiny_flow_controlnet as tfc

FLUX_SAMPLING = ("ModelSamplingFlux", {"width": W, "height": H, "max_shift": 1.15, "base_shift": 0.5})


@pytest.fixture
def models(tmp_path: Path) -> Iterator[Path]:
    import nodes.folders

    root = tmp_path / "models"
    for kind in ("checkpoints", "diffusion_models", "text_encoders", "vae", "controlnet"):
        (root / kind).mkdir(parents=True)
    nodes.folders.configure(extra_roots=[str(root)])
    yield root
    nodes.folders.configure()


@pytest.fixture
def deterministic_vae(monkeypatch: pytest.MonkeyPatch) -> None:
    """The VAE posterior's ``sample`` gives its mean (see the module docstring)."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mode())


def control_png(name: str, seed: int = 0, size: tuple[int, int] = (W, H)) -> Image.Image:
    """A blocky random picture (edges everywhere, like a real control map) saved in the input folder."""
    rng = np.random.default_rng(seed)
    w, h = size
    blocks = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(np.ascontiguousarray(blocks.repeat(8, 0).repeat(8, 1)[:h, :w]), "RGB")
    input_dir().mkdir(parents=True, exist_ok=True)
    img.save(input_dir() / name)
    return img


def write_controlnet(net: Any, models: Path, layout: str, name: str) -> str:
    if layout == "single_file":
        tfc.write_single_file(net, models / "controlnet" / f"{name}.safetensors")
        return f"{name}.safetensors"
    tfc.write_folder(net, models / "controlnet" / name)
    return name


def controlnet_graph(
    ckpt: str,
    controls: list[dict[str, Any]],
    *,
    steps: int,
    cfg: float,
    scheduler: str,
    sampling: Any = None,
    latent_type: str = "EmptySD3LatentImage",
) -> tuple[Graph, int]:
    """Load Checkpoint → Encode ×2 → Apply ControlNet per entry of ``controls`` (chained) → KSampler; an
    entry with ``union_type`` gets SetUnionControlNetType between its loader and Apply ControlNet."""
    g = Graph()
    ckpt_id = g.add_node("CheckpointLoaderSimple", {"ckpt_name": ckpt}).id
    pos_id = g.add_node("CLIPTextEncode", {"text": PROMPT}).id
    neg_id = g.add_node("CLIPTextEncode", {"text": ""}).id
    for n in (pos_id, neg_id):
        g.add_link(ckpt_id, "CLIP", n, "clip", "CLIP")
    pos, neg = (pos_id, "CONDITIONING"), (neg_id, "CONDITIONING")
    for c in controls:
        loader = g.add_node("ControlNetLoader", {"control_net_name": c["name"]}).id
        if "union_type" in c:
            typed = g.add_node("SetUnionControlNetType", {"type": c["union_type"]}).id
            g.add_link(loader, "CONTROL_NET", typed, "control_net", "CONTROL_NET")
            loader = typed
        image = g.add_node("LoadImage", {"image": c["image"]}).id
        values = {k: c[k] for k in ("strength", "start_percent", "end_percent") if k in c}
        apply = g.add_node(c.get("type", "ControlNetApplyAdvanced"), values).id
        g.add_link(pos[0], pos[1], apply, "positive", "CONDITIONING")
        g.add_link(neg[0], neg[1], apply, "negative", "CONDITIONING")
        g.add_link(loader, "CONTROL_NET", apply, "control_net", "CONTROL_NET")
        g.add_link(image, "IMAGE", apply, "image", "IMAGE")
        if c.get("vae", True):
            g.add_link(ckpt_id, "VAE", apply, "vae", "VAE")
        pos, neg = (apply, "positive"), (apply, "negative")
    model = (ckpt_id, "MODEL")
    if sampling is not None:
        ms = g.add_node(sampling[0], sampling[1]).id
        g.add_link(ckpt_id, "MODEL", ms, "model", "MODEL")
        model = (ms, "MODEL")
    latent = g.add_node(latent_type, {"width": W, "height": H, "batch_size": 1}).id
    ks = g.add_node(
        "KSampler",
        {"seed": SEED, "steps": steps, "cfg": cfg, "sampler_name": "euler", "scheduler": scheduler, "denoise": 1.0},
    ).id
    g.add_link(model[0], "MODEL", ks, "model", "MODEL")
    g.add_link(pos[0], pos[1], ks, "positive", "CONDITIONING")
    g.add_link(neg[0], neg[1], ks, "negative", "CONDITIONING")
    g.add_link(latent, "LATENT", ks, "latent_image", "LATENT")
    dec = g.add_node("VAEDecode").id
    g.add_link(ks, "LATENT", dec, "samples", "LATENT")
    g.add_link(ckpt_id, "VAE", dec, "vae", "VAE")
    out = g.add_node("PreviewImage").id
    g.add_link(dec, "IMAGE", out, "images", "IMAGE")
    return g, ks


def run_error(g: Graph, ks: int, tmp_path: Path) -> Any:
    registry = builtin_registry()
    result = Executor(registry, output_dir=tmp_path, cache=ResultCache()).execute(make_plan(g, registry, [ks]))
    assert result.status != "done"
    return result.error


def assert_close(ours: torch.Tensor, model: Any, reference: torch.Tensor) -> float:
    ours = model.to_model_space(ours)
    assert ours.shape == reference.shape
    assert reference.abs().max() > 0.5
    diff = (ours - reference).abs().max().item()
    assert diff < TOL, f"max abs latent difference {diff:.2e}"
    return diff


# --------------------------------------------------------------------------------------------
# FLUX.1
# --------------------------------------------------------------------------------------------


def flux_reference(
    ckpt: Any,
    nets: list[Any],
    images: list[Image.Image],
    scales: list[float],
    steps: int,
    start: float = 0.0,
    mode: int | None = None,
) -> Any:
    from diffusers import FluxControlNetPipeline, FluxMultiControlNetModel, FluxPipeline

    from nodes.diffusion.text.llm_vocab import build_t5_tokenizer
    from nodes.diffusion.text.vocab import build_clip_tokenizer

    pipe = FluxControlNetPipeline(
        scheduler=scheduler_for("flux1_dev"),
        vae=ckpt.vae,
        text_encoder=ckpt.clip_l.text_model,
        tokenizer=build_clip_tokenizer(),
        text_encoder_2=ckpt.t5,
        tokenizer_2=build_t5_tokenizer(),
        transformer=ckpt.transformer,
        controlnet=nets[0] if len(nets) == 1 else FluxMultiControlNetModel(nets),
    )
    pipe.set_progress_bar_config(disable=True)
    packed = pipe(
        prompt=PROMPT,
        control_image=images[0] if len(images) == 1 else images,
        controlnet_conditioning_scale=scales[0] if len(scales) == 1 else scales,
        control_guidance_start=start,
        control_mode=mode,
        height=H,
        width=W,
        num_inference_steps=steps,
        guidance_scale=3.5,
        generator=torch.Generator().manual_seed(SEED),
        output_type="latent",
        max_sequence_length=512,
    ).images
    return FluxPipeline._unpack_latents(packed, H, W, 8)


@pytest.fixture(scope="module")
def flux_nets() -> tuple[Any, list[Any]]:
    transformer = tf.tiny_flux(3, guidance=True)
    return transformer, [tfc.tiny_flux_controlnet(transformer, seed=21), tfc.tiny_flux_controlnet(transformer, seed=22)]


def _flux_ckpt(models: Path, transformer: Any) -> Any:
    """The all-in-one tiny FLUX.1-dev checkpoint whose transformer the ControlNets were made from."""
    ckpt = tf.write_flux_all_in_one(models / "checkpoints" / "flux1-dev-tiny.safetensors", seed=3)
    assert torch.equal(ckpt.transformer.x_embedder.weight, transformer.x_embedder.weight)
    return ckpt


@pytest.mark.parametrize("layout", ["single_file", "folder"])
def test_flux_controlnet_matches_flux_controlnet_pipeline(
    models: Path, tmp_path: Path, flux_nets: Any, deterministic_vae: None, layout: str
) -> None:
    transformer, nets = flux_nets
    ckpt = _flux_ckpt(models, transformer)
    name = write_controlnet(nets[0], models, layout, "flux-canny")
    image = control_png("control.png")
    g, ks = controlnet_graph(
        "flux1-dev-tiny.safetensors",
        [{"name": name, "image": "control.png", "strength": 0.8}],
        steps=3,
        cfg=1.0,
        scheduler="linspace_diffusers",
        sampling=FLUX_SAMPLING,
    )
    ours, model = run_latents(g, ks, tmp_path)
    with torch.no_grad():
        theirs = flux_reference(ckpt, nets[:1], [image], [0.8], 3)
        plain = flux_reference(ckpt, nets[:1], [image], [0.0], 3)
    diff = assert_close(ours, model, theirs)
    assert (theirs - plain).abs().max() > 1e-2, "the tiny ControlNet does not change the result"
    print(f"FLUX ControlNet ({layout}): max |Δ| = {diff:.2e}")


def test_two_stacked_flux_controlnets_match_multi_controlnet(
    models: Path, tmp_path: Path, flux_nets: Any, deterministic_vae: None
) -> None:
    transformer, nets = flux_nets
    ckpt = _flux_ckpt(models, transformer)
    first = write_controlnet(nets[0], models, "single_file", "flux-a")
    second = write_controlnet(nets[1], models, "folder", "flux-b")
    images = [control_png("a.png", seed=2), control_png("b.png", seed=3)]
    controls = [
        {"name": first, "image": "a.png", "strength": 0.7},
        {"name": second, "image": "b.png", "strength": 1.2},
    ]
    g, ks = controlnet_graph(
        "flux1-dev-tiny.safetensors", controls, steps=3, cfg=1.0, scheduler="linspace_diffusers", sampling=FLUX_SAMPLING
    )
    ours, model = run_latents(g, ks, tmp_path)
    with torch.no_grad():
        theirs = flux_reference(ckpt, nets, images, [0.7, 1.2], 3)
        only_first = flux_reference(ckpt, nets[:1], images[:1], [0.7], 3)
    diff = assert_close(ours, model, theirs)
    assert (theirs - only_first).abs().max() > 1e-2, "the second ControlNet changed nothing"
    print(f"two FLUX ControlNets: max |Δ| = {diff:.2e}")


def test_flux_start_percent_matches_control_guidance_start(
    models: Path, tmp_path: Path, flux_nets: Any, deterministic_vae: None
) -> None:
    """start_percent 0.4 of 4 steps: ComfyUI's σ range (σ ≤ σ(0.4)) and the pipeline's step fractions
    (i/4 ≥ 0.4) both leave the first two steps without control. (end_percent differs by design: ComfyUI
    keeps a step whose σ is in the range, the pipeline one whose *next* fraction is, so it is not compared.)"""
    transformer, nets = flux_nets
    ckpt = _flux_ckpt(models, transformer)
    name = write_controlnet(nets[0], models, "single_file", "flux-canny")
    image = control_png("control.png")
    controls = [{"name": name, "image": "control.png", "start_percent": 0.4}]
    g, ks = controlnet_graph(
        "flux1-dev-tiny.safetensors", controls, steps=4, cfg=1.0, scheduler="linspace_diffusers", sampling=FLUX_SAMPLING
    )
    ours, model = run_latents(g, ks, tmp_path)
    with torch.no_grad():
        theirs = flux_reference(ckpt, nets[:1], [image], [1.0], 4, start=0.4)
        whole = flux_reference(ckpt, nets[:1], [image], [1.0], 4)
    diff = assert_close(ours, model, theirs)
    assert (theirs - whole).abs().max() > 1e-2, "starting later changed nothing"
    print(f"FLUX ControlNet from 40%: max |Δ| = {diff:.2e}")


FLUX_UNION_MODES = 10  # InstantX's FLUX.1-dev-Controlnet-Union (and Shakker Labs' Union Pro)


@pytest.fixture(scope="module")
def flux_union(flux_nets: tuple[Any, list[Any]]) -> Any:
    return tfc.tiny_flux_controlnet(flux_nets[0], seed=23, num_mode=FLUX_UNION_MODES)


@pytest.mark.parametrize(
    ("layout", "union_type"), [("single_file", "canny/lineart/anime_lineart/mlsd"), ("folder", "openpose")]
)
def test_flux_union_controlnet_matches_pipeline_control_mode(
    models: Path,
    tmp_path: Path,
    flux_nets: Any,
    flux_union: Any,
    deterministic_vae: None,
    layout: str,
    union_type: str,
) -> None:
    """SetUnionControlNetType's type reaches the FLUX.1 union as ComfyUI passes it: its index in the node's
    list (canny/lineart… is 3, which InstantX's own order calls blur), as ``control_mode``."""
    from nodes.diffusion.controlnet import UNION_TYPE_INDEX

    transformer, _ = flux_nets
    ckpt = _flux_ckpt(models, transformer)
    name = write_controlnet(flux_union, models, layout, "flux-union")
    image = control_png("control.png", seed=8)
    controls = [{"name": name, "image": "control.png", "strength": 0.9, "union_type": union_type}]
    g, ks = controlnet_graph(
        "flux1-dev-tiny.safetensors", controls, steps=3, cfg=1.0, scheduler="linspace_diffusers", sampling=FLUX_SAMPLING
    )
    ours, model = run_latents(g, ks, tmp_path)
    mode = UNION_TYPE_INDEX[union_type]
    with torch.no_grad():
        theirs = flux_reference(ckpt, [flux_union], [image], [0.9], 3, mode=mode)
        other = flux_reference(ckpt, [flux_union], [image], [0.9], 3, mode=mode + 1)
    diff = assert_close(ours, model, theirs)
    assert (theirs - other).abs().max() > 1e-3, "the control mode does not change the result"
    print(f"FLUX union {union_type} ({layout}): max |Δ| = {diff:.2e}")


def test_flux_union_controlnet_on_auto_runs_without_a_mode(
    models: Path, tmp_path: Path, flux_nets: Any, flux_union: Any, deterministic_vae: None
) -> None:
    """On "auto" ComfyUI runs a FLUX.1 union with no mode token: what a single-type FluxControlNetModel with
    the same weights (all but the mode embedder) gives in FluxControlNetPipeline."""
    from diffusers import FluxControlNetModel

    transformer, _ = flux_nets
    ckpt = _flux_ckpt(models, transformer)
    name = write_controlnet(flux_union, models, "single_file", "flux-union")
    image = control_png("control.png", seed=8)
    controls = [{"name": name, "image": "control.png", "union_type": "auto"}]
    g, ks = controlnet_graph(
        "flux1-dev-tiny.safetensors", controls, steps=3, cfg=1.0, scheduler="linspace_diffusers", sampling=FLUX_SAMPLING
    )
    ours, model = run_latents(g, ks, tmp_path)
    config = {k: v for k, v in flux_union.config.items() if not k.startswith("_")}
    single = FluxControlNetModel.from_config({**config, "num_mode": None})
    single.load_state_dict({k: v for k, v in flux_union.state_dict().items() if "mode_embedder" not in k})
    with torch.no_grad():
        theirs = flux_reference(ckpt, [single.eval()], [image], [1.0], 3)
        typed = flux_reference(ckpt, [flux_union], [image], [1.0], 3, mode=0)
    diff = assert_close(ours, model, theirs)
    assert (theirs - typed).abs().max() > 1e-3
    assert flux_union.union, "the auto run left the shared network without its mode"
    print(f"FLUX union auto: max |Δ| = {diff:.2e}")


def test_flux_controlnet_runs_only_in_its_part_of_the_schedule(models: Path, tmp_path: Path, flux_nets: Any) -> None:
    transformer, nets = flux_nets
    _flux_ckpt(models, transformer)
    name = write_controlnet(nets[0], models, "single_file", "flux-canny")
    control_png("control.png")
    args: dict[str, Any] = dict(steps=4, cfg=1.0, scheduler="linspace_diffusers", sampling=FLUX_SAMPLING)
    control = {"name": name, "image": "control.png"}
    none, _ = run_latents(*controlnet_graph("flux1-dev-tiny.safetensors", [], **args), tmp_path)
    never = {**control, "start_percent": 1.0, "end_percent": 1.0}  # σ from 0 to 0: no step
    never_out, _ = run_latents(*controlnet_graph("flux1-dev-tiny.safetensors", [never], **args), tmp_path)
    half, _ = run_latents(
        *controlnet_graph("flux1-dev-tiny.safetensors", [{**control, "end_percent": 0.5}], **args),
        tmp_path,
    )
    full, _ = run_latents(*controlnet_graph("flux1-dev-tiny.safetensors", [control], **args), tmp_path)
    assert torch.equal(never_out, none)
    assert (half - none).abs().max() > 1e-3 and (half - full).abs().max() > 1e-3


# --------------------------------------------------------------------------------------------
# SD3
# --------------------------------------------------------------------------------------------


def sd3_reference(ckpt: Any, nets: list[Any], images: list[Image.Image], scales: list[float], steps: int) -> Any:
    from diffusers import SD3MultiControlNetModel, StableDiffusion3ControlNetPipeline

    from nodes.diffusion.text.llm_vocab import build_t5_tokenizer
    from nodes.diffusion.text.vocab import build_clip_tokenizer

    pipe = StableDiffusion3ControlNetPipeline(
        transformer=ckpt.transformer,
        scheduler=scheduler_for("sd3.5_medium"),
        vae=ckpt.vae,
        text_encoder=ckpt.clip_l,
        tokenizer=build_clip_tokenizer(),
        text_encoder_2=ckpt.clip_g,
        tokenizer_2=build_clip_tokenizer(pad_token="!"),
        text_encoder_3=ckpt.t5,
        tokenizer_3=build_t5_tokenizer(),
        controlnet=nets[0] if len(nets) == 1 else SD3MultiControlNetModel(nets),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        prompt=PROMPT,
        negative_prompt="",
        control_image=images[0] if len(images) == 1 else images,
        controlnet_conditioning_scale=scales[0] if len(scales) == 1 else scales,
        height=H,
        width=W,
        num_inference_steps=steps,
        guidance_scale=4.5,
        generator=torch.Generator().manual_seed(SEED),
        output_type="latent",
    ).images


@pytest.mark.parametrize("layout", ["single_file", "folder"])
def test_sd3_controlnet_matches_sd3_controlnet_pipeline(
    models: Path, tmp_path: Path, deterministic_vae: None, layout: str
) -> None:
    """SD3.5-Medium-style tiny checkpoint (MMDiT-X block, q/k norms) and an InstantX-style ControlNet
    (joint blocks, zeroed pooled text, no VAE shift on the control latent), real CFG with an empty negative."""
    ckpt = tf.write_sd35_all_in_one(models / "checkpoints" / "sd3.5_medium_tiny.safetensors", seed=2)
    net = tfc.tiny_sd3_controlnet(ckpt.transformer, seed=31)
    name = write_controlnet(net, models, layout, "sd3-canny")
    image = control_png("control.png", seed=4)
    g, ks = controlnet_graph(
        "sd3.5_medium_tiny.safetensors",
        [{"name": name, "image": "control.png", "strength": 0.9, "type": "ControlNetApplySD3"}],
        steps=3,
        cfg=4.5,
        scheduler="normal",
    )
    ours, model = run_latents(g, ks, tmp_path)
    with torch.no_grad():
        theirs = sd3_reference(ckpt, [net], [image], [0.9], 3)
        plain = sd3_reference(ckpt, [net], [image], [0.0], 3)
    diff = assert_close(ours, model, theirs)
    assert (theirs - plain).abs().max() > 1e-2, "the tiny ControlNet does not change the result"
    print(f"SD3 ControlNet ({layout}): max |Δ| = {diff:.2e}")


def test_two_stacked_sd3_controlnets_match_multi_controlnet(
    models: Path, tmp_path: Path, deterministic_vae: None
) -> None:
    ckpt = tf.write_sd35_all_in_one(models / "checkpoints" / "sd3.5_medium_tiny.safetensors", seed=2)
    nets = [tfc.tiny_sd3_controlnet(ckpt.transformer, seed=s) for s in (31, 32)]
    names = [
        write_controlnet(nets[0], models, "single_file", "sd3-a"),
        write_controlnet(nets[1], models, "folder", "sd3-b"),
    ]
    images = [control_png("a.png", seed=6), control_png("b.png", seed=7)]
    controls = [
        {"name": names[0], "image": "a.png", "strength": 0.6},
        {"name": names[1], "image": "b.png", "strength": 1.1},
    ]
    g, ks = controlnet_graph("sd3.5_medium_tiny.safetensors", controls, steps=3, cfg=4.5, scheduler="normal")
    ours, model = run_latents(g, ks, tmp_path)
    with torch.no_grad():
        theirs = sd3_reference(ckpt, nets, images, [0.6, 1.1], 3)
        only_first = sd3_reference(ckpt, nets[:1], images[:1], [0.6], 3)
    diff = assert_close(ours, model, theirs)
    assert (theirs - only_first).abs().max() > 1e-2, "the second ControlNet changed nothing"
    print(f"two SD3 ControlNets: max |Δ| = {diff:.2e}")


@pytest.mark.parametrize("layout", ["original", "folder"])
def test_sd35_large_style_controlnet_matches_sd3_controlnet_pipeline(
    models: Path, tmp_path: Path, deterministic_vae: None, layout: str
) -> None:
    """A ControlNet built as Stability's SD3.5 Large ones (plain blocks without text, the transformer's
    patch embedder, pooled vector kept, VAE shift applied), in Stability's original single-file layout
    (fused qkv, ``mlp.fc1``; converted on load) and as a diffusers folder."""
    ckpt = tf.write_sd35_all_in_one(models / "checkpoints" / "sd3.5_medium_tiny.safetensors", seed=2)
    net = tfc.tiny_sd35_large_controlnet(seed=33)
    if layout == "original":
        name = "sd3.5_large_controlnet_canny.safetensors"
        tf.write_file(models / "controlnet" / name, tfc.sd35_controlnet_to_original(net))
    else:
        name = write_controlnet(net, models, "folder", "sd35-canny")
    image = control_png("control.png", seed=5)
    g, ks = controlnet_graph(
        "sd3.5_medium_tiny.safetensors",
        [{"name": name, "image": "control.png", "strength": 0.8}],
        steps=3,
        cfg=4.5,
        scheduler="normal",
    )
    ours, model = run_latents(g, ks, tmp_path)
    with torch.no_grad():
        theirs = sd3_reference(ckpt, [net], [image], [0.8], 3)
        plain = sd3_reference(ckpt, [net], [image], [0.0], 3)
    diff = assert_close(ours, model, theirs)
    assert (theirs - plain).abs().max() > 1e-2, "the tiny ControlNet does not change the result"
    print(f"SD3.5-Large-style ControlNet ({layout}): max |Δ| = {diff:.2e}")


# --------------------------------------------------------------------------------------------
# Wrong family, missing VAE, files that cannot run
# --------------------------------------------------------------------------------------------


def test_sd1_controlnet_on_flux_and_flux_controlnet_on_sd1_are_one_clear_error(
    models: Path, tmp_path: Path, flux_nets: Any
) -> None:
    from tests.support.tiny_controlnet import build_tiny_controlnet, write_controlnet_single_file
    from tests.support.tiny_sd import build_tiny_models
    from tests.support.tiny_sd import write_single_file as write_sd

    transformer, nets = flux_nets
    _flux_ckpt(models, transformer)
    sd1 = build_tiny_models("sd1", seed=3)
    write_sd(sd1, models / "checkpoints" / "tiny_sd1.safetensors")
    write_controlnet_single_file(
        build_tiny_controlnet(sd1.unet, seed=5), models / "controlnet" / "sd15_canny.safetensors"
    )
    flux_name = write_controlnet(nets[0], models, "single_file", "flux-canny")
    control_png("control.png")
    args: dict[str, Any] = dict(steps=1, cfg=1.0, scheduler="linspace_diffusers")

    g, ks = controlnet_graph(
        "flux1-dev-tiny.safetensors", [{"name": "sd15_canny.safetensors", "image": "control.png"}], **args
    )
    error = run_error(g, ks, tmp_path)
    assert error.type == "KSampler" and error.input == "positive"
    assert "sd15_canny.safetensors is for Stable Diffusion 1.x but the model is FLUX.1" in error.message
    assert "Traceback" not in error.message

    controls = [{"name": flux_name, "image": "control.png"}]
    g, ks = controlnet_graph("tiny_sd1.safetensors", controls, latent_type="EmptyLatentImage", **args)
    error = run_error(g, ks, tmp_path)
    assert error.type == "KSampler" and error.input == "positive"
    assert "flux-canny.safetensors is for FLUX.1 but the model is Stable Diffusion 1.x" in error.message


def test_flux_controlnet_without_vae_names_the_vae_input(models: Path, tmp_path: Path, flux_nets: Any) -> None:
    transformer, nets = flux_nets
    _flux_ckpt(models, transformer)
    name = write_controlnet(nets[0], models, "single_file", "flux-canny")
    control_png("control.png")
    controls = [{"name": name, "image": "control.png", "vae": False}]
    g, ks = controlnet_graph("flux1-dev-tiny.safetensors", controls, steps=1, cfg=1.0, scheduler="linspace_diffusers")
    error = run_error(g, ks, tmp_path)
    assert error.type == "ControlNetApplyAdvanced" and error.input == "vae"
    assert "flux-canny.safetensors" in error.message and "VAE" in error.message


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"controlnet_blocks.0.weight": (4, 4), "double_blocks.0.img_attn.qkv.weight": (12, 4)}, "XLabs"),
        (
            {"controlnet_blocks.0.weight": (64, 64), "pos_embed_input.proj.weight": (64, 17, 2, 2),
             "pos_embed.proj.weight": (64, 16, 2, 2)},
            "inpainting",
        ),
        ({"control_all_x_embedder.2-1.weight": (4, 4), "control_layers.0.after_proj.weight": (4, 4)}, "Z-Image"),
    ],
)  # fmt: skip
def test_transformer_controlnets_sdgraph_cannot_run_are_named(
    models: Path, keys: dict[str, tuple[int, ...]], expected: str
) -> None:
    from graph_engine import ExecutionContext, InputError
    from nodes.controlnet import controlnet_loader
    from nodes.diffusion.checkpoint.ldm_layout import save_state_dict

    save_state_dict(models / "controlnet" / "odd.safetensors", {k: torch.zeros(s) for k, s in keys.items()})
    with pytest.raises(InputError) as info:
        controlnet_loader.execute(ExecutionContext(node_id=1, title="t"), control_net_name="odd.safetensors")
    assert info.value.input_id == "control_net_name"
    assert "odd.safetensors" in info.value.message and expected in info.value.message


def test_models_panel_names_the_family_of_transformer_controlnets(models: Path, flux_nets: Any) -> None:
    from nodes.diffusion.model_paths import ModelFolders
    from nodes.model_catalog import list_files, probe

    _, nets = flux_nets
    write_controlnet(nets[0], models, "single_file", "flux-canny")
    sd3 = tfc.tiny_sd3_controlnet(tf.tiny_sd3(2), seed=31)
    write_controlnet(sd3, models, "folder", "sd3-canny")
    folders = ModelFolders()
    folders.add_root(models)
    files = {f.name: f for f in list_files(folders)["controlnet"]}
    assert probe(files["flux-canny.safetensors"]).family == "FLUX.1 ControlNet"
    assert probe(files["sd3-canny"]).family == "Stable Diffusion 3 / 3.5 ControlNet"


def test_the_old_apply_node_refuses_a_transformer_controlnet_and_names_the_node_to_use() -> None:
    """Apply ControlNet (OLD) has no vae input, which a FLUX.1/SD3 ControlNet needs for its control image."""
    from graph_engine import ExecutionContext, InputError
    from nodes.controlnet import controlnet_apply
    from nodes.diffusion.controlnet import ControlNet

    net = ControlNet(model=None, family="sd3", source="sd3-canny.safetensors")
    with pytest.raises(InputError) as info:
        controlnet_apply.execute(
            ExecutionContext(node_id=1, title="t"),
            conditioning=[],
            control_net=net,
            image=torch.zeros(1, 8, 8, 3),
            strength=1.0,
        )
    assert info.value.input_id == "control_net"
    assert "sd3-canny.safetensors" in info.value.message and "ControlNetApplyAdvanced" in info.value.message


# --------------------------------------------------------------------------------------------
# Z-Image-Turbo Fun ControlNets
# --------------------------------------------------------------------------------------------


def z_image_graph(controls: list[dict[str, Any]], steps: int) -> tuple[Graph, int]:
    """UNETLoader + CLIPLoader (lumina2) + VAELoader → Encode ×2 → Apply ControlNet per entry → KSampler."""
    g = Graph()
    unet = g.add_node("UNETLoader", {"unet_name": "z_image_turbo.safetensors", "weight_dtype": "default"}).id
    clip = g.add_node("CLIPLoader", {"clip_name": "qwen_3_4b.safetensors", "type": "lumina2"}).id
    vae = g.add_node("VAELoader", {"vae_name": "ae.safetensors"}).id
    pos = g.add_node("CLIPTextEncode", {"text": PROMPT}).id
    neg = g.add_node("CLIPTextEncode", {"text": ""}).id
    for n in (pos, neg):
        g.add_link(clip, "CLIP", n, "clip", "CLIP")
    ends = (pos, "CONDITIONING"), (neg, "CONDITIONING")
    for c in controls:
        loader = g.add_node("ControlNetLoader", {"control_net_name": c["name"]}).id
        image = g.add_node("LoadImage", {"image": c["image"]}).id
        apply = g.add_node("ControlNetApplyAdvanced", {"strength": c.get("strength", 1.0)}).id
        g.add_link(ends[0][0], ends[0][1], apply, "positive", "CONDITIONING")
        g.add_link(ends[1][0], ends[1][1], apply, "negative", "CONDITIONING")
        g.add_link(loader, "CONTROL_NET", apply, "control_net", "CONTROL_NET")
        g.add_link(image, "IMAGE", apply, "image", "IMAGE")
        g.add_link(vae, "VAE", apply, "vae", "VAE")
        ends = (apply, "positive"), (apply, "negative")
    latent = g.add_node("EmptySD3LatentImage", {"width": W, "height": H, "batch_size": 1}).id
    values = {"seed": SEED, "steps": steps, "cfg": 1.0, "sampler_name": "euler", "scheduler": "linspace_diffusers"}
    ks = g.add_node("KSampler", {**values, "denoise": 1.0}).id
    g.add_link(unet, "MODEL", ks, "model", "MODEL")
    g.add_link(ends[0][0], ends[0][1], ks, "positive", "CONDITIONING")
    g.add_link(ends[1][0], ends[1][1], ks, "negative", "CONDITIONING")
    g.add_link(latent, "LATENT", ks, "latent_image", "LATENT")
    dec = g.add_node("VAEDecode").id
    g.add_link(ks, "LATENT", dec, "samples", "LATENT")
    g.add_link(vae, "VAE", dec, "vae", "VAE")
    g.add_link(dec, "IMAGE", g.add_node("PreviewImage").id, "images", "IMAGE")
    return g, ks


def z_image_reference(transformer: Any, vae: Any, qwen: Any, net: Any, image: Image.Image, scale: float) -> Any:
    from diffusers import ZImageControlNetPipeline

    from nodes.diffusion.text.llm_vocab import build_qwen3_tokenizer

    pipe = ZImageControlNetPipeline(
        scheduler=scheduler_for("z_image_turbo"),
        vae=vae,
        text_encoder=qwen,
        tokenizer=build_qwen3_tokenizer(),
        transformer=transformer,
        controlnet=net,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        prompt=PROMPT,
        control_image=image,
        controlnet_conditioning_scale=scale,
        height=H,
        width=W,
        num_inference_steps=3,
        guidance_scale=0.0,
        generator=torch.Generator().manual_seed(SEED),
        output_type="latent",
    ).images


@pytest.mark.parametrize("layout", ["single_file_2.1", "single_file_2.0", "folder_1.0"])
def test_z_image_fun_controlnet_matches_z_image_controlnet_pipeline(models: Path, tmp_path: Path, layout: str) -> None:
    """A single file of the 2.x layout (15 control blocks feeding every second of 30 layers, 33 input
    channels: the mask and inpaint channels stay zero) takes its layer places from the shipped variants
    and its refiner variant from its weights (2.1: trained ``before_proj``; 2.0: none, its refiner weights
    unused); a 1.0-style folder (16 channels, plain refiner) carries its own config."""
    from diffusers import ZImageTransformer2DModel

    from nodes.diffusion.text.encoder_files import QWEN3
    from tests.support.tiny_text import save_encoder, tiny_encoder

    if layout == "folder_1.0":
        transformer = tf._build(ZImageTransformer2DModel, {**tf.tiny_z_image_config(), "n_refiner_layers": 2}, 8)
        net = tfc.tiny_z_image_controlnet(transformer, places=[0, 1], refiner_places=None, in_dim=16, refiner=None)
        name = write_controlnet(net, models, "folder", "z-image-fun-1.0")
    else:
        config = {**tf.tiny_z_image_config(), "n_layers": 30, "n_refiner_layers": 2}
        transformer = tf._build(ZImageTransformer2DModel, config, 8)
        refiner = "control_noise_refiner" if layout.endswith("2.1") else "control_layers"
        net = tfc.tiny_z_image_controlnet(
            transformer, places=list(range(0, 30, 2)), refiner_places=[0, 1], in_dim=33, refiner=refiner, seed=4
        )
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if refiner == "control_layers":  # 2.0 ships a refiner it was not trained with: zero before_proj
            state |= {
                f"control_noise_refiner.{i}.{k}": torch.zeros_like(v)
                for i in range(2)
                for k, v in net.control_layers[1].state_dict().items()
            }
            state |= {"control_noise_refiner.0.before_proj.weight": torch.zeros(64, 64)}
            state |= {"control_noise_refiner.0.before_proj.bias": torch.zeros(64)}
        name = "Z-Image-Turbo-Fun-Controlnet-Union.safetensors"
        tf.write_file(models / "controlnet" / name, state)
    vae = tf.tiny_vae16(9, "z_image")
    qwen = tiny_encoder(QWEN3, 10)
    tf.write_file(models / "diffusion_models" / "z_image_turbo.safetensors", tf.z_image_to_original(transformer))
    tf.write_file(models / "vae" / "ae.safetensors", tf.vae16_to_original(vae))
    save_encoder(qwen, QWEN3, models / "text_encoders" / "qwen_3_4b.safetensors")
    image = control_png("control.png", seed=9)
    g, ks = z_image_graph([{"name": name, "image": "control.png", "strength": 0.75}], steps=3)
    ours, model = run_latents(g, ks, tmp_path)
    with torch.no_grad():
        theirs = z_image_reference(transformer, vae, qwen, net, image, 0.75)
        plain = z_image_reference(transformer, vae, qwen, net, image, 0.0)
    diff = assert_close(ours, model, theirs)
    assert (theirs - plain).abs().max() > 1e-2, "the tiny ControlNet does not change the result"
    print(f"Z-Image Fun ControlNet ({layout}): max |Δ| = {diff:.2e}")


def test_z_image_fun_controlnet_with_an_unknown_layer_count_is_named(models: Path) -> None:
    from graph_engine import ExecutionContext, InputError
    from nodes.controlnet import controlnet_loader

    transformer = tf.tiny_z_image(8)
    net = tfc.tiny_z_image_controlnet(transformer, places=[0, 1], refiner_places=None, in_dim=16, refiner=None)
    tfc.write_single_file(net, models / "controlnet" / "z-fun-custom.safetensors")
    with pytest.raises(InputError) as info:
        controlnet_loader.execute(ExecutionContext(node_id=1, title="t"), control_net_name="z-fun-custom.safetensors")
    assert "z-fun-custom.safetensors" in info.value.message and "2 control layers" in info.value.message
