"""Device choice, the precision table, and VAE encode/decode conventions with the fp32 retry."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from nodes.diffusion import devices
from nodes.diffusion.checkpoint import vae_ops
from nodes.diffusion.checkpoint.load import load_vae
from nodes.diffusion.devices import cpu_has_native_bf16, pick_device, precision_for

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16


@pytest.mark.parametrize(
    ("device", "mode", "cpu_bf16", "cuda_bf16", "expected"),
    [
        ("cpu", "exact", True, None, (F32, F32, F32)),
        ("cpu", "exact", False, None, (F32, F32, F32)),
        ("cpu", "fast", True, None, (BF16, BF16, BF16)),
        ("cpu", "fast", False, None, (F32, F32, F32)),
        ("cuda", "exact", None, True, (F32, F32, F32)),
        ("cuda", "fast", None, True, (F16, BF16, F16)),
        ("cuda", "fast", None, False, (F16, F16, F16)),
        ("mps", "exact", None, None, (F32, F32, F32)),
        ("mps", "fast", None, None, (F16, F16, F16)),
    ],
)
def test_precision_table(device, mode, cpu_bf16, cuda_bf16, expected) -> None:
    assert precision_for(device, mode, cpu_bf16=cpu_bf16, cuda_bf16=cuda_bf16) == expected


def test_precision_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="exact"):
        precision_for("cpu", "quick")  # type: ignore[arg-type]


def test_native_bf16_comes_from_cpu_flags(monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert cpu_has_native_bf16(frozenset({"avx512f", "amx_bf16"}))
    assert cpu_has_native_bf16(frozenset({"avx512_bf16"}))
    assert not cpu_has_native_bf16(frozenset({"avx512f", "avx2"}))


def test_pick_device(monkeypatch) -> None:
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    assert pick_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")
    assert pick_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match="Unknown device"):
        pick_device("tpu")


def test_asking_for_a_missing_gpu_says_so(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA was requested"):
        pick_device("cuda")
    with pytest.raises(RuntimeError, match="MPS"):
        pick_device("mps")


def test_decode_and_encode_use_image_and_latent_conventions(tiny_sd1_file: Path) -> None:
    vae = load_vae(tiny_sd1_file)
    latents = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    image = vae_ops.decode(vae, latents)
    assert vae_ops.downscale_factor(vae) == 8  # four levels, like the released SD VAEs
    assert image.shape == (2, 32, 32, 3) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1 and image.device.type == "cpu"
    with torch.no_grad():
        direct = vae.decode(latents / vae.config.scaling_factor).sample
    assert torch.allclose(image, (direct / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1), atol=1e-6)

    encoded = vae_ops.encode(vae, image)
    assert encoded.shape == (2, 4, 4, 4)
    with torch.no_grad():
        mean = vae.encode(image.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mode()
    assert torch.allclose(encoded, mean * vae.config.scaling_factor, atol=1e-6)


def test_encode_crops_to_multiples_of_eight_and_drops_alpha(tiny_sd1_file: Path) -> None:
    vae = load_vae(tiny_sd1_file)
    rgba = torch.rand(1, 21, 19, 4)
    # 21x19 -> centre crop 16x16 (offsets 2, 1) -> 2x2 latent cells of 8x8 pixels.
    assert vae_ops.encode(vae, rgba).shape == (1, 4, 2, 2)
    assert torch.equal(vae_ops.encode(vae, rgba), vae_ops.encode(vae, rgba[:, 2:18, 1:17, :3]))
    with pytest.raises(ValueError, match="8x8 pixel cell"):
        vae_ops.encode(vae, torch.rand(1, 4, 20, 3))


def test_half_precision_nan_is_retried_in_fp32(tiny_sd1_file: Path, monkeypatch) -> None:
    vae = load_vae(tiny_sd1_file, dtype=torch.bfloat16)
    # The retry runs the bf16 weights in fp32 (it cannot recover precision the weights never had).
    reference = vae_ops.decode(copy.deepcopy(vae).float(), torch.ones(1, 4, 2, 2))
    real_decode = type(vae).decode
    dtypes_seen: list[torch.dtype] = []

    def nan_in_half(self, z, *args, **kwargs):
        dtypes_seen.append(next(self.parameters()).dtype)
        out = real_decode(self, z, *args, **kwargs)
        if next(self.parameters()).dtype != torch.float32:
            out.sample.fill_(float("nan"))
        return out

    monkeypatch.setattr(type(vae), "decode", nan_in_half)
    image = vae_ops.decode(vae, torch.ones(1, 4, 2, 2))
    assert dtypes_seen == [torch.bfloat16, torch.float32]
    assert torch.isfinite(image).all()
    assert torch.allclose(image, reference, atol=1e-6)
    assert next(vae.parameters()).dtype == torch.bfloat16  # the shared model was not modified
