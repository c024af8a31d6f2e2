"""The VAE in fast mode: bf16 + channels_last where the CPU has native bf16, close to fp32 (PSNR floor),
safe from the fp16 overflow; exact mode keeps fp32 in the reference layout."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from diffusers import AutoencoderKL

from graph_engine import ExecutionContext
from nodes.diffusion import devices, runtime
from nodes.diffusion.checkpoint import vae_ops
from nodes.diffusion.loading import served_vae

AMX = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
AVX2_ONLY = frozenset({"avx2", "fma"})

# Measured: the tiny VAE below decodes at 53.9 dB in bf16 against fp32, the full-size SD1.5 VAE at 50.9 dB
# (docs/benchmarks.md). A fast path that casts wrongly or loses the layout's numerics lands far below.
DECODE_PSNR_FLOOR_DB = 40.0


@pytest.fixture
def cpu(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")

    def use(flags: frozenset[str]) -> None:
        monkeypatch.setattr(devices, "cpu_flags", lambda: flags)

    return use


def tiny_vae(dtype: torch.dtype = torch.float32) -> AutoencoderKL:
    """SD's VAE layout (4 latent channels, ResNet blocks, mid attention) at a test's size, seeded."""
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    )
    return vae.eval().to(dtype)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def latents(seed: int = 1, size: int = 16) -> torch.Tensor:
    return torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(seed))


def test_fast_mode_runs_a_bf16_vae_channels_last_and_exact_mode_puts_the_layout_back(cpu) -> None:
    cpu(AMX)
    vae = tiny_vae(torch.bfloat16)
    conv = vae.decoder.conv_in.weight
    assert served_vae(ExecutionContext(1, "Load Checkpoint", settings={"precision": "fast"}), vae, "tiny").vae is vae
    assert vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()  # really converted, not just reported
    served_vae(ExecutionContext(1, "Load Checkpoint", settings={"precision": "exact"}), vae, "tiny")
    assert vae.decoder.conv_in.weight.is_contiguous()


@pytest.mark.parametrize(("flags", "dtype"), [(AMX, torch.float32), (AVX2_ONLY, torch.float32)])
def test_an_fp32_vae_keeps_the_reference_layout_in_fast_mode(cpu, flags, dtype) -> None:
    cpu(flags)
    vae = tiny_vae(dtype)
    assert not runtime.prepare_vae(vae, fast=True)
    assert vae.decoder.conv_in.weight.is_contiguous()


def test_weights_that_cannot_go_channels_last_are_left_alone(cpu) -> None:
    cpu(AMX)
    video = torch.nn.Sequential(torch.nn.Conv3d(4, 4, 3)).to(torch.bfloat16)
    assert not runtime.prepare_vae(video, fast=True)
    assert video[0].weight.is_contiguous()


def test_fast_decode_and_encode_stay_close_to_fp32(cpu) -> None:
    cpu(AMX)
    exact, fast = tiny_vae(torch.float32), tiny_vae(torch.bfloat16)
    runtime.prepare_vae(fast, fast=True)
    z = latents()
    reference = vae_ops.decode(exact, z)
    image = vae_ops.decode(fast, z)
    assert image.dtype == torch.float32 and image.shape == reference.shape
    assert psnr(image, reference) >= DECODE_PSNR_FLOOR_DB
    assert psnr(image, vae_ops.decode(exact, z * 0.5)) < DECODE_PSNR_FLOOR_DB  # the floor tells images apart
    ref_latent = vae_ops.encode(exact, reference)
    got = vae_ops.encode(fast, reference)
    assert float((got - ref_latent).abs().max() / ref_latent.abs().max()) < 0.03


def test_bf16_has_fp32_range_where_fp16_overflows(cpu, caplog) -> None:
    """A VAE whose inner activations exceed fp16's 65504 (SDXL's does; here the first convolution is
    scaled up): fp16 needs the fp32 retry, bf16 (fp32's exponent) decodes it directly."""
    cpu(AMX)
    z = latents()

    def loud(dtype: torch.dtype) -> AutoencoderKL:
        vae = tiny_vae(torch.float32)
        with torch.no_grad():
            vae.decoder.conv_in.weight.mul_(1e5)  # GroupNorm right after makes the image scale-free
        return vae.to(dtype)

    reference = vae_ops.decode(loud(torch.float32), z)
    caplog.set_level(logging.WARNING, logger=vae_ops.__name__)
    vae_ops.decode(loud(torch.float16), z)
    assert "retrying in float32" in caplog.text
    caplog.clear()
    fast = loud(torch.bfloat16)
    runtime.prepare_vae(fast, fast=True)
    image = vae_ops.decode(fast, z)
    assert "retrying" not in caplog.text
    assert psnr(image, reference) >= DECODE_PSNR_FLOOR_DB


def test_a_cpu_allocation_failure_retries_the_decode_in_tiles(monkeypatch) -> None:
    """The CPU allocator's own error (not CUDA's "out of memory") must also send decode to tiles."""
    try:
        torch.empty(2**60, dtype=torch.uint8)  # the real message of a host allocation failure
    except RuntimeError as exc:
        failure = exc
    vae = tiny_vae()
    z = latents(size=8)
    whole = vae_ops.decode(vae, z, tile=False)
    real_decode = type(vae).decode

    def decode(self: AutoencoderKL, part: torch.Tensor, *a: object, **k: object) -> object:
        if part.shape[-1] == 8:  # the whole image does not fit; its 4-cell tiles do
            raise failure
        return real_decode(self, part, *a, **k)

    monkeypatch.setattr(type(vae), "decode", decode)
    with pytest.raises(RuntimeError, match="can't allocate memory"):
        vae_ops.decode(vae, z, tile=False)  # tiling refused: the error goes to the caller
    image = vae_ops.decode(vae, z, tile_cells=4, overlap_cells=2)
    assert image.shape == whole.shape and torch.isfinite(image).all()
    torch.testing.assert_close(image, vae_ops.decode(vae, z, tile=True, tile_cells=4, overlap_cells=2))
