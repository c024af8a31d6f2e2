"""ControlNet through sdgraph's graph against diffusers' ControlNet pipelines on the same weights.

The graph is Load Checkpoint → Encode Prompt ×2 → Load ControlNet (+ Load Image) → Apply ControlNet →
KSampler (euler, linspace_diffusers) and the oracle diffusers' StableDiffusion(XL)ControlNetPipeline
built from the very models the files were written from; final latents must agree to 1e-4. The
ControlNets are tiny seeded copies of the tiny UNets (tests/support/tiny_controlnet.py), written in the
original single-file layout, as a diffusers-layout file and as a diffusers folder.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import nodes.folders
from graph_engine import Executor, Graph, InputError, ResultCache, make_plan
from graph_engine.events import NodeFinished
from nodes import builtin_registry
from nodes.folders import input_dir
from tests.support.tiny_controlnet import (
    build_tiny_controlnet,
    write_controlnet_diffusers_file,
    write_controlnet_folder,
    write_controlnet_single_file,
)
from tests.support.tiny_sd import build_tiny_models, write_single_file

PROMPT = "a red fox jumping over a lazy dog"
SEED = 1234
STEPS = 10  # as tests/nodes/test_pipeline_parity.py
CFG = 7.5
SIZE = 64


@pytest.fixture(scope="module")
def sd1():
    models = build_tiny_models("sd1", seed=3)
    return models, [build_tiny_controlnet(models.unet, seed=5), build_tiny_controlnet(models.unet, seed=6)]


@pytest.fixture(scope="module")
def sdxl():
    models = build_tiny_models("sdxl", seed=3)
    return models, [build_tiny_controlnet(models.unet, seed=7)]


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "models"
    for kind in ("checkpoints", "controlnet"):
        (root / kind).mkdir(parents=True)
    nodes.folders.configure(extra_roots=[str(root)])
    yield root
    nodes.folders.configure()


def control_png(name: str, size: tuple[int, int] = (SIZE, SIZE), seed: int = 0) -> Image.Image:
    """A blocky random picture (edges everywhere, like a real control map) saved in the input folder."""
    rng = np.random.default_rng(seed)
    w, h = size
    blocks = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    pixels = blocks.repeat(8, 0).repeat(8, 1)[:h, :w]
    img = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    input_dir().mkdir(parents=True, exist_ok=True)
    img.save(input_dir() / name)
    return img


def write_controlnet(net, root, layout: str, name: str) -> str:
    folder = root / "controlnet"
    if layout == "single_file":
        write_controlnet_single_file(net, folder / f"{name}.safetensors")
        return f"{name}.safetensors"
    if layout == "diffusers_file":
        write_controlnet_diffusers_file(net, folder / f"{name}.safetensors")
        return f"{name}.safetensors"
    write_controlnet_folder(net, folder / name)
    return name


def controlnet_graph(
    ckpt: str, controls: list[dict], *, negative: str | None = "", size: int = SIZE
) -> tuple[Graph, dict[str, int]]:
    """txt2img with one Apply ControlNet per entry of `controls` (each: name, image, strength, …), chained."""
    g = Graph()
    ids = {
        "ckpt": g.add_node("CheckpointLoaderSimple", {"ckpt_name": ckpt}).id,
        "pos": g.add_node("CLIPTextEncode", {"text": PROMPT}).id,
    }
    g.add_link(ids["ckpt"], "CLIP", ids["pos"], "clip", "CLIP")
    if negative is None:
        ids["neg"] = g.add_node("ConditioningZeroOut").id
        g.add_link(ids["pos"], "CONDITIONING", ids["neg"], "conditioning", "CONDITIONING")
    else:
        ids["neg"] = g.add_node("CLIPTextEncode", {"text": negative}).id
        g.add_link(ids["ckpt"], "CLIP", ids["neg"], "clip", "CLIP")
    pos, neg = (ids["pos"], "CONDITIONING"), (ids["neg"], "CONDITIONING")
    for i, c in enumerate(controls):
        loader = g.add_node("ControlNetLoader", {"control_net_name": c["name"]}).id
        image = g.add_node("LoadImage", {"image": c["image"]}).id
        values = {k: c[k] for k in ("strength", "start_percent", "end_percent") if k in c}
        apply = g.add_node("ControlNetApplyAdvanced", values).id
        g.add_link(pos[0], pos[1], apply, "positive", "CONDITIONING")
        g.add_link(neg[0], neg[1], apply, "negative", "CONDITIONING")
        g.add_link(loader, "CONTROL_NET", apply, "control_net", "CONTROL_NET")
        g.add_link(image, "IMAGE", apply, "image", "IMAGE")
        pos, neg = (apply, "positive"), (apply, "negative")
        ids[f"apply{i}"] = apply
    ids["empty"] = g.add_node("EmptyLatentImage", {"width": size, "height": size, "batch_size": 1}).id
    ks_values = dict(seed=SEED, steps=STEPS, cfg=CFG, sampler_name="euler", scheduler="linspace_diffusers")
    ids["ks"] = g.add_node("KSampler", ks_values).id
    g.add_link(ids["ckpt"], "MODEL", ids["ks"], "model", "MODEL")
    g.add_link(pos[0], pos[1], ids["ks"], "positive", "CONDITIONING")
    g.add_link(neg[0], neg[1], ids["ks"], "negative", "CONDITIONING")
    g.add_link(ids["empty"], "LATENT", ids["ks"], "latent_image", "LATENT")
    return g, ids


def run_latents(g: Graph, ids: dict[str, int], tmp_path) -> torch.Tensor:
    registry = builtin_registry()
    executor = Executor(registry, output_dir=tmp_path, cache=ResultCache())
    plan = make_plan(g, registry, targets=[ids["ks"]])
    found: list[torch.Tensor] = []

    def grab(event):
        if isinstance(event, NodeFinished) and event.node_id == ids["ks"]:
            (latent,) = executor.cache.get(executor.signatures(plan)[ids["ks"]]).outputs
            found.append(latent["samples"])

    result = executor.execute(plan, on_event=grab)
    assert result.status == "done", result.error
    return found[0]


def run_error(g: Graph, tmp_path):
    registry = builtin_registry()
    ks = max(n for n in g.nodes if g.nodes[n].type == "KSampler")
    result = Executor(registry, output_dir=tmp_path, cache=ResultCache()).execute(make_plan(g, registry, [ks]))
    assert result.status != "done"
    return result.error


def pipeline_latents(models, nets, images, *, scales=None, negative: str | None = "") -> torch.Tensor:
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionControlNetPipeline,
        StableDiffusionXLControlNetPipeline,
    )
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    from nodes.diffusion.text.vocab import build_clip_tokenizer

    scheduler = EulerDiscreteScheduler.from_config({**models.scheduler_config, "timestep_spacing": "linspace"})
    controlnet = nets[0] if len(nets) == 1 else MultiControlNetModel(nets)
    common = dict(
        num_inference_steps=STEPS,
        guidance_scale=CFG,
        generator=torch.Generator("cpu").manual_seed(SEED),
        output_type="latent",
        height=SIZE,
        width=SIZE,
        image=images[0] if len(images) == 1 else images,
        controlnet_conditioning_scale=(scales or [1.0] * len(nets))[0]
        if len(nets) == 1
        else (scales or [1.0] * len(nets)),
    )
    if models.family == "sdxl":
        pipe = StableDiffusionXLControlNetPipeline(
            vae=models.vae,
            text_encoder=models.text_encoders[0],
            text_encoder_2=models.text_encoders[1],
            tokenizer=build_clip_tokenizer(),
            tokenizer_2=build_clip_tokenizer(pad_token="!"),
            unet=models.unet,
            controlnet=controlnet,
            scheduler=scheduler,
            force_zeros_for_empty_prompt=True,
        )
        pipe.set_progress_bar_config(disable=True)
        out = pipe(prompt=PROMPT, **common).images
    else:
        pipe = StableDiffusionControlNetPipeline(
            vae=models.vae,
            text_encoder=models.text_encoders[0],
            tokenizer=build_clip_tokenizer(),
            unet=models.unet,
            controlnet=controlnet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.set_progress_bar_config(disable=True)
        out = pipe(prompt=PROMPT, negative_prompt=negative, **common).images
    return out / models.vae.config.scaling_factor


def assert_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape
    assert theirs.abs().max() > 0.5
    diff = (ours - theirs).abs().max().item()
    assert diff <= 1e-4, f"max abs latent difference {diff:.2e}"


@pytest.mark.parametrize("layout", ["single_file", "diffusers_file", "folder"])
def test_sd1_controlnet_matches_diffusers_pipeline(sd1, root, layout, tmp_path):
    models, nets = sd1
    write_single_file(models, root / "checkpoints" / "tiny.safetensors")
    name = write_controlnet(nets[0], root, layout, "cn")
    image = control_png("control.png")
    g, ids = controlnet_graph("tiny.safetensors", [{"name": name, "image": "control.png", "strength": 0.8}])
    ours = run_latents(g, ids, tmp_path)
    with torch.inference_mode():
        theirs = pipeline_latents(models, nets[:1], [image], scales=[0.8])
        plain = pipeline_latents(models, nets[:1], [image], scales=[0.0])
    assert_close(ours, theirs)
    assert (theirs - plain).abs().max() > 1e-2, "the tiny ControlNet does not change the result"


@pytest.mark.parametrize("layout", ["single_file", "folder"])
def test_sdxl_controlnet_matches_diffusers_pipeline(sdxl, root, layout, tmp_path):
    models, nets = sdxl
    write_single_file(models, root / "checkpoints" / "tiny_xl.safetensors")
    name = write_controlnet(nets[0], root, layout, "cn_xl")
    image = control_png("control.png", seed=1)
    g, ids = controlnet_graph("tiny_xl.safetensors", [{"name": name, "image": "control.png"}], negative=None)
    ours = run_latents(g, ids, tmp_path)
    with torch.inference_mode():
        theirs = pipeline_latents(models, nets, [image])
        plain = pipeline_latents(models, nets, [image], scales=[0.0])
    assert_close(ours, theirs)
    assert (theirs - plain).abs().max() > 1e-2


def test_two_stacked_controlnets_match_multicontrolnet(sd1, root, tmp_path):
    models, nets = sd1
    write_single_file(models, root / "checkpoints" / "tiny.safetensors")
    first = write_controlnet(nets[0], root, "single_file", "cn_a")
    second = write_controlnet(nets[1], root, "folder", "cn_b")
    images = [control_png("a.png", seed=2), control_png("b.png", seed=3)]
    controls = [
        {"name": first, "image": "a.png", "strength": 0.7},
        {"name": second, "image": "b.png", "strength": 1.2},
    ]
    g, ids = controlnet_graph("tiny.safetensors", controls)
    ours = run_latents(g, ids, tmp_path)
    with torch.inference_mode():
        theirs = pipeline_latents(models, nets, images, scales=[0.7, 1.2])
        only_first = pipeline_latents(models, nets[:1], images[:1], scales=[0.7])
    assert_close(ours, theirs)
    assert (theirs - only_first).abs().max() > 1e-2, "the second ControlNet changed nothing"


def test_end_percent_zero_is_no_control_and_a_partial_range_differs(sd1, root, tmp_path):
    models, nets = sd1
    write_single_file(models, root / "checkpoints" / "tiny.safetensors")
    name = write_controlnet(nets[0], root, "single_file", "cn")
    control_png("control.png")
    control = {"name": name, "image": "control.png"}
    none = run_latents(*controlnet_graph("tiny.safetensors", []), tmp_path)
    never = run_latents(*controlnet_graph("tiny.safetensors", [{**control, "end_percent": 0.0}]), tmp_path)
    half = run_latents(*controlnet_graph("tiny.safetensors", [{**control, "end_percent": 0.5}]), tmp_path)
    full = run_latents(*controlnet_graph("tiny.safetensors", [control]), tmp_path)
    assert torch.equal(never, none)
    assert (half - none).abs().max() > 1e-3 and (half - full).abs().max() > 1e-3


def test_control_image_of_another_size_is_resized(sd1, root, tmp_path):
    models, nets = sd1
    write_single_file(models, root / "checkpoints" / "tiny.safetensors")
    name = write_controlnet(nets[0], root, "single_file", "cn")
    control_png("wide.png", size=(96, 48))
    ours = run_latents(*controlnet_graph("tiny.safetensors", [{"name": name, "image": "wide.png"}]), tmp_path)
    none = run_latents(*controlnet_graph("tiny.safetensors", []), tmp_path)
    assert ours.shape == (1, 4, SIZE // 8, SIZE // 8) and torch.isfinite(ours).all()
    assert (ours - none).abs().max() > 1e-3


def test_sdxl_controlnet_on_sd1_model_is_one_clear_error(sd1, sdxl, root, tmp_path):
    models, _ = sd1
    write_single_file(models, root / "checkpoints" / "tiny.safetensors")
    name = write_controlnet(sdxl[1][0], root, "single_file", "cn_xl")
    control_png("control.png")
    g, _ = controlnet_graph("tiny.safetensors", [{"name": name, "image": "control.png"}])
    error = run_error(g, tmp_path)
    assert error.type == "KSampler" and error.input == "positive"
    assert "cn_xl.safetensors is for SDXL" in error.message and "Stable Diffusion 1.x" in error.message
    assert "Traceback" not in error.message


def test_diff_controlnet_loader_refuses_another_family(sd1, sdxl, root, tmp_path):
    write_single_file(sd1[0], root / "checkpoints" / "tiny.safetensors")
    name = write_controlnet(sdxl[1][0], root, "single_file", "cn_xl")
    g = Graph()
    ckpt = g.add_node("CheckpointLoaderSimple", {"ckpt_name": "tiny.safetensors"}).id
    loader = g.add_node("DiffControlNetLoader", {"control_net_name": name}).id
    g.add_link(ckpt, "MODEL", loader, "model", "MODEL")
    out = g.add_node("ControlNetApply", {"strength": 1.0}).id
    g.add_link(loader, "CONTROL_NET", out, "control_net", "CONTROL_NET")
    error = run_error_for(g, loader, tmp_path)
    assert error.input == "control_net_name" and "SDXL" in error.message


def run_error_for(g: Graph, node_id: int, tmp_path):
    registry = builtin_registry()
    plan = make_plan(g, registry, targets=[node_id])
    result = Executor(registry, output_dir=tmp_path, cache=ResultCache()).execute(plan)
    assert result.status != "done"
    assert result.error.node_id == node_id
    return result.error


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"lora_unet_down.lora_up.weight": (4, 4)}, "LoRA"),
        ({"model.diffusion_model.input_blocks.0.0.weight": (32, 4, 3, 3)}, "whole checkpoint"),
        ({"control_add_embedding.linear_1.weight": (4, 4), "task_embedding": (8, 4)}, "Union"),
        ({"something.weight": (4,)}, "not a ControlNet"),
    ],
)
def test_files_that_are_not_controlnets_are_named(root, keys, expected):
    from graph_engine import ExecutionContext
    from nodes.controlnet import controlnet_loader
    from nodes.diffusion.checkpoint.ldm_layout import save_state_dict

    save_state_dict(root / "controlnet" / "odd.safetensors", {k: torch.zeros(s) for k, s in keys.items()})
    with pytest.raises(InputError) as info:
        controlnet_loader.execute(ExecutionContext(node_id=1, title="t"), control_net_name="odd.safetensors")
    assert info.value.input_id == "control_net_name" and expected in info.value.message


def test_canny_finds_the_edges_of_a_square():
    from graph_engine import ExecutionContext
    from nodes.controlnet import canny

    image = torch.zeros(1, 64, 64, 3)
    image[:, 16:48, 16:48, :] = 1.0
    (edges,) = canny.execute(ExecutionContext(node_id=1, title="t"), image=image, low_threshold=0.4, high_threshold=0.8)
    assert edges.shape == image.shape and set(edges.unique().tolist()) == {0.0, 1.0}
    on = edges[0, ..., 0] > 0
    assert on[15:17, 20:44].any(dim=0).all() and on[47:49, 20:44].any(dim=0).all()  # top and bottom sides
    assert not on[24:40, 24:40].any() and not on[:8].any()  # nothing inside or far outside
    faint = image * 0.05  # its sharpest gradient is about 0.16
    (none,) = canny.execute(ExecutionContext(node_id=1, title="t"), image=faint, low_threshold=0.4, high_threshold=0.8)
    assert not none.any(), "a faint square is below the thresholds"


def test_controlnet_steers_an_inpainting_model(tiny_models, tmp_path):
    """An inpainting UNet takes 9 input channels; its ControlNet (a copy of the 4-channel encoder, as the
    SD1.5 ControlNets used with inpainting checkpoints are) gets the noisy latent alone."""
    from tests.support.model_root import TINY_CONTROLNET, TINY_NAMES

    control_png("control.png")
    ckpt = TINY_NAMES["sd1_inpaint"]
    steered = run_latents(*controlnet_graph(ckpt, [{"name": TINY_CONTROLNET, "image": "control.png"}]), tmp_path)
    plain = run_latents(*controlnet_graph(ckpt, []), tmp_path)
    assert torch.isfinite(steered).all() and (steered - plain).abs().max() > 1e-3


def test_controlnet_is_loaded_once_through_the_model_manager(sd1, root):
    from graph_engine import ExecutionContext
    from nodes.controlnet import controlnet_loader
    from nodes.diffusion.runtime import manager

    name = write_controlnet(sd1[1][0], root, "single_file", "cached")
    ctx = ExecutionContext(node_id=1, title="t")
    loads = manager().loads
    (first,) = controlnet_loader.execute(ctx, control_net_name=name)
    (second,) = controlnet_loader.execute(ctx, control_net_name=name)
    assert first.model is second.model and manager().loads == loads + 1
    assert first.family == "sd1" and first.source == name


def test_models_panel_lists_controlnets_with_their_family(sd1, sdxl, root):
    from nodes.diffusion.model_paths import ModelFolders
    from nodes.model_catalog import list_files, loader_for, probe

    write_controlnet(sd1[1][0], root, "single_file", "canny_sd15")
    write_controlnet(sdxl[1][0], root, "folder", "depth_xl")
    folders = ModelFolders()
    folders.add_root(root)
    files = {f.name: f for f in list_files(folders)["controlnet"]}
    assert set(files) == {"canny_sd15.safetensors", "depth_xl"}
    assert probe(files["canny_sd15.safetensors"]).family == "Stable Diffusion 1.x ControlNet"
    assert probe(files["depth_xl"]).family.startswith("SDXL") and files["depth_xl"].format == "diffusers"
    assert loader_for(files["depth_xl"]) == ("ControlNetLoader", {"control_net_name": "depth_xl"})


def test_a_control_image_that_is_not_an_image_is_named(sd1, root, tmp_path):
    write_single_file(sd1[0], root / "checkpoints" / "tiny.safetensors")
    name = write_controlnet(sd1[1][0], root, "single_file", "cn")
    input_dir().mkdir(parents=True, exist_ok=True)
    (input_dir() / "notes.png").write_text("not a picture")
    g, _ = controlnet_graph("tiny.safetensors", [{"name": name, "image": "notes.png"}])
    error = run_error(g, tmp_path)
    assert error.type == "LoadImage" and error.input == "image"
