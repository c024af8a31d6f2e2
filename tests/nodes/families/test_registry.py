"""The model-family registry: every family declares complete, consistent data (a shared check, as
diffusers' test mixins do for every model), detection walks the registry, and files of families
sdgraph cannot run yet get one message naming the family, through the loader node. The transformer
families' runtime is proven against the pipelines in tests/nodes/dit/test_flow_pipeline_parity.py."""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from graph_engine import Executor, validate
from nodes import builtin_registry, families
from nodes.diffusion.checkpoint.detect import base_config, detect_checkpoint, detect_family
from nodes.diffusion.checkpoint.files import read_shapes
from nodes.diffusion.checkpoint.load import diffusers_family, load_checkpoint
from nodes.diffusion.errors import UnknownArchitectureError, UnsupportedFamilyError
from nodes.diffusion.previews import latent_to_rgb
from nodes.diffusion.sampling.model_sampling import ModelSampling
from nodes.families import FAMILIES, ModelFamily
from nodes.families.ldm import encoder_marker
from tests.support.graphs import txt2img_graph
from tests.support.tiny_sd import make_tiny

ALL = {f.name: f for f in FAMILIES}
SUPPORTED = [f for f in FAMILIES if f.supported]
UNET_FAMILIES = [f for f in SUPPORTED if f.denoiser_loader is None]
TRANSFORMER_FAMILIES = [f for f in SUPPORTED if f.denoiser_loader is not None]
SD_FAMILIES = ["sd1", "sd2", "sdxl", "sdxl_refiner"]
DIT_CONFIGS = Path(__file__).resolve().parents[3] / "resources" / "dit_configs"

# Tensor names of real files of each transformer family, in the layouts users download: the
# original layout bare (ComfyUI's diffusion_models files), inside an all-in-one checkpoint, and
# diffusers' own names. Every transformer family must have a sample here (see the test below).
Z = "model.diffusion_model."
SAMPLES: dict[str, list[list[str]]] = {
    "sd3": [
        [Z + "joint_blocks.0.context_block.adaLN_modulation.1.bias", Z + "x_embedder.proj.weight",
         Z + "context_embedder.weight", Z + "pos_embed", "first_stage_model.decoder.conv_in.weight",
         "text_encoders.clip_l.transformer.text_model.embeddings.token_embedding.weight"],
        ["joint_blocks.0.x_block.attn.qkv.weight", "x_embedder.proj.weight", "context_embedder.weight"],
        ["pos_embed.proj.weight", "transformer_blocks.0.attn.add_q_proj.weight", "context_embedder.weight"],
    ],
    "flux": [
        [Z + "double_blocks.0.img_attn.qkv.weight", Z + "single_blocks.0.linear1.weight", Z + "img_in.weight",
         "vae.decoder.conv_in.weight", "text_encoders.t5xxl.transformer.shared.weight"],
        ["double_blocks.0.img_attn.norm.key_norm.scale", "single_blocks.0.linear1.weight", "img_in.weight",
         "guidance_in.in_layer.weight"],
        ["transformer_blocks.0.attn.add_q_proj.weight", "single_transformer_blocks.0.attn.to_q.weight",
         "x_embedder.weight", "context_embedder.weight"],
    ],
    "z_image": [
        ["layers.0.attention.qkv.weight", "layers.0.adaLN_modulation.0.weight", "cap_embedder.1.weight",
         "noise_refiner.0.attention.qkv.weight", "context_refiner.0.attention.qkv.weight", "x_embedder.weight"],
        [Z + "layers.0.attention.qkv.weight", Z + "layers.0.adaLN_modulation.0.weight", Z + "cap_embedder.1.weight",
         Z + "noise_refiner.0.attention.qkv.weight"],
        ["all_x_embedder.2-1.weight", "layers.0.attention.to_q.weight", "cap_embedder.1.weight"],
    ],
    "lumina2": [
        ["cap_embedder.0.weight", "layers.0.attention.qkv.weight", "layers.0.adaLN_modulation.1.weight",
         "noise_refiner.0.attention.qkv.weight", "context_refiner.0.attention.qkv.weight"],
    ],
    "flux2": [["double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight",
               "single_stream_modulation.lin.weight"]],
    "chroma": [[Z + "double_blocks.0.img_attn.qkv.weight", Z + "distilled_guidance_layer.in_proj.bias"]],
    "auraflow": [["double_layers.0.attn.w2q.weight", "cond_seq_linear.weight", "t_embedder.mlp.0.weight"]],
    "qwen_image": [["transformer_blocks.0.img_mod.1.weight", "transformer_blocks.0.attn.add_q_proj.weight",
                    "img_in.weight", "txt_norm.weight"]],
}  # fmt: skip


