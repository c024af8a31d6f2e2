"""The precision and layout policy: which dtype and memory format on which device, with the CPU's bf16
capability mocked both ways, and how the run's settings reach it."""

from __future__ import annotations

import pytest
import torch

from app.settings import Settings
from nodes.diffusion import devices, runtime
from nodes.diffusion.devices import channels_last_helps, precision_for

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
AMX = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
AVX2_ONLY = frozenset({"avx2", "fma"})  # this project's EPYC test machine


@pytest.fixture
def cpu(monkeypatch):
    """Set the CPU's flags for one test (and make torch's own capability report uninformative)."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")

    def use(flags: frozenset[str]) -> None:
        monkeypatch.setattr(devices, "cpu_flags", lambda: flags)

    return use


@pytest.mark.parametrize(
    ("flags", "mode", "expected"),
    [
        (AMX, "exact", (F32, F32, F32)),
        (AMX, "fast", (BF16, BF16, BF16)),
        (AVX2_ONLY, "exact", (F32, F32, F32)),
        # Emulated bf16 is slower than fp32 (docs/benchmarks.md), so "fast" means fp32 here.
        (AVX2_ONLY, "fast", (F32, F32, F32)),
    ],
)
def test_cpu_precision_follows_native_bf16(cpu, flags, mode, expected) -> None:
    cpu(flags)
    assert precision_for("cpu", mode) == expected
    assert runtime.dtypes_for(torch.device("cpu"), {"precision": mode}) == expected


def test_gpu_precision(monkeypatch) -> None:
    assert precision_for("cuda", "fast", cuda_bf16=True) == (F16, BF16, F16)  # VAE in bf16: no fp16 overflow
    assert precision_for("cuda", "fast", cuda_bf16=False) == (F16, F16, F16)
    assert precision_for("cuda", "exact", cuda_bf16=True) == (F32, F32, F32)
    assert precision_for("mps", "fast") == (F16, F16, F16)


def test_override_forces_bf16_on_a_cpu_without_it(cpu) -> None:
    cpu(AVX2_ONLY)
    settings = {"precision": "fast", "cpu_bf16": True}
    assert runtime.dtypes_for(torch.device("cpu"), settings) == (BF16, BF16, BF16)
    cpu(AMX)
    assert runtime.dtypes_for(torch.device("cpu"), {"precision": "fast", "cpu_bf16": False}) == (F32, F32, F32)


def test_settings_object_is_read_when_the_mapping_has_no_key(cpu) -> None:
    cpu(AMX)
    app = Settings(precision="fast", compile=True)
    assert runtime.dtypes_for(torch.device("cpu"), {"settings": app}) == (BF16, BF16, BF16)
    assert runtime.compile_enabled({"settings": app})
    assert not runtime.compile_enabled({"settings": app, "compile": False})  # the run's own key wins
    assert runtime.dtypes_for(torch.device("cpu"), {"settings": app, "precision": "exact"}) == (F32, F32, F32)
    assert runtime.dtypes_for(torch.device("cpu"), {"precision": "bogus"}) == (F32, F32, F32)


def test_channels_last_only_where_measured_to_help(cpu) -> None:
    cpu(AMX)
    assert channels_last_helps("cpu", BF16)
    assert not channels_last_helps("cpu", F32)
    cpu(AVX2_ONLY)
    assert not channels_last_helps("cpu", BF16)  # emulated bf16 is never the choice anyway
    assert channels_last_helps("cpu", F32)  # measured: 6.49 -> 5.67 s/step on the AVX2 EPYC
    cpu(frozenset({"avx2", "avx512f"}))  # AVX-512 without native bf16: not measured, left off
    assert not channels_last_helps("cpu", F32)
    assert channels_last_helps("cuda", F16) and not channels_last_helps("cuda", F32)
    assert not channels_last_helps("mps", F16)


def test_prepare_unet_sets_the_memory_format(cpu) -> None:
    cpu(AMX)
    conv = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3)).to(BF16)
    assert runtime.prepare_unet(conv, torch.device("cpu"), BF16, fast=True)
    assert conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    cpu(AMX)
    plain = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3))
    assert not runtime.prepare_unet(plain, torch.device("cpu"), F32, fast=True)
    assert plain[0].weight.is_contiguous()


def test_exact_mode_keeps_the_reference_layout_even_on_a_shared_unet(cpu) -> None:
    """Fast and exact fp32 share one cached UNet on an AVX2 CPU; exact must put the layout back."""
    cpu(frozenset({"avx2"}))
    conv = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3))
    assert runtime.prepare_unet(conv, torch.device("cpu"), F32, fast=True)
    assert conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not runtime.prepare_unet(conv, torch.device("cpu"), F32, fast=False)
    assert conv[0].weight.is_contiguous()


def test_memory_settings_reach_the_manager(monkeypatch) -> None:
    from nodes.diffusion.model_manager import ModelManager

    monkeypatch.setattr(runtime, "_manager", ModelManager(budget_bytes=123))
    runtime.apply_memory_settings({"settings": Settings(model_budget_mb=0, vram_budget_mb=0)})
    assert runtime.manager().budget_bytes == 123  # 0 keeps the automatic budget
    runtime.apply_memory_settings({"settings": Settings(model_budget_mb=512, vram_budget_mb=4096)})
    assert runtime.manager().budget_bytes == 512 * 2**20
    assert runtime.vram_budget_bytes() == 4096 * 2**20
    runtime.apply_memory_settings({})
    assert runtime.vram_budget_bytes() == 0


def test_vram_budget_moves_idle_models_to_the_cpu(monkeypatch) -> None:
    """Under a VRAM budget, loading onto a GPU first moves least-recently-used idle models off it."""
    from nodes.diffusion.model_manager import ModelKey, ModelManager, _Entry

    class Fake:
        def __init__(self) -> None:
            self.moved_to: list[str] = []

        def to(self, device):
            self.moved_to.append(str(device))
            return self

    mgr = ModelManager(budget_bytes=10**12)
    monkeypatch.setattr(runtime, "_manager", mgr)
    old, new = Fake(), Fake()
    for i, value in enumerate((old, new)):
        key = ModelKey("checkpoint", f"/m{i}", 0, 0, "cuda:0", (), "{}")
        mgr._entries[key] = _Entry(key, value, 3 * 2**30, last_used=float(i))
    runtime.apply_memory_settings({"vram_budget_mb": 8 * 1024})
    # 6 GB resident, budget 8 GB: a 3 GB load needs one model moved, the older one.
    assert runtime.make_vram_room(torch.device("cuda:0"), 3 * 2**30)
    assert old.moved_to == ["cpu"] and new.moved_to == []
    runtime.apply_memory_settings({})


def test_fast_mode_says_what_it_picked_and_why(cpu) -> None:
    cpu(AMX)
    line = devices.fast_mode_choice("cpu")
    assert "UNet bf16" in line and "channels_last" in line and "amx_bf16" in line
    cpu(AVX2_ONLY)
    line = devices.fast_mode_choice("cpu")
    assert "UNet fp32" in line and "AVX2" in line and "neither AMX-BF16 nor AVX512-BF16" in line
