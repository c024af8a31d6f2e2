"""LyCORIS LoHa / LoKr / full diff, LoCon's Tucker ``lora_mid`` and DoRA against hand-merged weights.

Each test writes a kohya-keyed file (``lora_unet_<path>.<role>``) with seeded tensors, applies it through
``apply_lora`` and compares the UNet's prediction with a copy of the UNet whose weights were replaced by
``W + ΔW``, ΔW computed here from the format's definition — written differently from the code under test
(explicit broadcasting instead of ``torch.kron``/``einsum`` strings), so a shared mistake is unlikely.
DoRA's formula is also checked against peft's ``use_dora`` layer.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor

from nodes.diffusion.lora import LoraMismatchError, LycorisLayer, apply_lora, load_lora
from nodes.diffusion.model import DiffusionModel
from tests.nodes.lora.lora_support import TOL, diffusion_model, max_diff, unet_out
from tests.support.tiny_sd import TinyModels

LINEAR = "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2"  # Linear 128 → 32, with bias
CONV = "down_blocks.0.resnets.1.conv1"  # Conv2d 32 → 32, 3×3
STRIDED = "down_blocks.0.downsamplers.0.conv"  # Conv2d 32 → 32, 3×3, stride 2


def kohya(module: str) -> str:
    return "lora_unet_" + module.replace(".", "_")


class File:
    """Seeded tensors under kohya keys, and the hand-computed ΔW (and bias diff) per module."""

    def __init__(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.tensors: dict[str, Tensor] = {}
        self.deltas: dict[str, Tensor] = {}
        self.bias_deltas: dict[str, Tensor] = {}

    def rand(self, key: str, *shape: int, std: float = 0.3) -> Tensor:
        t = torch.randn(*shape, generator=self.gen) * std
        self.tensors[key] = t
        return t

    def alpha(self, module: str, value: float) -> None:
        self.tensors[f"{kohya(module)}.alpha"] = torch.tensor(value)

    def save(self, path: Path) -> Path:
        save_file({k: v.contiguous() for k, v in self.tensors.items()}, str(path))
        return path


def oracle(unet: torch.nn.Module, f: File, strength: float) -> DiffusionModel:
    out = copy.deepcopy(unet)
    with torch.no_grad():
        for name, delta in f.deltas.items():
            w = out.get_submodule(name).weight
            w += (strength * delta.double()).reshape(w.shape).to(w.dtype)
        for name, db in f.bias_deltas.items():
            out.get_submodule(name).bias += strength * db
    return diffusion_model(out)


def cp(core: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """The Tucker/CP rebuild ``Σ_pq core[p,q,k,l]·a[p,o]·b[q,i]`` by broadcasting, as (o, i, k, l)."""
    kh, kw = core.shape[2:]
    prod = core[:, :, None, None] * a[:, None, :, None, None, None] * b[None, :, None, :, None, None]
    return prod.sum(dim=(0, 1)).reshape(a.shape[1], b.shape[1], kh, kw)


def kron(a: Tensor, b: Tensor) -> Tensor:
    """Kronecker product written out: block (i, j) of the result is ``a[i, j] · b``."""
    if b.ndim == 4:
        prod = a[:, None, :, None, None, None] * b[None, :, None, :, :, :]
        return prod.reshape(a.shape[0] * b.shape[0], a.shape[1] * b.shape[1], *b.shape[2:])
    prod = a[:, None, :, None] * b[None, :, None, :]
    return prod.reshape(a.shape[0] * b.shape[0], a.shape[1] * b.shape[1])


def check(sd1: TinyModels, sd1_model: DiffusionModel, f: File, path: Path, strength: float) -> None:
    patched, _ = apply_lora(sd1_model, None, load_lora(f.save(path)), strength, 0.0)
    want = unet_out(oracle(sd1.unet, f, strength))
    assert max_diff(unet_out(patched), want) <= TOL
    assert max_diff(unet_out(sd1_model), want) > 1e-3  # the update really changes the output


def loha_file(sd1: TinyModels, *, tucker: bool) -> File:
    f = File(seed=3)
    rank = 4
    for module in (LINEAR, CONV, STRIDED):
        w = sd1.unet.get_submodule(module).weight
        out, fan_in = w.shape[0], w[0].numel()
        k = kohya(module)
        if tucker and w.ndim == 4:
            kh, kw = w.shape[2:]
            m = []
            for i in (1, 2):
                a = f.rand(f"{k}.hada_w{i}_a", rank, out)
                b = f.rand(f"{k}.hada_w{i}_b", rank, w.shape[1])
                t = f.rand(f"{k}.hada_t{i}", rank, rank, kh, kw)
                m.append(cp(t, a, b))
        else:
            m = [
                f.rand(f"{k}.hada_w{i}_a", out, rank) @ f.rand(f"{k}.hada_w{i}_b", rank, fan_in, std=0.2)
                for i in (1, 2)
            ]
        f.alpha(module, 2.0)
        f.deltas[module] = (m[0] * m[1] * (2.0 / rank)).reshape(w.shape)
    return f


@pytest.mark.parametrize("tucker", [False, True])
def test_loha(sd1: TinyModels, sd1_model: DiffusionModel, tmp_path: Path, tucker: bool) -> None:
    f = loha_file(sd1, tucker=tucker)
    lora = load_lora(f.save(tmp_path / "x.safetensors"))
    assert all(isinstance(ly, LycorisLayer) and ly.kind == "loha" for ly in lora.layers)
    check(sd1, sd1_model, f, tmp_path / "loha.safetensors", 0.8)


def test_lokr(sd1: TinyModels, sd1_model: DiffusionModel, tmp_path: Path) -> None:
    f = File(seed=4)
    # Linear 128 → 32: full w1 (4×8) ⊗ low-rank w2 (8×16, rank 2) → scale alpha / 2.
    k = kohya(LINEAR)
    w1 = f.rand(f"{k}.lokr_w1", 4, 8)
    w2 = f.rand(f"{k}.lokr_w2_a", 8, 2) @ f.rand(f"{k}.lokr_w2_b", 2, 16)
    f.alpha(LINEAR, 3.0)
    f.deltas[LINEAR] = kron(w1, w2) * (3.0 / 2)
    # 3×3 conv 32 → 32: both factors full (4-D w2), alpha present but unused, as LyCORIS defines it.
    k = kohya(CONV)
    f.deltas[CONV] = kron(f.rand(f"{k}.lokr_w1", 2, 4), f.rand(f"{k}.lokr_w2", 16, 8, 3, 3))
    f.alpha(CONV, 5.0)
    # strided conv: low-rank w1 (rank 1) and a Tucker w2 (rank 3) → scale alpha / 3.
    k = kohya(STRIDED)
    w1 = f.rand(f"{k}.lokr_w1_a", 4, 1) @ f.rand(f"{k}.lokr_w1_b", 1, 2)
    a, b = f.rand(f"{k}.lokr_w2_a", 3, 8), f.rand(f"{k}.lokr_w2_b", 3, 16)
    w2 = cp(f.rand(f"{k}.lokr_t2", 3, 3, 3, 3), a, b)
    f.alpha(STRIDED, 1.5)
    f.deltas[STRIDED] = kron(w1, w2) * (1.5 / 3)
    check(sd1, sd1_model, f, tmp_path / "lokr.safetensors", -0.6)


def test_full_diff(sd1: TinyModels, sd1_model: DiffusionModel, tmp_path: Path) -> None:
    f = File(seed=5)
    for module in (LINEAR, STRIDED):
        layer = sd1.unet.get_submodule(module)
        k = kohya(module)
        f.deltas[module] = f.rand(f"{k}.diff", *layer.weight.shape, std=0.05)
        f.bias_deltas[module] = f.rand(f"{k}.diff_b", *layer.bias.shape, std=0.1)
    f.alpha(LINEAR, 100.0)  # a diff has no rank: alpha must not scale it
    check(sd1, sd1_model, f, tmp_path / "full.safetensors", 1.3)


def test_locon_tucker_mid(sd1: TinyModels, sd1_model: DiffusionModel, tmp_path: Path) -> None:
    f = File(seed=6)
    rank = 3
    for module in (CONV, STRIDED):
        k = kohya(module)
        down = f.rand(f"{k}.lora_down.weight", rank, 32, 1, 1)
        mid = f.rand(f"{k}.lora_mid.weight", rank, rank, 3, 3)
        up = f.rand(f"{k}.lora_up.weight", 32, rank, 1, 1)
        f.alpha(module, 1.0)
        # ΔW[o, c, k, l] = Σ_ij up[o, i] · mid[i, j, k, l] · down[j, c]
        prod = up[:, :, 0, 0][:, :, None, None, None, None] * mid[None, :, :, None, :, :]
        prod = prod * down[:, :, 0, 0][None, None, :, :, None, None]
        f.deltas[module] = prod.sum(dim=(1, 2)) / rank
    check(sd1, sd1_model, f, tmp_path / "tucker.safetensors", 0.9)


def dora_weight(w: Tensor, delta: Tensor, m: Tensor, strength: float, on_output: bool) -> Tensor:
    """DoRA: ``W + s · (m · (W + ΔW) / ‖W + ΔW‖ − W)``, the norm per output channel (or per input one)."""
    merged = w.double() + delta.double()
    flat = merged.reshape(merged.shape[0], -1)
    if on_output:
        norm = torch.sqrt((flat**2).sum(dim=1)).reshape(-1, *([1] * (w.ndim - 1)))
        scaled = m.double().reshape(-1, *([1] * (w.ndim - 1))) * merged / norm
    else:
        norm = torch.sqrt((merged**2).sum(dim=[d for d in range(w.ndim) if d != 1])).reshape(
            1, -1, *([1] * (w.ndim - 2))
        )
        scaled = m.double().reshape(1, -1, *([1] * (w.ndim - 2))) * merged / norm
    return (w.double() + strength * (scaled - w.double())).float()


def dora_file(sd1: TinyModels, on_output: bool, strength: float, kind: str) -> File:
    f = File(seed=7)
    for module in (LINEAR, CONV):
        w = sd1.unet.get_submodule(module).weight.detach()
        k = kohya(module)
        if kind == "lora":
            rank = 4
            down = f.rand(f"{k}.lora_down.weight", rank, *w.shape[1:])
            up = f.rand(f"{k}.lora_up.weight", w.shape[0], rank, *([1, 1] if w.ndim == 4 else []))
            f.alpha(module, 2.0)
            delta = (up.flatten(1) @ down.flatten(1)).reshape(w.shape) * (2.0 / rank)
        else:
            rank = 2
            m1 = f.rand(f"{k}.hada_w1_a", w.shape[0], rank) @ f.rand(f"{k}.hada_w1_b", rank, w[0].numel())
            m2 = f.rand(f"{k}.hada_w2_a", w.shape[0], rank) @ f.rand(f"{k}.hada_w2_b", rank, w[0].numel())
            delta = (m1 * m2).reshape(w.shape)
        axis = w.shape[0] if on_output else w.shape[1]
        shape = [axis, *([1] * (w.ndim - 1))] if on_output else [1, axis, *([1] * (w.ndim - 2))]
        m = torch.rand(*shape, generator=f.gen) + 0.5
        f.tensors[f"{k}.dora_scale"] = m
        f.deltas[module] = dora_weight(w, delta, m, strength, on_output) - w
    return f


@pytest.mark.parametrize(
    ("on_output", "strength", "kind"), [(True, 1.0, "lora"), (True, 0.5, "loha"), (False, 0.7, "lora")]
)
def test_dora(
    sd1: TinyModels, sd1_model: DiffusionModel, tmp_path: Path, on_output: bool, strength: float, kind: str
) -> None:
    f = dora_file(sd1, on_output, strength, kind)
    # oracle() adds strength · delta; the DoRA delta already includes the strength blend.
    patched, _ = apply_lora(sd1_model, None, load_lora(f.save(tmp_path / "dora.safetensors")), strength, 0.0)
    want = unet_out(oracle(sd1.unet, f, 1.0))
    assert max_diff(unet_out(patched), want) <= TOL
    assert max_diff(unet_out(sd1_model), want) > 1e-3


def test_dora_formula_matches_peft() -> None:
    """The hand formula above, at strength 1 on a Linear, is what peft's DoRA layer computes."""
    peft = pytest.importorskip("peft")
    gen = torch.Generator().manual_seed(8)
    base = torch.nn.Sequential(torch.nn.Linear(24, 10))
    rank, alpha = 4, 3.0
    down = torch.randn(rank, 24, generator=gen) * 0.3
    up = torch.randn(10, rank, generator=gen) * 0.3
    m = torch.rand(10, generator=gen) + 0.5
    cfg = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=["0"], use_dora=True)
    model = peft.get_peft_model(copy.deepcopy(base), cfg)
    layer = model.base_model.model[0]
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(down)
        layer.lora_B["default"].weight.copy_(up)
        layer.lora_magnitude_vector["default"].weight.copy_(m)
    x = torch.randn(5, 24, generator=gen)
    w = base[0].weight.detach()
    want = torch.nn.functional.linear(x, dora_weight(w, up @ down * (alpha / rank), m, 1.0, True), base[0].bias)
    with torch.no_grad():
        got = model(x)
    assert max_diff(got, want) <= TOL


