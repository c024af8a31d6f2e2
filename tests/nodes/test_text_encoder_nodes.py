"""CLIPLoader / DualCLIPLoader / TripleCLIPLoader and the SD3/FLUX prompt nodes, on tiny files in model folders.

Files sit where ComfyUI users put them (``models/text_encoders`` and the older ``models/clip``), in the
layouts they download; the nodes find them by name, recognise what each file is, and the conditioning
equals diffusers' pipelines on the original modules. Bad input gives one message naming node and input.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline, ZImagePipeline
from safetensors.torch import save_file

import nodes.folders
from graph_engine import ExecutionContext, InputError
from nodes import builtin_registry
from nodes.conditioning import clip_text_encode
from nodes.diffusion.clip import ClipModel
from nodes.diffusion.model_paths import ModelFolders, read_comfyui_extra_paths
from nodes.diffusion.text.encoder_files import CLIP_G, CLIP_L, QWEN3, T5XXL
from nodes.diffusion.text.llm_vocab import build_qwen3_tokenizer, build_t5_tokenizer
from nodes.diffusion.text.vocab import build_clip_tokenizer
from nodes.diffusion.text_encoders import FlowClip
from nodes.text_encoders import (
    clip_loader,
    clip_text_encode_flux,
    clip_text_encode_sd3,
    dual_clip_loader,
    triple_clip_loader,
)
from tests.support.tiny_text import encoder_state, save_encoder, tiny_encoder

CPU = torch.device("cpu")
PROMPT = "a photo of an astronaut riding a horse on mars"


def ctx(title: str = "node") -> ExecutionContext:
    return ExecutionContext(node_id=1, title=title)


@pytest.fixture(scope="module")
def references() -> dict[str, object]:
    return {role: tiny_encoder(role, seed=10 + i) for i, role in enumerate((CLIP_L, CLIP_G, T5XXL, QWEN3))}


@pytest.fixture(scope="module")
def te_root(tmp_path_factory: pytest.TempPathFactory, references) -> Path:
    root = tmp_path_factory.mktemp("models")
    te, legacy = root / "text_encoders", root / "clip"
    save_encoder(references[CLIP_L], CLIP_L, te / "clip_l.safetensors")
    save_encoder(references[CLIP_G], CLIP_G, te / "clip_g.safetensors")
    save_encoder(references[T5XXL], T5XXL, te / "t5xxl_fp16.safetensors", dtype=torch.float16)
    save_encoder(references[T5XXL], T5XXL, te / "t5xxl_fp32.safetensors")
    save_encoder(references[QWEN3], QWEN3, legacy / "qwen_3_4b.safetensors")  # ComfyUI's older folder name
    all_in_one = {}
    for role, prefix in ((CLIP_L, "clip_l"), (CLIP_G, "clip_g"), (T5XXL, "t5xxl")):
        state = encoder_state(references[role], role)
        all_in_one |= {f"text_encoders.{prefix}.transformer.{k}": v for k, v in state.items()}
    all_in_one["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"] = torch.zeros(6, 2)
    save_file(all_in_one, str(te / "sd3.5_all_in_one_text_encoders.safetensors"))
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(6, 2)}, str(te / "flux1-dev.safetensors"))
    return root


@pytest.fixture
def models(te_root: Path):
    nodes.folders.configure(extra_roots=[str(te_root)])
    try:
        yield te_root
    finally:
        nodes.folders.configure()


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    assert a.shape == b.shape
    assert (a.float() - b.float()).abs().max().item() <= tol


def test_nodes_are_registered_with_comfyui_inputs():
    registry = builtin_registry()
    expected = {
        "CLIPLoader": ["clip_name", "type", "device"],
        "DualCLIPLoader": ["clip_name1", "clip_name2", "type", "device"],
        "TripleCLIPLoader": ["clip_name1", "clip_name2", "clip_name3"],
        "CLIPTextEncodeFlux": ["clip", "clip_l", "t5xxl", "guidance"],
        "CLIPTextEncodeSD3": ["clip", "clip_l", "clip_g", "t5xxl", "empty_padding"],
    }
    for node_type, inputs in expected.items():
        assert [i.id for i in registry.get(node_type).inputs] == inputs
    types = registry.get("CLIPLoader").inputs[1].choice_list()
    assert {"stable_diffusion", "sd3", "flux", "lumina2"} <= set(types)


def test_z_image_qwen3_from_the_legacy_clip_folder(models, references):
    (clip,) = clip_loader.execute(ctx(), "qwen_3_4b.safetensors", "lumina2", "default")
    assert isinstance(clip, FlowClip) and clip.family == "z_image"
    (cond,) = clip_text_encode.execute(ctx(), PROMPT, clip)
    pipe = ZImagePipeline(
        scheduler=None, vae=None, text_encoder=references[QWEN3], tokenizer=build_qwen3_tokenizer(), transformer=None
    )
    (expected,), _ = pipe.encode_prompt(PROMPT, device=CPU, do_classifier_free_guidance=False)
    _close(cond[0].embeds[0], expected)
    (again,) = clip_loader.execute(ctx(), "qwen_3_4b.safetensors", "lumina2", "cpu")
    assert again.encoders.qwen3 is clip.encoders.qwen3  # loaded once, through the model manager


@pytest.mark.parametrize(
    "order", [("t5xxl_fp32.safetensors", "clip_l.safetensors"), ("clip_l.safetensors", "t5xxl_fp32.safetensors")]
)
def test_flux_dual_loader_and_encode(models, references, order):
    (clip,) = dual_clip_loader.execute(ctx(), *order, "flux", "default")
    (cond,) = clip_text_encode_flux.execute(ctx(), clip, "a cat", "a cat sitting on a red sofa", 2.5)
    pipe = FluxPipeline(
        scheduler=None, vae=None, transformer=None,
        text_encoder=references[CLIP_L].text_model, tokenizer=build_clip_tokenizer(),
        text_encoder_2=references[T5XXL], tokenizer_2=build_t5_tokenizer(),
    )  # fmt: skip
    embeds, pooled, _ = pipe.encode_prompt("a cat", "a cat sitting on a red sofa", device=CPU)
    _close(cond[0].embeds, embeds)
    _close(cond[0].pooled, pooled)
    assert cond[0].extras["guidance"] == 2.5


def test_flux_t5_stays_in_its_stored_fp16(models):
    (clip,) = dual_clip_loader.execute(ctx(), "t5xxl_fp16.safetensors", "clip_l.safetensors", "flux", "default")
    assert clip.encoders.t5xxl.dtype == torch.float16
    assert clip.encoders.clip_l.dtype == torch.float32  # CLIPs run in the run's text precision
    (cond,) = clip_text_encode.execute(ctx(), PROMPT, clip)
    assert cond[0].embeds.dtype == torch.float32 and torch.isfinite(cond[0].embeds).all()


def _sd3_pipe(references) -> StableDiffusion3Pipeline:
    return StableDiffusion3Pipeline(
        transformer=None, scheduler=None, vae=None,
        text_encoder=references[CLIP_L], tokenizer=build_clip_tokenizer(),
        text_encoder_2=references[CLIP_G], tokenizer_2=build_clip_tokenizer(pad_token="!"),
        text_encoder_3=references[T5XXL], tokenizer_3=build_t5_tokenizer(),
    )  # fmt: skip


def test_sd3_triple_loader_any_order_and_all_in_one_file(models, references):
    files = ("t5xxl_fp32.safetensors", "clip_g.safetensors", "clip_l.safetensors")
    (clip,) = triple_clip_loader.execute(ctx(), *files)
    (cond,) = clip_text_encode_sd3.execute(ctx(), clip, "a red car", "a red car, photo", "a red car on a road", "none")
    embeds, _, pooled, _ = _sd3_pipe(references).encode_prompt(
        "a red car", "a red car, photo", "a red car on a road", device=CPU, do_classifier_free_guidance=False
    )
    _close(cond[0].embeds, embeds)
    _close(cond[0].pooled, pooled)
    (single,) = clip_loader.execute(ctx(), "sd3.5_all_in_one_text_encoders.safetensors", "sd3", "default")
    (cond2,) = clip_text_encode.execute(ctx(), PROMPT, single)
    embeds, _, pooled, _ = _sd3_pipe(references).encode_prompt(
        PROMPT, None, None, device=CPU, do_classifier_free_guidance=False
    )
    _close(cond2[0].embeds, embeds)
    _close(cond2[0].pooled, pooled)


def test_sd1_and_sdxl_clips_from_standalone_files(models, references):
    (sd1,) = clip_loader.execute(ctx(), "clip_l.safetensors", "stable_diffusion", "default")
    assert isinstance(sd1, ClipModel) and sd1.family == "sd1"
    expected = ClipModel("sd1", [references[CLIP_L].text_model]).encode(PROMPT)[0].embeds
    assert torch.equal(sd1.encode(PROMPT)[0].embeds, expected)
    (sdxl,) = dual_clip_loader.execute(ctx(), "clip_g.safetensors", "clip_l.safetensors", "sdxl", "default")
    ref = ClipModel("sdxl", [references[CLIP_L].text_model, references[CLIP_G]]).encode(PROMPT)[0]
    got = sdxl.encode(PROMPT)[0]
    assert torch.equal(got.embeds, ref.embeds) and torch.equal(got.pooled, ref.pooled)


@pytest.mark.parametrize(
    ("call", "input_id", "words"),
    [
        (
            lambda: clip_loader.execute(ctx(), "t5xxl_fp32.safetensors", "stable_diffusion", "default"),
            "clip_name",
            "T5-XXL",
        ),
        (lambda: clip_loader.execute(ctx(), "t5xxl_fp32.safetensors", "lumina2", "default"), "clip_name", "Qwen3"),
        (
            lambda: dual_clip_loader.execute(ctx(), "clip_l.safetensors", "t5xxl_fp32.safetensors", "sdxl", "default"),
            "clip_name2",
            "T5-XXL",
        ),
        (
            lambda: dual_clip_loader.execute(
                ctx(), "t5xxl_fp32.safetensors", "t5xxl_fp16.safetensors", "flux", "default"
            ),
            "clip_name2",
            "second T5-XXL",
        ),
        (
            lambda: clip_loader.execute(ctx(), "flux1-dev.safetensors", "flux", "default"),
            "clip_name",
            "FLUX diffusion model",
        ),
        (lambda: clip_loader.execute(ctx(), "clip_l.safetensors", "wan", "default"), "type", "does not have yet"),
        (
            lambda: clip_loader.execute(ctx(), "nope.safetensors", "flux", "default"),
            "clip_name",
            "No text_encoders model",
        ),
    ],
)
def test_bad_input_names_node_and_input(models, call, input_id, words):
    with pytest.raises(InputError) as info:
        call()
    assert info.value.input_id == input_id
    assert words in info.value.message
    assert "Loader" in info.value.message or "CLIPLoader" in info.value.message


def test_prompt_nodes_refuse_a_clip_of_another_family(models):
    (flux,) = dual_clip_loader.execute(ctx(), "t5xxl_fp32.safetensors", "clip_l.safetensors", "flux", "default")
    with pytest.raises(InputError, match="SD3") as info:
        clip_text_encode_sd3.execute(ctx(), flux, "a", "b", "c", "none")
    assert info.value.input_id == "clip"
    (sd1,) = clip_loader.execute(ctx(), "clip_l.safetensors", "stable_diffusion", "default")
    with pytest.raises(InputError, match="FLUX"):
        clip_text_encode_flux.execute(ctx(), sd1, "a", "b", 3.5)


def test_text_encoder_and_diffusion_model_folders(tmp_path: Path):
    folders = ModelFolders.default(tmp_path)
    assert folders.folders["text_encoders"] == [tmp_path / "models" / "text_encoders", tmp_path / "models" / "clip"]
    assert folders.folders["diffusion_models"] == [
        tmp_path / "models" / "diffusion_models",
        tmp_path / "models" / "unet",
    ]
    root = tmp_path / "other"
    (root / "clip").mkdir(parents=True)
    (root / "clip" / "t5.safetensors").write_bytes(b"")
    (root / "unet").mkdir()
    (root / "unet" / "flux.safetensors").write_bytes(b"")
    folders.add_root(root)
    assert folders.list_models("text_encoders") == ["t5.safetensors"]
    assert folders.resolve("diffusion_models", "flux.safetensors") == root / "unet" / "flux.safetensors"
    yaml_file = tmp_path / "extra_model_paths.yaml"
    yaml_file.write_text(
        "comfyui:\n  base_path: /opt/comfy\n  clip: models/clip\n  text_encoders: models/text_encoders\n"
        "  unet: models/unet\n  diffusion_models: |\n    models/diffusion_models\n    /mnt/big/dit\n",
        encoding="utf-8",
    )
    pairs = read_comfyui_extra_paths(yaml_file)
    assert ("text_encoders", Path("/opt/comfy/models/clip")) in pairs
    assert ("text_encoders", Path("/opt/comfy/models/text_encoders")) in pairs
    assert ("diffusion_models", Path("/opt/comfy/models/unet")) in pairs
    assert ("diffusion_models", Path("/mnt/big/dit")) in pairs
