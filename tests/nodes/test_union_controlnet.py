"""SDXL ControlNet Union/ProMax through sdgraph's graph against diffusers' union pipeline.

The graph is the one of ``test_controlnet`` with SetUnionControlNetType between Load ControlNet Model and
Apply ControlNet; the oracle is ``StableDiffusionXLControlNetUnionPipeline`` with ``control_mode`` = the
type's index, built from the very models the files were written from; final latents agree to 1e-4. The
union ControlNet is a tiny seeded ``ControlNetUnionModel`` of the tiny SDXL UNet
(``tests/support/tiny_controlnet.py``), written as one diffusers-layout file (as xinsir publishes
``diffusion_pytorch_model_promax.safetensors``) and as a diffusers folder.

"auto" (no type) runs as ComfyUI runs it: an all-zero type vector and the image features added without
the condition transformer's bias. Its oracle is a single-type ``ControlNetModel`` holding the same
weights, whose time embedding's last bias also carries the type embedding of the zero vector (a
constant), in ``StableDiffusionXLControlNetPipeline``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import nodes.folders
from graph_engine import ExecutionContext, Graph, InputError
from nodes.diffusion.controlnet import UNION_TYPE_INDEX
from tests.nodes.test_controlnet import (
    CFG,
    PROMPT,
    SEED,
    SIZE,
    STEPS,
    assert_close,
    control_png,
    pipeline_latents,
    run_latents,
)
from tests.support.tiny_controlnet import (
    build_tiny_union_controlnet,
    write_controlnet_diffusers_file,
    write_controlnet_folder,
)
from tests.support.tiny_sd import build_tiny_models, write_single_file


@pytest.fixture(scope="module")
def sdxl() -> tuple[Any, Any]:
    models = build_tiny_models("sdxl", seed=3)
    return models, build_tiny_union_controlnet(models.unet, seed=9)


@pytest.fixture
def root(tmp_path: Path) -> Any:
    root = tmp_path / "models"
    for kind in ("checkpoints", "controlnet"):
        (root / kind).mkdir(parents=True)
    nodes.folders.configure(extra_roots=[str(root)])
    yield root
    nodes.folders.configure()


def write_union(net: Any, root: Path, layout: str) -> str:
    """``single_file``; ``folder`` (as diffusers saves a ControlNetUnionModel); ``xinsir_folder``: its
    config calls it a ControlNetModel and has none of the union settings, as xinsir's folder."""
    if layout == "single_file":
        write_controlnet_diffusers_file(net, root / "controlnet" / "union_promax.safetensors")
        return "union_promax.safetensors"
    folder = write_controlnet_folder(net, root / "controlnet" / "controlnet-union-sdxl")
    if layout == "xinsir_folder":
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        config = {k: v for k, v in config.items() if not k.startswith(("num_trans", "num_proj", "num_control"))}
        (folder / "config.json").write_text(json.dumps({**config, "_class_name": "ControlNetModel"}), encoding="utf-8")
    return "controlnet-union-sdxl"


def union_graph(ckpt: str, name: str, union_type: str | None, strength: float = 1.0) -> tuple[Graph, dict[str, int]]:
    """txt2img: Load ControlNet → SetUnionControlNetType (unless None) → Apply ControlNet → KSampler."""
    g = Graph()
    ids = {"ckpt": g.add_node("CheckpointLoaderSimple", {"ckpt_name": ckpt}).id}
    ids["pos"] = g.add_node("CLIPTextEncode", {"text": PROMPT}).id
    g.add_link(ids["ckpt"], "CLIP", ids["pos"], "clip", "CLIP")
    ids["neg"] = g.add_node("ConditioningZeroOut").id
    g.add_link(ids["pos"], "CONDITIONING", ids["neg"], "conditioning", "CONDITIONING")
    loader = g.add_node("ControlNetLoader", {"control_net_name": name}).id
    control = (loader, "CONTROL_NET")
    if union_type is not None:
        ids["type"] = g.add_node("SetUnionControlNetType", {"type": union_type}).id
        g.add_link(loader, "CONTROL_NET", ids["type"], "control_net", "CONTROL_NET")
        control = (ids["type"], "CONTROL_NET")
    image = g.add_node("LoadImage", {"image": "control.png"}).id
    apply = g.add_node("ControlNetApplyAdvanced", {"strength": strength}).id
    g.add_link(ids["pos"], "CONDITIONING", apply, "positive", "CONDITIONING")
    g.add_link(ids["neg"], "CONDITIONING", apply, "negative", "CONDITIONING")
    g.add_link(control[0], control[1], apply, "control_net", "CONTROL_NET")
    g.add_link(image, "IMAGE", apply, "image", "IMAGE")
    empty = g.add_node("EmptyLatentImage", {"width": SIZE, "height": SIZE, "batch_size": 1}).id
    values = dict(seed=SEED, steps=STEPS, cfg=CFG, sampler_name="euler", scheduler="linspace_diffusers")
    ids["ks"] = g.add_node("KSampler", values).id
    g.add_link(ids["ckpt"], "MODEL", ids["ks"], "model", "MODEL")
    g.add_link(apply, "positive", ids["ks"], "positive", "CONDITIONING")
    g.add_link(apply, "negative", ids["ks"], "negative", "CONDITIONING")
    g.add_link(empty, "LATENT", ids["ks"], "latent_image", "LATENT")
    return g, ids