def test_loha_formula_matches_peft() -> None:
    """peft's LoHa layer computes the LoHa ΔW the tests above use: ``(w1a@w1b) ⊙ (w2a@w2b) · alpha/rank``."""
    peft = pytest.importorskip("peft")
    gen = torch.Generator().manual_seed(9)
    base = torch.nn.Sequential(torch.nn.Linear(12, 6))
    rank, alpha = 3, 2.0
    cfg = peft.LoHaConfig(r=rank, alpha=alpha, target_modules=["0"])
    model = peft.get_peft_model(copy.deepcopy(base), cfg)
    layer = model.base_model.model[0]
    t: dict[str, Tensor] = {}
    with torch.no_grad():
        for name in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"):
            p = getattr(layer, name)["default"]
            t[name] = torch.randn(p.shape, generator=gen) * 0.5
            p.copy_(t[name])
    delta = (t["hada_w1_a"] @ t["hada_w1_b"]) * (t["hada_w2_a"] @ t["hada_w2_b"]) * (alpha / rank)
    x = torch.randn(4, 12, generator=gen)
    want = torch.nn.functional.linear(x, base[0].weight.detach() + delta, base[0].bias)
    with torch.no_grad():
        got = model(x)
    assert max_diff(got, want) <= TOL


def test_lycoris_on_wrong_shape_is_a_mismatch(sd1: TinyModels, sd1_model: DiffusionModel, tmp_path: Path) -> None:
    f = File(seed=10)
    k = kohya(CONV)
    f.rand(f"{k}.lokr_w1", 2, 2)
    f.rand(f"{k}.lokr_w2", 8, 8, 3, 3)  # kron → 16 × 16: the layer is 32 × 32
    with pytest.raises(
        LoraMismatchError, match=r"resnets\.1\.conv1: LoRA lokr ΔW \(16, 16, 3, 3\), layer Conv2d 32→32"
    ):
        apply_lora(sd1_model, None, load_lora(f.save(tmp_path / "bad.safetensors")), 1.0, 0.0)