def _shapes(keys: list[str]) -> dict[str, tuple[int, ...]]:
    return dict.fromkeys(keys, (1,))


# --------------------------------------------------------------------------------------------
# Every family's declaration
# --------------------------------------------------------------------------------------------


def test_names_are_unique_ids_and_messages_name_the_family() -> None:
    assert len(ALL) == len(FAMILIES)
    for f in FAMILIES:
        assert f.name.isidentifier() and f.name == f.name.lower(), f.name
        assert f.display_name and f.display_name in f.description, f.name
        assert families.get(f.name) is f
    with pytest.raises(KeyError, match="unknown model family 'nope'"):
        families.get("nope")


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_every_family_is_recognisable(family: ModelFamily) -> None:
    assert family.recognise(_shapes([])) is False  # an empty file is nobody's
    assert family.diffusers_pipelines or family.recognise_diffusers is not None
    if not family.supported or family.denoiser_loader:
        assert family.name in SAMPLES, "add real key names of this family's files to SAMPLES"


def test_unsupported_pipelines_are_claimed_once() -> None:
    claimed = [p for f in FAMILIES if not f.supported for p in f.diffusers_pipelines]
    assert len(claimed) == len(set(claimed))


@pytest.mark.parametrize("family", UNET_FAMILIES, ids=lambda f: f.name)
def test_supported_family_declares_complete_consistent_data(family: ModelFamily) -> None:
    latent, sampling = family.latent, family.sampling
    assert latent is not None and sampling is not None and family.conditioning is not None
    assert family.detector is not None and callable(family.resolve(family.detector))
    # Latent format: preview factors for every channel, the VAE's scale as the shipped config has it.
    assert latent.rgb_factors is not None and len(latent.rgb_factors) == latent.channels
    assert all(len(row) == 3 for row in latent.rgb_factors) and len(latent.rgb_bias) == 3
    assert family.config_dir is not None
    for component in family.components:
        assert base_config(family.name, component), component
    vae = base_config(family.name, "vae")
    assert vae["scaling_factor"] == latent.scaling_factor
    assert vae.get("shift_factor") in (None, latent.shift_factor)
    assert vae["latent_channels"] == latent.channels
    denoiser = base_config(family.name, "unet")
    assert denoiser["out_channels"] == latent.channels
    # The classes it builds exist under the names it declares.
    for ref in (family.denoiser_class, family.vae_class):
        assert ref is not None
        module, _, name = ref.partition(".")
        assert isinstance(getattr(importlib.import_module(module), name), type), ref
    assert denoiser["_class_name"] == family.denoiser_class.split(".")[-1]  # type: ignore[union-attr]
    # Text encoders: shipped configs for each slot, the declared class, pooled output where it is read.
    assert family.text_encoders
    assert len({s.component for s in family.text_encoders}) == len(family.text_encoders)
    transformers = importlib.import_module("transformers")
    for slot in family.text_encoders:
        assert slot.component in family.components
        assert base_config(family.name, slot.component)["architectures"] == [slot.transformers_class]
        assert isinstance(getattr(transformers, slot.transformers_class), type)
        assert slot.prefix.endswith(".") and slot.tokenizer == "clip"
    pooled = family.conditioning.pooled_encoder
    if pooled is not None:
        assert family.text_encoders[pooled].transformers_class == "CLIPTextModelWithProjection"
    # Model sampling: the shipped scheduler builds the declared parameterisation.
    assert sampling.prediction in ("epsilon", "v_prediction")
    ms = ModelSampling.from_config(dict(base_config(family.name, "scheduler"), prediction_type=sampling.prediction))
    assert ms.prediction_type == sampling.prediction and ms.sigma_max > ms.sigma_min > 0
    if family.ldm_unet is not None:
        assert base_config(family.name, "unet").get("addition_embed_type") == (
            "text_time" if family.ldm_unet.time_ids else None
        )


