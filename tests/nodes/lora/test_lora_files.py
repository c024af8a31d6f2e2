"""Which files load_lora refuses, and the errors apply_lora gives for a LoRA made for another model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from nodes.diffusion.clip import ClipModel
from nodes.diffusion.errors import CorruptCheckpointError, ModelError
from nodes.diffusion.lora import LoraFormatError, LoraLayer, LoraMismatchError, apply_lora, load_lora
from nodes.diffusion.model import DiffusionModel
from tests.nodes.lora.lora_support import LoraWriter
from tests.support.tiny_sd import TinyModels, build_tiny_models


def test_pickle_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"lora_unet_x.lora_down.weight": torch.zeros(1, 2)}, path)
    with pytest.raises(LoraFormatError, match=r"old\.pt.*only \.safetensors.*can run code") as info:
        load_lora(path)
    assert isinstance(info.value, ModelError)


def test_damaged_safetensors_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CorruptCheckpointError, match=r"broken\.safetensors"):
        load_lora(path)


def test_alpha_and_metadata_read(sd1: TinyModels, tmp_path: Path) -> None:
    w = LoraWriter()
    w.kohya(sd1.unet, "conv_in", "lora_unet_conv_in", rank=8, alpha=4.0)
    path = tmp_path / "m.safetensors"
    save_file(w.tensors, str(path), metadata={"ss_base_model_version": "sd_v1"})
    (layer,) = load_lora(path).layers
    assert (layer.target, layer.path, layer.rank, layer.alpha, layer.scale) == ("unet", "conv_in", 8, 4.0, 0.5)
    assert load_lora(path).trained_for == "sd_v1"


@pytest.mark.parametrize(
    ("keys", "kind"),
    [
        (["lora_unet_conv_in.a1.weight", "lora_unet_conv_in.a2.weight", "lora_unet_conv_in.b1.weight"], "GLoRA"),
        (["lora_unet_conv_in.oft_blocks", "lora_unet_conv_in.alpha"], "OFT"),
        (["lora_unet_conv_in.weight", "lora_unet_conv_in.on_input"], "IA"),
    ],
)
def test_unsupported_adapters_named(tmp_path: Path, keys: list[str], kind: str) -> None:
    path = tmp_path / "lyco.safetensors"
    save_file({k: torch.ones(2, 2) for k in keys}, str(path))
    with pytest.raises(LoraFormatError, match=rf"lyco\.safetensors.*{keys[0]}.*{kind}"):
        load_lora(path)


def test_incomplete_loha_named(tmp_path: Path) -> None:
    """A LoHa missing its second Hadamard factor is refused with the roles it has, not half-applied."""
    path = tmp_path / "lyco.safetensors"
    keys = ["lora_unet_conv_in.hada_w1_a", "lora_unet_conv_in.hada_w1_b", "lora_unet_conv_in.alpha"]
    save_file({k: torch.ones(2, 2) for k in keys}, str(path))
    with pytest.raises(LoraFormatError, match=r"incomplete.*LoHa.*lora_unet_conv_in: hada_w1_a, hada_w1_b"):
        load_lora(path)


def test_dora_scale_read_with_its_pair(sd1: TinyModels, tmp_path: Path) -> None:
    w = LoraWriter()
    w.kohya(sd1.unet, "conv_in", "lora_unet_conv_in", alpha=1.0)
    w.tensors["lora_unet_conv_in.dora_scale"] = torch.full((32, 1, 1, 1), 2.0)
    (layer,) = load_lora(w.save(tmp_path / "dora.safetensors")).layers
    assert isinstance(layer, LoraLayer) and layer.dora_scale is not None
    assert torch.equal(layer.dora_scale, torch.full((32, 1, 1, 1), 2.0))


def test_unsupported_refused_unless_not_strict(sd1: TinyModels, tmp_path: Path) -> None:
    w = LoraWriter()
    w.kohya(sd1.unet, "conv_in", "lora_unet_conv_in", alpha=1.0)
    w.tensors["lora_unet_conv_out.oft_blocks"] = torch.ones(1, 4, 4)
    path = w.save(tmp_path / "oft.safetensors")
    with pytest.raises(LoraFormatError, match=r"oft_blocks.*OFT.*strict=False"):
        load_lora(path)
    lora = load_lora(path, strict=False)
    assert len(lora.layers) == 1 and lora.ignored == ("lora_unet_conv_out.oft_blocks",)


def test_half_a_pair_refused(sd1: TinyModels, tmp_path: Path) -> None:
    w = LoraWriter()
    w.kohya(sd1.unet, "conv_in", "lora_unet_conv_in", alpha=1.0)
    del w.tensors["lora_unet_conv_in.lora_up.weight"]
    with pytest.raises(LoraFormatError, match=r"only one of their two matrices.*lora_unet_conv_in"):
        load_lora(w.save(tmp_path / "half.safetensors"))


def test_sdxl_lora_on_sd1_model(sd1_model: DiffusionModel, sd1_clip: ClipModel, tmp_path: Path) -> None:
    """A LoRA written for every attention layer and text-encoder layer of a (tiny) SDXL model."""
    xl = build_tiny_models("sdxl", seed=1)
    w = LoraWriter()
    for name, module in xl.unet.named_modules():
        if ".attn" in name and isinstance(module, torch.nn.Linear):
            w.kohya(xl.unet, name, "lora_unet_" + name.replace(".", "_"), alpha=1.0)
    for i, encoder in enumerate(xl.text_encoders, start=1):
        for name, module in encoder.named_modules():
            if isinstance(module, torch.nn.Linear) and "encoder.layers" in name:
                base = f"lora_te{i}_text_model_" + name.removeprefix("text_model.").replace(".", "_")
                w.kohya(encoder, name, base, alpha=1.0)
    path = tmp_path / "xl_style.safetensors"
    save_file(w.tensors, str(path), metadata={"ss_base_model_version": "sdxl_base_v1-0"})
    lora = load_lora(path)

    with pytest.raises(LoraMismatchError) as info:
        apply_lora(sd1_model, sd1_clip, lora, 1.0, 1.0)
    msg = str(info.value)
    assert msg.startswith("lora 'xl_style.safetensors' does not fit this sd1 model: ")
    assert "UNet layers are not in the model (first: lora_unet_down_blocks_1_attentions_0" in msg
    assert "have no text encoder 2 in a sd1 CLIP" in msg
    assert "trained for sdxl_base_v1-0" in msg
    assert isinstance(info.value, ModelError)
    # Model-only loading (no CLIP) is refused too: the UNet part does not fit either.
    with pytest.raises(LoraMismatchError):
        apply_lora(sd1_model, None, lora, 1.0, 0.0)


def test_other_shapes_named(sd1: TinyModels, sd1_model: DiffusionModel, tmp_path: Path) -> None:
    """Same layer names, other widths (an SD2-like 64-wide cross-attention on this 32-wide SD1 model)."""
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for i in range(2):
        base = f"lora_unet_down_blocks_0_attentions_{i}_transformer_blocks_0_attn2_to_k"
        tensors[f"{base}.lora_down.weight"] = torch.randn(4, 64, generator=g)
        tensors[f"{base}.lora_up.weight"] = torch.randn(32, 4, generator=g)
    path = tmp_path / "wide.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(LoraMismatchError) as info:
        apply_lora(sd1_model, None, load_lora(path), 1.0, 1.0)
    msg = str(info.value)
    assert "2 of 2 UNet layers have other shapes" in msg
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k: LoRA 64→4→32, layer Linear 32→32" in msg

    # A conv LoRA whose kernel is not the layer's (1×1 on the 3×3 conv_in), next to one that fits.
    tensors = {
        "lora_unet_conv_in.lora_down.weight": torch.randn(4, 4, 1, 1, generator=g),
        "lora_unet_conv_in.lora_up.weight": torch.randn(32, 4, 1, 1, generator=g),
        "lora_unet_conv_out.lora_down.weight": torch.randn(4, 32, 3, 3, generator=g),
        "lora_unet_conv_out.lora_up.weight": torch.randn(4, 4, 1, 1, generator=g),
    }
    save_file(tensors, str(path))
    with pytest.raises(
        LoraMismatchError,
        match=r"1 of 2 UNet layers have other shapes \(first: conv_in: LoRA 4→4→32 1×1, layer Conv2d 4→32 3×3\)",
    ):
        apply_lora(sd1_model, None, load_lora(path), 1.0, 1.0)


def test_nothing_maps(sd1_model: DiffusionModel, sd1_clip: ClipModel, tmp_path: Path) -> None:
    tensors = {
        "lora_unet_foo_bar.lora_down.weight": torch.ones(2, 4),
        "lora_unet_foo_bar.lora_up.weight": torch.ones(4, 2),
        "lora_te_text_model_encoder_layers_7_mlp_fc1.lora_down.weight": torch.ones(2, 32),
        "lora_te_text_model_encoder_layers_7_mlp_fc1.lora_up.weight": torch.ones(64, 2),
    }
    path = tmp_path / "odd.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(LoraMismatchError, match=r"1 of 1 UNet layers are not in the model.*1 of 1 text encoder layers"):
        apply_lora(sd1_model, sd1_clip, load_lora(path), 1.0, 1.0)


def test_text_only_lora_without_clip(sd1: TinyModels, sd1_model: DiffusionModel, tmp_path: Path) -> None:
    w = LoraWriter()
    w.kohya(sd1.text_encoders[0], "encoder.layers.0.mlp.fc1", "lora_te_text_model_encoder_layers_0_mlp_fc1", alpha=1)
    with pytest.raises(LoraMismatchError, match="only changes the text encoders"):
        apply_lora(sd1_model, None, load_lora(w.save(tmp_path / "te.safetensors")), 1.0, 1.0)