def test_stacked_loras_commute(sd1: TinyModels, sd1_model: DiffusionModel, tmp_path: Path) -> None:
    """Two loaders in a row (a plain LoRA and a LoHa on overlapping layers) give the same output in either
    order, and equal W + s₁ΔW₁ + s₂ΔW₂: additive updates commute, as the maths says."""
    plain = File(seed=11)
    for module in (LINEAR, CONV):
        w = sd1.unet.get_submodule(module).weight
        k = kohya(module)
        down = plain.rand(f"{k}.lora_down.weight", 4, *w.shape[1:])
        up = plain.rand(f"{k}.lora_up.weight", w.shape[0], 4, *([1, 1] if w.ndim == 4 else []))
        plain.alpha(module, 1.0)
        plain.deltas[module] = (up.flatten(1) @ down.flatten(1)).reshape(w.shape) / 4
    loha = loha_file(sd1, tucker=False)
    a = load_lora(plain.save(tmp_path / "a.safetensors"))
    b = load_lora(loha.save(tmp_path / "b.safetensors"))
    sa, sb = 0.7, -1.2
    ab, _ = apply_lora(apply_lora(sd1_model, None, a, sa, 0.0)[0], None, b, sb, 0.0)
    ba, _ = apply_lora(apply_lora(sd1_model, None, b, sb, 0.0)[0], None, a, sa, 0.0)
    assert len(ab.patches) == len(ba.patches) == 5
    combined = File(seed=0)
    for module in {*plain.deltas, *loha.deltas}:
        w = sd1.unet.get_submodule(module).weight
        zero = torch.zeros_like(w)
        combined.deltas[module] = sa * plain.deltas.get(module, zero) + sb * loha.deltas.get(module, zero)
    want = unet_out(oracle(sd1.unet, combined, 1.0))
    got_ab, got_ba = unet_out(ab), unet_out(ba)
    assert max_diff(got_ab, got_ba) <= TOL
    assert max_diff(got_ab, want) <= TOL
    assert max_diff(unet_out(apply_lora(sd1_model, None, a, sa, 0.0)[0]), want) > 1e-3