@pytest.mark.parametrize("family", TRANSFORMER_FAMILIES, ids=lambda f: f.name)
def test_transformer_family_declares_complete_consistent_data(family: ModelFamily) -> None:
    """The same promise for SD3/FLUX/Z-Image: shipped diffusers configs that agree with the declared
    latent format and classes, text-encoder slots with shipped configs, and runtime references that
    resolve (shape reader, loader, the pipeline-equivalent call)."""
    from nodes.diffusion.dit.loading import model_sampling_for
    from nodes.diffusion.sampling import FlowModelSampling

    latent, sampling = family.latent, family.sampling
    assert latent is not None and sampling is not None and family.conditioning is not None
    assert latent.rgb_factors is not None and len(latent.rgb_factors) == latent.channels == 16
    assert all(len(row) == 3 for row in latent.rgb_factors) and len(latent.rgb_bias) == 3
    for ref in (family.detector, family.predictor, family.denoiser_loader):
        assert ref is not None and callable(family.resolve(ref)), ref
    assert family.config_dir is not None
    folder = DIT_CONFIGS / family.config_dir
    for component in family.components:
        assert (folder / component).is_dir(), component
    vae = json.loads((folder / "vae" / "config.json").read_text())
    assert (vae["scaling_factor"], vae["shift_factor"]) == (latent.scaling_factor, latent.shift_factor)
    assert vae["latent_channels"] == latent.channels
    transformer = json.loads((folder / "transformer" / "config.json").read_text())
    assert family.denoiser_class is not None and transformer["_class_name"] == family.denoiser_class.split(".")[-1]
    for ref in (family.denoiser_class, family.vae_class):
        assert ref is not None
        module, _, name = ref.partition(".")
        assert isinstance(getattr(importlib.import_module(module), name), type), ref
    encoders = Path(__file__).resolve().parents[3] / "resources" / "text_encoders"
    shipped = {
        json.loads((d / "config.json").read_text())["architectures"][0]
        for d in encoders.iterdir()
        if (d / "config.json").is_file()
    }
    assert family.text_encoders
    for slot in family.text_encoders:
        assert slot.tokenizer in ("clip", "t5", "qwen3") and slot.prefix.endswith(".")
        # Shipped as the full released architecture (CLIP-L with projection, Qwen3 with its LM head).
        assert any(arch.startswith(slot.transformers_class.removesuffix("Model")) for arch in shipped), slot
        assert isinstance(getattr(importlib.import_module("transformers"), slot.transformers_class), type)
    from nodes.diffusion.text_encoders import CLIP_TYPES

    assert family.clip_type in CLIP_TYPES and CLIP_TYPES[family.clip_type].builds == family.name
    assert sampling.prediction == "flow" and sampling.shift_rule in ("sd3", "flux", "auraflow")
    ms = model_sampling_for(family.name)
    assert isinstance(ms, FlowModelSampling) and ms.sigma_max == pytest.approx(1.0) and ms.sigma_min > 0


