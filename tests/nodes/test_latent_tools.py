"""The latent toolbox: batch bookkeeping as ComfyUI keeps it, tiled VAE calls against whole ones, and
`.latent` files in ComfyUI's format."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from graph_engine import ExecutionContext, InputError
from nodes import builtin_registry
from nodes.diffusion.checkpoint.vae_ops import decode, encode
from nodes.diffusion.model import VAEModel
from nodes.folders import input_dir
from nodes.latent_tools import (
    latent_from_batch,
    latent_upscale_by,
    load_latent,
    repeat_latent_batch,
    save_latent,
    vae_decode_tiled,
    vae_encode_tiled,
)
from tests.support.tiny_sd import build_tiny_models

CTX = ExecutionContext(node_id=1, title="test")


def latent(b: int = 3, h: int = 8, w: int = 10) -> dict:
    return {"samples": torch.randn(b, 4, h, w, generator=torch.Generator().manual_seed(b))}


def widgets(type_name: str) -> list[tuple[str, object]]:
    return [(i.id, i.default) for i in builtin_registry().get(type_name).inputs if i.is_widget]


def test_declarations_match_comfyui() -> None:
    assert widgets("LatentUpscaleBy") == [("upscale_method", "nearest-exact"), ("scale_by", 1.5)]
    assert widgets("RepeatLatentBatch") == [("amount", 1)]
    assert widgets("LatentFromBatch") == [("batch_index", 0), ("length", 1)]
    assert [k for k, _ in widgets("VAEDecodeTiled")] == ["tile_size", "overlap", "temporal_size", "temporal_overlap"]
    assert widgets("VAEDecodeTiled")[:2] == [("tile_size", 512), ("overlap", 64)]
    assert [k for k, _ in widgets("VAEEncodeTiled")][:2] == ["tile_size", "overlap"]
    assert builtin_registry().get("LatentFromBatch").category == "latent/batch"


def test_upscale_by() -> None:
    lat = latent()
    (out,) = latent_upscale_by.execute(CTX, lat, "bilinear", 1.5)
    ref = torch.nn.functional.interpolate(lat["samples"], size=(12, 15), mode="bilinear")
    torch.testing.assert_close(out["samples"], ref)


def test_repeat_and_pick_keep_batch_indices_and_masks() -> None:
    lat = latent(2)
    lat["noise_mask"] = torch.rand(2, 1, 8, 10)
    (rep,) = repeat_latent_batch.execute(CTX, lat, 3)
    assert rep["samples"].shape[0] == 6 and rep["noise_mask"].shape[0] == 6
    torch.testing.assert_close(rep["samples"][4:], lat["samples"])
    assert "batch_index" not in rep
    (picked,) = latent_from_batch.execute(CTX, rep, 3, 2)
    torch.testing.assert_close(picked["samples"], rep["samples"][3:5])
    torch.testing.assert_close(picked["noise_mask"], lat["noise_mask"][[1, 0]])
    assert picked["batch_index"] == [3, 4]
    (again,) = repeat_latent_batch.execute(CTX, picked, 2)
    assert again["batch_index"] == [3, 4, 5, 6]
    (clamped,) = latent_from_batch.execute(CTX, lat, 9, 5)
    assert clamped["samples"].shape[0] == 1 and clamped["batch_index"] == [1]


def test_picked_latent_is_sampled_with_its_batch_noise() -> None:
    from nodes.diffusion.ksampler import _batch_index
    from nodes.diffusion.sampling import initial_noise

    (picked,) = latent_from_batch.execute(CTX, latent(4), 2, 1)
    index = _batch_index(picked, 1)
    assert index == [2]
    torch.testing.assert_close(initial_noise(5, (1, 4, 8, 10), batch_index=index), initial_noise(5, (4, 4, 8, 10))[2:3])


@pytest.fixture(scope="module")
def vae() -> VAEModel:
    return VAEModel(build_tiny_models("sd1").vae)


def test_tiled_decode_is_whole_with_one_tile_and_per_tile_without_overlap(vae: VAEModel) -> None:
    """The tiny VAE attends over the whole image, so tiles are checked against their own decodes (a
    tiled decode is exactly each tile decoded alone where only that tile covers the image)."""
    lat = {"samples": torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))}
    z = lat["samples"]
    whole = decode(vae.vae, z, scaling_factor=1.0, tile=False)
    (one,) = vae_decode_tiled.execute(CTX, lat, vae, 128, 0)
    torch.testing.assert_close(one, whole)
    (tiled,) = vae_decode_tiled.execute(CTX, lat, vae, 64, 0)
    assert tiled.shape == whole.shape
    for y in (0, 8):
        for x in (0, 8):
            alone = decode(vae.vae, z[:, :, y : y + 8, x : x + 8], scaling_factor=1.0, tile=False)
            torch.testing.assert_close(tiled[:, y * 8 : y * 8 + 64, x * 8 : x * 8 + 64], alone)
    (blended,) = vae_decode_tiled.execute(CTX, lat, vae, 96, 32)  # 12-cell tiles at 0 and 4
    first = decode(vae.vae, z[:, :, :12, :12], scaling_factor=1.0, tile=False)
    torch.testing.assert_close(blended[:, :32, :32], first[:, :32, :32], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(blended[:, 40:48, 40:48], first[:, 40:48, 40:48])


def test_tiled_encode_is_whole_with_one_tile_and_per_tile_without_overlap(vae: VAEModel) -> None:
    y, x = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 128), indexing="ij")
    img = torch.stack([x, y, (x + y) / 2], dim=-1)[None]
    whole = encode(vae.vae, img, scaling_factor=1.0)
    (one,) = vae_encode_tiled.execute(CTX, img, vae, 128, 0)
    torch.testing.assert_close(one["samples"], whole, atol=1e-5, rtol=1e-5)
    (tiled,) = vae_encode_tiled.execute(CTX, img, vae, 64, 0)
    assert tiled["samples"].shape == whole.shape
    for py in (0, 64):
        for px in (0, 64):
            alone = encode(vae.vae, img[:, py : py + 64, px : px + 64], scaling_factor=1.0)
            got = tiled["samples"][:, :, py // 8 : py // 8 + 8, px // 8 : px // 8 + 8]
            torch.testing.assert_close(got, alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(InputError) as err:
        vae_encode_tiled.execute(CTX, torch.rand(1, 4, 4, 3), vae, 64, 0)
    assert err.value.input_id == "pixels"


def test_save_and_load_latent_in_comfyui_format(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SDGRAPH_INPUT_DIR", str(tmp_path / "input"))
    ctx = ExecutionContext(node_id=1, title="t", output_dir=tmp_path / "out", workflow={"nodes": []})
    lat = latent(2)
    result = save_latent.execute(ctx, lat, "latents/test")
    (entry,) = result.ui["latents"]
    assert entry["filename"] == "test_00001_.latent" and entry["subfolder"] == "latents"
    tensors = load_file(entry["path"])
    assert set(tensors) == {"latent_tensor", "latent_format_version_0"}
    torch.testing.assert_close(tensors["latent_tensor"], lat["samples"])
    assert save_latent.execute(ctx, lat, "latents/test").ui["latents"][0]["filename"] == "test_00002_.latent"
    input_dir().mkdir(parents=True)
    shutil.copy(entry["path"], input_dir() / "a.latent")
    (loaded,) = load_latent.execute(ctx, "a.latent")
    torch.testing.assert_close(loaded["samples"], lat["samples"])
    # ComfyUI's first format: no version marker, the latent stored times 0.18215
    save_file({"latent_tensor": lat["samples"] * 0.18215}, str(input_dir() / "old.latent"))
    (old,) = load_latent.execute(ctx, "old.latent")
    torch.testing.assert_close(old["samples"], lat["samples"])
    (input_dir() / "junk.latent").write_bytes(b"\x00" * 20)
    for name in ("junk.latent", "../out/latents/test_00001_.latent", "missing.latent"):
        with pytest.raises(InputError) as err:
            load_latent.execute(ctx, name)
        assert err.value.input_id == "latent"
    with pytest.raises(InputError) as err:
        save_latent.execute(ctx, lat, "../escape")
    assert err.value.input_id == "filename_prefix"
