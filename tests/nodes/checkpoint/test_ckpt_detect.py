"""Family and architecture detection from names and shapes, SD2 v-prediction, overrides."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from nodes.diffusion.checkpoint import detect, files
from nodes.diffusion.checkpoint.detect import base_config, detect_checkpoint, detect_from_shapes, expected_text_encoders
from nodes.diffusion.checkpoint.ldm_layout import checkpoint_to_ldm, save_state_dict
from nodes.diffusion.checkpoint.load import load_checkpoint
from nodes.diffusion.errors import ConfigOverrideError, UnknownArchitectureError
from tests.support.tiny_sd import build_tiny_models


def _full_size_shapes(family: str) -> dict[str, tuple[int, ...]]:
    """Shapes of the released model's LDM file, from meta-device models (no memory, no disk)."""
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(base_config(family, "unet"))
        vae = AutoencoderKL.from_config(base_config(family, "vae"))
        encoders = []
        for name in expected_text_encoders(family):
            cfg = CLIPTextConfig(**{k: v for k, v in base_config(family, name).items() if k != "architectures"})
            encoders.append((CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel)(cfg))
    state = checkpoint_to_ldm(family, unet=unet, vae=vae, text_encoders=encoders)
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl", "sdxl_refiner"])
def test_full_size_architectures_are_rederived_from_shapes(family: str) -> None:
    shapes = _full_size_shapes(family)
    detected = detect_from_shapes(shapes, f"{family}.safetensors", read_tensor=lambda key: torch.full((8,), 0.5))
    assert detected.family == family
    public = base_config(family, "unet")
    for field in (
        "block_out_channels",
        "layers_per_block",
        "down_block_types",
        "up_block_types",
        "cross_attention_dim",
        "attention_head_dim",
        "transformer_layers_per_block",
        "use_linear_projection",
        "in_channels",
        "projection_class_embeddings_input_dim",
        "addition_time_embed_dim",
    ):
        assert detected.unet_config.get(field) == public.get(field), field
    assert detected.vae_config == base_config(family, "vae")
    for spec in detected.text_encoders:
        assert spec.config == base_config(family, spec.name), spec.name


def test_sd2_full_size_has_23_layers_and_penultimate_drop() -> None:
    shapes = _full_size_shapes("sd2")
    assert "cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight" in shapes
    detected = detect_from_shapes(shapes, "sd2.safetensors", read_tensor=lambda key: torch.zeros(8))
    assert detected.text_encoders[0].config["num_hidden_layers"] == 23
    assert detected.prediction_type == "epsilon" and detected.prediction_source == "heuristic"
    assert detected.unet_config["upcast_attention"] is False


def test_detection_reads_only_the_header(monkeypatch, tiny_checkpoint) -> None:
    path = tiny_checkpoint("sdxl")
    reads: list[str] = []

    class NoTensors:
        def __init__(self, *args, **kwargs) -> None:
            reads.append("open")

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            return None

        def get_tensor(self, key: str):
            reads.append(key)
            raise AssertionError("detection read a tensor")

    import safetensors

    monkeypatch.setattr(safetensors, "safe_open", NoTensors)
    detected = detect_checkpoint(path)
    assert detected.family == "sdxl" and reads == []


def test_sd2_reads_exactly_one_small_tensor(tiny_sd2_v_file: Path) -> None:
    reads: list[str] = []
    real = detect._single_tensor_reader(tiny_sd2_v_file)

    def counting(key: str) -> torch.Tensor:
        reads.append(key)
        return real(key)

    detected = detect_checkpoint(tiny_sd2_v_file, read_tensor=counting)
    assert reads == ["model.diffusion_model.output_blocks.3.1.transformer_blocks.0.norm1.bias"]
    assert detected.prediction_type == "v_prediction" and detected.prediction_source == "heuristic"
    assert detected.unet_config["upcast_attention"] is True


def test_sd2_epsilon_model_is_detected_as_epsilon(tiny_checkpoint) -> None:
    path = tiny_checkpoint("sd2", prediction_type="epsilon")
    ck = load_checkpoint(path)
    assert (ck.family, ck.prediction_type, ck.prediction_source) == ("sd2", "epsilon", "heuristic")
    assert ck.scheduler_config["prediction_type"] == "epsilon"