@pytest.mark.parametrize(
    ("name", "keys"),
    [(f.name, keys) for f in TRANSFORMER_FAMILIES for keys in SAMPLES[f.name]],
    ids=str,
)
def test_transformer_layouts_are_recognised(name: str, keys: list[str]) -> None:
    """Each layout users download names its family; the UNet checkpoint reader refuses them by name
    (the loader nodes send these files to the transformer loader first)."""
    shapes = _shapes(keys)
    assert families.recognise_single_file(shapes) is families.get(name)
    with pytest.raises(UnknownArchitectureError, match=re.escape(f"it is {families.get(name).description}")):
        detect_family(shapes, "model.safetensors")


@pytest.mark.parametrize("family", SUPPORTED, ids=lambda f: f.name)
def test_previews_use_the_family_factors(family: ModelFamily) -> None:
    assert family.latent is not None and family.latent.rgb_factors is not None
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(1, family.latent.channels, 5, 7, generator=g) * 0.3
    factors = torch.tensor(family.latent.rgb_factors)
    rgb = torch.einsum("chw,cr->hwr", latent[0], factors) + torch.tensor(family.latent.rgb_bias)
    expected = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    assert (latent_to_rgb(latent, family.name) == expected).all()


def test_sdxl_and_sd_previews_differ() -> None:
    latent = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    assert (latent_to_rgb(latent, "sdxl") != latent_to_rgb(latent, "sd1")).any()


# --------------------------------------------------------------------------------------------
# Detection walks the registry
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("families")
    return {
        (name, layout): make_tiny(name, root, layout=layout, name=f"{name}_{layout}")  # type: ignore[arg-type]
        for name in SD_FAMILIES
        for layout in ("single_file", "diffusers")
    }


@pytest.mark.parametrize("name", SD_FAMILIES)
def test_detection_picks_each_tiny_checkpoint_family(name: str, tiny_files: dict[tuple[str, str], Path]) -> None:
    path = tiny_files[(name, "single_file")]
    shapes = read_shapes(path)
    assert families.recognise_single_file(shapes) is families.get(name)
    # Only this family's encoder markers are in the file.
    present = [f.name for f in SUPPORTED if any(encoder_marker(s) in shapes for s in f.text_encoders)]
    assert present == [name]
    assert detect_checkpoint(path).family == name
    assert diffusers_family(tiny_files[(name, "diffusers")]) == name


def test_detection_asks_the_registry(monkeypatch: pytest.MonkeyPatch, tiny_files) -> None:
    """A family registered ahead of SD1 that claims its files wins: detection has no list of its own."""
    shapes = read_shapes(tiny_files[("sd1", "single_file")])
    impostor = replace(
        families.get("auraflow"),
        name="impostor",
        display_name="Impostor",
        description="an Impostor model",
        recognise=bool,
    )
    monkeypatch.setattr(families, "FAMILIES", (impostor, *families.FAMILIES))
    monkeypatch.setattr(families, "_BY_NAME", {**families._BY_NAME, "impostor": impostor})
    with pytest.raises(UnsupportedFamilyError, match="is an Impostor model, which sdgraph cannot run yet"):
        detect_family(shapes, "x.safetensors")


@pytest.mark.parametrize(
    ("name", "keys"),
    [(name, keys) for name, samples in SAMPLES.items() if not ALL[name].supported for keys in samples],
    ids=str,
)
def test_known_unsupported_layouts_are_named(name: str, keys: list[str]) -> None:
    shapes = _shapes(keys)
    assert families.recognise_single_file(shapes) is families.get(name)
    with pytest.raises(UnsupportedFamilyError) as info:
        detect_family(shapes, "model.safetensors")
    family = families.get(name)
    assert info.value.family == name
    assert f"is {family.description}, which sdgraph cannot run yet" in str(info.value)
    assert isinstance(info.value, UnknownArchitectureError)  # callers catching the old error still do


