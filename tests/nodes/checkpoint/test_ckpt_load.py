"""Loading tiny checkpoints of every family in both layouts: detection, weights, outputs, offline."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from nodes.diffusion.checkpoint.detect import detect_checkpoint
from nodes.diffusion.checkpoint.ldm_layout import checkpoint_to_ldm, save_state_dict, vae_to_ldm
from nodes.diffusion.checkpoint.load import LoadedCheckpoint, load_checkpoint, load_vae
from nodes.diffusion.errors import MissingComponentError
from tests.support.tiny_sd import build_tiny_models, tiny_configs

FAMILIES = ["sd1", "sd2", "sdxl", "sdxl_refiner"]
LAYOUTS = ["single_file", "diffusers"]
ARCH_FIELDS = [
    "in_channels",
    "out_channels",
    "block_out_channels",
    "layers_per_block",
    "down_block_types",
    "up_block_types",
    "cross_attention_dim",
    "attention_head_dim",
    "addition_embed_type",
    "addition_time_embed_dim",
    "projection_class_embeddings_input_dim",
    "use_linear_projection",
]


def _all_modules(ck: LoadedCheckpoint) -> list[torch.nn.Module]:
    assert ck.vae is not None
    return [ck.unet, ck.vae, *ck.text_encoders]


def _assert_same_weights(reference: torch.nn.Module, loaded: torch.nn.Module, dtype: torch.dtype) -> None:
    ref_sd, got_sd = reference.state_dict(), loaded.state_dict()
    assert set(ref_sd) == set(got_sd)
    for key, ref in ref_sd.items():
        expected = ref.to(dtype) if ref.is_floating_point() else ref
        assert torch.equal(got_sd[key], expected), key


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_loads_bit_exact(tiny_checkpoint, family: str, layout: str) -> None:
    ck = load_checkpoint(tiny_checkpoint(family, layout))
    ref = build_tiny_models(family)

    assert ck.family == family
    assert ck.prediction_type == ("v_prediction" if family == "sd2" else "epsilon")
    assert not ck.inpainting and ck.latent_channels == 4
    assert len(ck.text_encoders) == {"sd1": 1, "sd2": 1, "sdxl": 2, "sdxl_refiner": 1}[family]
    expected_unet = tiny_configs(family)["unet"]
    for name in ARCH_FIELDS:
        got, want = ck.unet.config.get(name), expected_unet.get(name)
        assert (list(got) if isinstance(got, tuple) else got) == want, name
    assert list(ck.vae.config.block_out_channels) == [32, 32, 32, 32]
    assert ck.vae_scaling_factor == (0.13025 if family.startswith("sdxl") else 0.18215)
    for key in ("beta_schedule", "beta_start", "beta_end", "num_train_timesteps", "prediction_type"):
        assert key in ck.scheduler_config
    assert ck.scheduler_config["prediction_type"] == ck.prediction_type

    for ref_m, got_m in zip([ref.unet, ref.vae, *ref.text_encoders], _all_modules(ck), strict=True):
        _assert_same_weights(ref_m, got_m, torch.float32)
        assert not any(t.is_meta for t in [*got_m.parameters(), *got_m.buffers()])
        assert not got_m.training


def test_sdxl_text_encoders_have_their_own_widths(tiny_sdxl_file: Path) -> None:
    ck = load_checkpoint(tiny_sdxl_file)
    assert [te.config.hidden_size for te in ck.text_encoders] == [32, 64]
    assert type(ck.text_encoders[1]).__name__ == "CLIPTextModelWithProjection"
    assert ck.text_encoders[1].config.projection_dim == 32


@pytest.mark.parametrize(
    ("file_dtype", "load_dtype"),
    [(torch.float16, torch.float16), (torch.float32, torch.bfloat16), (torch.float16, torch.float32)],
)
def test_loads_straight_into_the_target_dtype(tiny_checkpoint, file_dtype, load_dtype) -> None:
    ck = load_checkpoint(tiny_checkpoint("sd1", dtype=file_dtype), dtype=load_dtype, vae_dtype=torch.float32)
    ref = build_tiny_models("sd1")
    # Weights pass through the file's dtype first, then the load dtype.
    for ref_m, got_m, dtype in [(ref.unet, ck.unet, load_dtype), (ref.vae, ck.vae, torch.float32)]:
        ref_cast = ref_m.to(file_dtype)
        _assert_same_weights(ref_cast, got_m, dtype)
    assert next(ck.unet.parameters()).dtype == load_dtype
    assert next(ck.vae.parameters()).dtype == torch.float32
    assert next(ck.text_encoders[0].parameters()).dtype == load_dtype
    assert ck.dtype == load_dtype and ck.vae_dtype == torch.float32


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_unet_channels_last_hint_writes_the_layout_in_the_cast(tiny_checkpoint, family: str) -> None:
    """Fast mode's hint: the UNet's convolution weights arrive channels_last (no later copy), same values."""
    path = tiny_checkpoint(family, dtype=torch.float16)
    plain = load_checkpoint(path, dtype=torch.bfloat16)
    hinted = load_checkpoint(path, dtype=torch.bfloat16, unet_channels_last=True)
    convs = [(k, w) for k, w in hinted.unet.state_dict().items() if w.dim() == 4 and w.shape[-1] > 1]
    assert convs
    for key, weight in convs:
        assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous(), key
    _assert_same_weights(plain.unet, hinted.unet, torch.bfloat16)
    assert all(w.is_contiguous() for w in plain.unet.state_dict().values())  # without the hint: unchanged


def test_fp16_file_loaded_as_fp16_shares_the_mapped_file(tiny_checkpoint) -> None:
    """No copy: the parameters are views of the memory-mapped file, not heap copies."""
    path = tiny_checkpoint("sd1", dtype=torch.float16)
    ck = load_checkpoint(path, dtype=torch.float16)
    weight = ck.unet.conv_in.weight
    # A tensor made from the mmap is not resizable (its storage belongs to the file mapping).
    assert not weight.untyped_storage().resizable()
    maps = Path("/proc/self/maps")
    if maps.is_file():  # and its data lies inside the file's mapping (a numpy-shared heap buffer is
        # not resizable either: that check alone passed while every tensor was being copied)
        spans = [
            [int(x, 16) for x in line.split()[0].split("-")]
            for line in maps.read_text().splitlines()
            if line.endswith(str(path.resolve()))
        ]
        assert any(start <= weight.data_ptr() < end for start, end in spans)


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_outputs_equal_models_built_directly(tiny_checkpoint, family: str) -> None:
    ck = load_checkpoint(tiny_checkpoint(family))
    ref = build_tiny_models(family)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 8, 8, generator=gen)
    context = torch.randn(1, 7, ref.unet.config.cross_attention_dim, generator=gen)
    kwargs = {}
    if family == "sdxl":
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(1, 32, generator=gen),
            "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]),
        }
    with torch.no_grad():
        want = ref.unet(x, 10, context, **kwargs).sample
        got = ck.unet(x, 10, context, **kwargs).sample
        assert torch.allclose(got, want, atol=1e-6, rtol=0)
        image = torch.rand(1, 3, 16, 16, generator=gen) * 2 - 1
        assert torch.allclose(ck.vae.decode(x).sample, ref.vae.decode(x).sample, atol=1e-6, rtol=0)
        assert torch.allclose(
            ck.vae.encode(image).latent_dist.mean, ref.vae.encode(image).latent_dist.mean, atol=1e-6, rtol=0
        )
        ids = torch.randint(0, 49408, (1, 77), generator=gen)
        for ref_te, got_te in zip(ref.text_encoders, ck.text_encoders, strict=True):
            assert torch.equal(got_te(ids).last_hidden_state, ref_te(ids).last_hidden_state)


def test_inpainting_is_detected_from_nine_input_channels(tiny_checkpoint) -> None:
    ck = load_checkpoint(tiny_checkpoint("sd1", inpainting=True))
    assert ck.inpainting and ck.unet.config.in_channels == 9
    assert ck.latent_channels == 4


def _write_without(tmp_path: Path, family: str, drop_prefix: str) -> Path:
    ref = build_tiny_models(family)
    state = checkpoint_to_ldm(family, unet=ref.unet, vae=ref.vae, text_encoders=ref.text_encoders)
    kept = {k: v for k, v in state.items() if not k.startswith(drop_prefix)}
    return save_state_dict(tmp_path / f"{family}_no_{drop_prefix.strip('.')}.safetensors", kept)


def test_missing_vae_is_a_clear_error(tmp_path: Path) -> None:
    path = _write_without(tmp_path, "sd1", "first_stage_model.")
    with pytest.raises(MissingComponentError, match="vae") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "VAE loader" in str(info.value)
    ck = load_checkpoint(path, require_vae=False)
    assert ck.vae is None


def test_missing_text_encoder_is_a_clear_error(tmp_path: Path) -> None:
    path = _write_without(tmp_path, "sdxl", "conditioner.embedders.1.")
    with pytest.raises(MissingComponentError, match="text_encoder_2"):
        load_checkpoint(path)


def test_a_missing_unet_weight_names_the_component(tmp_path: Path) -> None:
    ref = build_tiny_models("sd1")
    state = checkpoint_to_ldm("sd1", unet=ref.unet, vae=ref.vae, text_encoders=ref.text_encoders)
    del state["model.diffusion_model.time_embed.2.bias"]
    path = save_state_dict(tmp_path / "holey.safetensors", state)
    with pytest.raises(MissingComponentError, match=r"unet.*time_embedding\.linear_2\.bias"):
        load_checkpoint(path)


@pytest.mark.parametrize("prefix", ["", "first_stage_model."])
def test_standalone_vae_file_with_or_without_prefix(tmp_path: Path, prefix: str) -> None:
    ref = build_tiny_models("sdxl")
    path = save_state_dict(tmp_path / "vae.safetensors", vae_to_ldm(ref.vae.state_dict(), ref.vae.config, prefix))
    vae = load_vae(path, family="sdxl")
    _assert_same_weights(ref.vae, vae, torch.float32)
    assert vae.config.scaling_factor == 0.13025
    assert load_vae(path, overrides={"scaling_factor": 0.5}).config.scaling_factor == 0.5


def test_vae_from_a_full_checkpoint_and_a_diffusers_folder(tiny_sd1_file: Path, tiny_sd1_folder: Path) -> None:
    ref = build_tiny_models("sd1")
    _assert_same_weights(ref.vae, load_vae(tiny_sd1_file), torch.float32)
    _assert_same_weights(ref.vae, load_vae(tiny_sd1_folder / "vae", dtype=torch.bfloat16), torch.bfloat16)


def test_loading_never_opens_a_network_connection(monkeypatch, tiny_checkpoint) -> None:
    attempts: list[object] = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network access attempted during model loading")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, a))
    for family in FAMILIES:
        for layout in LAYOUTS:
            load_checkpoint(tiny_checkpoint(family, layout))
    load_vae(tiny_checkpoint("sd1"))
    assert attempts == []


def test_detected_architecture_matches_what_was_written(tiny_checkpoint) -> None:
    for family in FAMILIES:
        detected = detect_checkpoint(tiny_checkpoint(family))
        configs = tiny_configs(family)
        for spec in detected.text_encoders:
            for name in (
                "hidden_size",
                "num_hidden_layers",
                "intermediate_size",
                "num_attention_heads",
                "vocab_size",
                "max_position_embeddings",
                "hidden_act",
            ):
                assert spec.config[name] == configs[spec.name][name], (family, spec.name, name)
    sdxl = detect_checkpoint(tiny_checkpoint("sdxl")).unet_config
    # Written as [1, 2] with level 0 attention-free: one depth where attention exists reads back as 2.
    assert sdxl["transformer_layers_per_block"] == 2
    assert sdxl["addition_time_embed_dim"] == 8