def test_sidecar_and_argument_override_the_heuristic(tmp_path: Path, tiny_sd2_v_file: Path) -> None:
    path = Path(shutil.copy(tiny_sd2_v_file, tmp_path / "model.safetensors"))
    Path(str(path) + ".sdgraph.json").write_text(json.dumps({"prediction_type": "epsilon"}))
    detected = detect_checkpoint(path)
    assert (detected.prediction_type, detected.prediction_source) == ("epsilon", "sidecar")
    assert detected.scheduler_config["prediction_type"] == "epsilon"
    detected = detect_checkpoint(path, overrides={"prediction_type": "v_prediction"})
    assert (detected.prediction_type, detected.prediction_source) == ("v_prediction", "argument")
    ck = load_checkpoint(path, overrides={"scaling_factor": 0.2})
    assert ck.prediction_type == "epsilon" and ck.vae_scaling_factor == 0.2
    assert ck.vae.config.scaling_factor == 0.2


def test_bad_sidecar_is_a_clear_error(tmp_path: Path, tiny_sd1_file: Path) -> None:
    path = Path(shutil.copy(tiny_sd1_file, tmp_path / "model.safetensors"))
    side = Path(str(path) + ".sdgraph.json")
    side.write_text('{"prediction_type": "x"}')
    with pytest.raises(ConfigOverrideError, match="prediction_type must be one of"):
        detect_checkpoint(path)
    side.write_text('{"predicton_type": "epsilon"}')
    with pytest.raises(ConfigOverrideError, match="unknown keys"):
        detect_checkpoint(path)
    side.write_text("{not json")
    with pytest.raises(ConfigOverrideError, match=r"sdgraph\.json"):
        detect_checkpoint(path)


def test_sdxl_v_prediction_marker_key(tmp_path: Path) -> None:
    ref = build_tiny_models("sdxl")
    state = checkpoint_to_ldm("sdxl", unet=ref.unet, vae=ref.vae, text_encoders=ref.text_encoders)
    state["v_pred"] = torch.tensor([])
    state["ztsnr"] = torch.tensor([])
    path = save_state_dict(tmp_path / "vpred_xl.safetensors", state)
    ck = load_checkpoint(path)
    assert ck.prediction_type == "v_prediction" and ck.prediction_source == "marker"
    assert ck.scheduler_config["rescale_betas_zero_snr"] is True


def _file(tmp_path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    return save_state_dict(tmp_path / "odd.safetensors", tensors)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"lora_unet_down_blocks_0.alpha": torch.zeros(())}, "LoRA"),
        (
            {"encoder.conv_in.weight": torch.zeros(4, 3, 3, 3), "decoder.conv_in.weight": torch.zeros(4, 4, 3, 3)},
            "only VAE weights",
        ),
        (
            {"conv_in.weight": torch.zeros(1), "down_blocks.0.resnets.0.conv1.weight": torch.zeros(1)},
            "diffusers-format UNet",
        ),
        ({"double_blocks.0.img_attn.qkv.weight": torch.zeros(1)}, "Flux"),
        ({"some.weight": torch.zeros(1)}, "top-level names are"),
    ],
)
def test_unknown_architecture_names_the_file_and_what_was_found(tmp_path, tensors, message) -> None:
    path = _file(tmp_path, tensors)
    with pytest.raises(UnknownArchitectureError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_unsupported_unet_shape_is_unknown_architecture(tmp_path: Path) -> None:
    ref = build_tiny_models("sd1")
    state = checkpoint_to_ldm("sd1", unet=ref.unet, vae=ref.vae, text_encoders=ref.text_encoders)
    state = {k: v for k, v in state.items() if not k.startswith("model.diffusion_model.output_blocks.5.")}
    path = _file(tmp_path, state)
    with pytest.raises(UnknownArchitectureError, match="output blocks"):
        load_checkpoint(path)


def test_header_parse_does_not_read_tensor_bytes(tiny_sd1_file: Path) -> None:
    header = files.read_safetensors_header(tiny_sd1_file)
    assert header.tensors["model.diffusion_model.input_blocks.0.0.weight"].shape == (32, 4, 3, 3)
    assert "alphas_cumprod" in header.tensors