@pytest.mark.parametrize(
    "keys",
    [
        ["double_blocks.0.processor.proj_lora1.down.weight", "double_blocks.0.processor.proj_lora1.up.weight"],
        ["diffusion_model.joint_blocks.0.x_block.attn.qkv.lora_A.weight"],
        [Z + "layers.0.adaLN_modulation.0.lora_down.weight", Z + "layers.0.adaLN_modulation.0.weight"],
    ],
)
def test_loras_for_transformer_families_are_called_loras(keys: list[str]) -> None:
    with pytest.raises(UnknownArchitectureError, match="it is a LoRA, not a checkpoint") as info:
        detect_family(_shapes(keys), "lora.safetensors")
    assert not isinstance(info.value, UnsupportedFamilyError)


@pytest.mark.parametrize(
    ("pipeline", "display"),
    [("QwenImagePipeline", "Qwen-Image"), ("AuraFlowPipeline", "AuraFlow"), ("Flux2Pipeline", "FLUX.2")],
)
def test_diffusers_folders_of_unsupported_families_are_named(tmp_path: Path, pipeline: str, display: str) -> None:
    folder = tmp_path / "model"
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": pipeline, "transformer": ["diffusers", "X"]}))
    (folder / "transformer" / "config.json").write_text("{}")
    with pytest.raises(UnsupportedFamilyError, match=f"{display}.*which sdgraph cannot run yet"):
        load_checkpoint(folder)


# --------------------------------------------------------------------------------------------
# Through the loader node
# --------------------------------------------------------------------------------------------


@pytest.fixture
def checkpoints(tmp_path: Path):
    import nodes.folders

    root = tmp_path / "models"
    (root / "checkpoints").mkdir(parents=True)
    nodes.folders.configure(extra_roots=[str(root)])
    yield root / "checkpoints"
    nodes.folders.configure()


@pytest.mark.parametrize(
    ("name", "display"), [("qwen_image", "Qwen-Image"), ("auraflow", "AuraFlow"), ("flux2", "FLUX.2")]
)
def test_checkpoint_loader_names_the_unsupported_family(checkpoints: Path, tmp_path: Path, name, display) -> None:
    from safetensors.torch import save_file

    tensors = {k: torch.zeros(2, 2) for k in SAMPLES[name][0]}
    save_file(tensors, str(checkpoints / f"{name}_model.safetensors"))
    g, ids = txt2img_graph(f"{name}_model.safetensors", ckpt_title="Loader", steps=1)
    assert validate(g, builtin_registry()) == []
    result = Executor(builtin_registry(), output_dir=tmp_path / "out").run(g)
    assert result.status == "failed"
    assert result.error.node_id == ids["ckpt"] and result.error.input == "ckpt_name"
    text = str(result.error)
    assert text.startswith("node 1 (Loader), input 'ckpt_name': ")
    assert f"{name}_model.safetensors is {families.get(name).description}, which sdgraph cannot run yet" in text
    assert display in text and "Traceback" not in text


@pytest.mark.parametrize(
    ("name", "display"), [("flux", "FLUX.1"), ("z_image", "Z-Image"), ("sd3", "Stable Diffusion 3")]
)
def test_checkpoint_loader_sends_a_bare_transformer_to_the_diffusion_model_loader(
    checkpoints: Path, tmp_path: Path, name: str, display: str
) -> None:
    """A ComfyUI ``diffusion_models`` file put in checkpoints: one message saying where it goes and what
    loads it, naming node and input."""
    from safetensors.torch import save_file

    keys = [k for k in SAMPLES[name][1]]
    save_file({k: torch.zeros(2, 2) for k in keys}, str(checkpoints / f"{name}_unet.safetensors"))
    g, ids = txt2img_graph(f"{name}_unet.safetensors", ckpt_title="Loader", steps=1)
    result = Executor(builtin_registry(), output_dir=tmp_path / "out").run(g)
    assert result.status == "failed"
    assert result.error.node_id == ids["ckpt"] and result.error.input == "ckpt_name"
    text = str(result.error)
    assert f"holds only the {display}" in text and "models/diffusion_models" in text and "UNETLoader" in text
    assert "Traceback" not in text