def union_pipeline_latents(models: Any, net: Any, image: Any, mode: int, scale: float = 1.0) -> torch.Tensor:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLControlNetUnionPipeline

    from nodes.diffusion.text.vocab import build_clip_tokenizer

    scheduler = EulerDiscreteScheduler.from_config({**models.scheduler_config, "timestep_spacing": "linspace"})
    pipe = StableDiffusionXLControlNetUnionPipeline(
        vae=models.vae,
        text_encoder=models.text_encoders[0],
        text_encoder_2=models.text_encoders[1],
        tokenizer=build_clip_tokenizer(),
        tokenizer_2=build_clip_tokenizer(pad_token="!"),
        unet=models.unet,
        controlnet=net,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt=PROMPT,
        control_image=image,
        control_mode=mode,
        controlnet_conditioning_scale=scale,
        num_inference_steps=STEPS,
        guidance_scale=CFG,
        generator=torch.Generator("cpu").manual_seed(SEED),
        output_type="latent",
        height=SIZE,
        width=SIZE,
    ).images
    return out / models.vae.config.scaling_factor


def test_union_type_indices_are_comfyuis_and_diffusers_control_modes() -> None:
    """The node's choices in ComfyUI's order, each with xinsir's index (diffusers' ``control_mode``)."""
    from nodes.controlnet import UNION_TYPES

    expected = {"openpose": 0, "depth": 1, "hed/pidi/scribble/ted": 2, "canny/lineart/anime_lineart/mlsd": 3}
    expected |= {"normal": 4, "segment": 5, "tile": 6, "repaint": 7}
    assert expected == UNION_TYPE_INDEX
    assert ["auto", *expected] == UNION_TYPES


@pytest.mark.parametrize(
    ("layout", "union_type", "strength"),
    [
        ("single_file", "canny/lineart/anime_lineart/mlsd", 1.0),
        ("folder", "depth", 0.7),
        ("xinsir_folder", "openpose", 1.0),
        ("single_file", "repaint", 1.0),
    ],
)
def test_sdxl_union_controlnet_matches_union_pipeline(
    sdxl: Any, root: Path, tmp_path: Path, layout: str, union_type: str, strength: float
) -> None:
    models, net = sdxl
    write_single_file(models, root / "checkpoints" / "tiny_xl.safetensors")
    name = write_union(net, root, layout)
    image = control_png("control.png", seed=1)
    ours = run_latents(*union_graph("tiny_xl.safetensors", name, union_type, strength), tmp_path)
    mode = UNION_TYPE_INDEX[union_type]
    with torch.inference_mode():
        theirs = union_pipeline_latents(models, net, image, mode, strength)
        other = union_pipeline_latents(models, net, image, (mode + 1) % 8, strength)
    assert_close(ours, theirs)
    assert (theirs - other).abs().max() > 1e-3, "the control type does not change the result"
    print(f"SDXL union {union_type} ({layout}): max |Δ| = {(ours - theirs).abs().max().item():.2e}")


def _auto_oracle(net: Any) -> Any:
    """A single-type ControlNetModel computing what the union model does on "auto" (module docstring)."""
    from diffusers import ControlNetModel

    from nodes.diffusion.controlnet import _controlnet_params

    allowed = _controlnet_params()
    plain = ControlNetModel.from_config({k: v for k, v in net.config.items() if k in allowed})
    plain.load_state_dict(net.state_dict(), strict=False)

    def with_zero_types(_module: Any, _args: Any, emb: torch.Tensor) -> torch.Tensor:
        zeros = emb.new_zeros((emb.shape[0], net.config.num_control_type))
        return emb + net.control_add_embedding(net.control_type_proj(zeros.flatten()).reshape(emb.shape[0], -1))

    plain.time_embedding.register_forward_hook(with_zero_types)
    return plain.eval().requires_grad_(False)


@pytest.mark.parametrize("set_auto", [True, False])
def test_sdxl_union_controlnet_on_auto_runs_as_comfyui(sdxl: Any, root: Path, tmp_path: Path, set_auto: bool) -> None:
    models, net = sdxl
    write_single_file(models, root / "checkpoints" / "tiny_xl.safetensors")
    name = write_union(net, root, "single_file")
    image = control_png("control.png", seed=1)
    ours = run_latents(*union_graph("tiny_xl.safetensors", name, "auto" if set_auto else None), tmp_path)
    with torch.inference_mode():
        theirs = pipeline_latents(models, [_auto_oracle(net)], [image], negative=None)
        typed = union_pipeline_latents(models, net, image, 3)
    assert_close(ours, theirs)
    assert (theirs - typed).abs().max() > 1e-3
    print(f"SDXL union auto: max |Δ| = {(ours - theirs).abs().max().item():.2e}")


def test_a_type_the_union_model_lacks_is_named(sdxl: Any, root: Path) -> None:
    """xinsir's first union model knows 6 types; tile (6) and repaint (7) came with ProMax."""
    models, _ = sdxl
    net = build_tiny_union_controlnet(models.unet, seed=9, num_control_type=6)
    name = write_union(net, root, "single_file")
    from nodes.controlnet import controlnet_loader, set_union_controlnet_type

    ctx = ExecutionContext(node_id=1, title="t")
    (loaded,) = controlnet_loader.execute(ctx, control_net_name=name)
    assert loaded.union_types == 6 and loaded.family == "sdxl"
    (depth,) = set_union_controlnet_type.execute(ctx, control_net=loaded, type="depth")
    assert depth.union_index == 1
    with pytest.raises(InputError) as info:
        set_union_controlnet_type.execute(ctx, control_net=loaded, type="tile")
    assert info.value.input_id == "type"
    assert name in info.value.message and "6 control types" in info.value.message
