"""The packed weight replaces the plain one (issue 15, nodes.diffusion.prepack): the plain storage is freed,
yet everything that reads ``.weight`` (LoRA fitting and DoRA, ``.to()``, state dicts, assignment, other
resolutions) sees the original weight, bit for bit."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from nodes.diffusion import prepack
from nodes.diffusion.lora import apply_lora, load_lora
from nodes.diffusion.model_manager import size_of
from tests.nodes.lora.lora_support import KOHYA_DIFFUSERS_NAMES, KOHYA_LDM_NAMES, LoraWriter, diffusion_model
from tests.support.tiny_sd import build_tiny_models

BF16 = torch.bfloat16
CL = torch.channels_last

pytestmark = pytest.mark.skipif(
    not (prepack.available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    reason="oneDNN bf16 needs AVX-512 (packing is only used on CPUs with AMX/AVX512-BF16)",
)


def _layers() -> tuple[torch.nn.Conv2d, torch.nn.Linear]:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 16, 3, padding=1).to(BF16).to(memory_format=CL).requires_grad_(False)
    lin = torch.nn.Linear(16, 32).to(BF16).requires_grad_(False)
    return conv, lin


def _run(conv: torch.nn.Module, lin: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return lin(conv(x).permute(0, 2, 3, 1))  # type: ignore[no-any-return]


def test_the_packed_copy_replaces_the_plain_weight_and_reads_back_exactly() -> None:
    conv, lin = _layers()
    plain_conv, plain_lin = conv.weight.detach().clone(), lin.weight.detach().clone()
    prepack.prepack(conv), prepack.prepack(lin)
    sizes = size_of(conv), size_of(lin)
    x = torch.randn(2, 8, 12, 12, dtype=BF16).contiguous(memory_format=CL)
    first = _run(conv, lin, x)
    # The model manager's budget counts each weight once: now the packed copy, of the plain one's size.
    assert (size_of(conv), size_of(lin)) == sizes
    for m, plain in ((conv, plain_conv), (lin, plain_lin)):
        assert prepack.is_packed(m) and "weight" not in m._parameters  # the plain storage is gone
        assert isinstance(m, type(m).__mro__[2])  # still an nn.Conv2d / nn.Linear to isinstance checks
        assert torch.equal(m.weight, plain)  # unpacked on access, bit-exact
        assert m.weight_meta() == (plain.shape, BF16, plain.device)  # type: ignore[operator]
        sd = m.state_dict()
        assert list(sd) == ["weight", "bias"] and torch.equal(sd["weight"], plain)
    assert [n for n, _ in conv.named_parameters()] == ["bias"]
    assert prepack.packed_nbytes(conv) >= plain_conv.numel() * 2
    # The next call (and another resolution and batch) runs on the packed copy alone.
    assert torch.equal(_run(conv, lin, x), first)
    other = torch.randn(3, 8, 5, 7, dtype=BF16).contiguous(memory_format=CL)
    with torch.inference_mode():
        want = torch.nn.functional.linear(
            conv._conv_forward(other, plain_conv, conv.bias).permute(0, 2, 3, 1), plain_lin, lin.bias
        )
    torch.testing.assert_close(_run(conv, lin, other).float(), want.float(), atol=0.05, rtol=0.02)


def test_to_keeps_the_packed_copy_for_a_layout_change_and_unpacks_for_a_dtype_change() -> None:
    conv, _ = _layers()
    plain = conv.weight.detach().clone()
    net = torch.nn.Sequential(conv)
    prepack.prepack(net)
    x = torch.randn(1, 8, 6, 6, dtype=BF16).contiguous(memory_format=CL)
    with torch.inference_mode():
        packed_out = net(x)
    net.to(memory_format=torch.contiguous_format)  # what prepare_unet does on every request
    assert prepack.is_packed(conv)
    net.to(memory_format=CL)
    assert prepack.is_packed(conv)
    net.to(torch.float32)
    assert type(conv) is torch.nn.Conv2d and isinstance(conv._parameters["weight"], torch.nn.Parameter)
    assert conv.weight.dtype == torch.float32 and torch.equal(conv.weight, plain.float())
    assert not conv.weight.requires_grad and conv.weight.is_contiguous(memory_format=CL)  # as it was
    net.to(BF16)
    with torch.inference_mode():
        assert torch.equal(net(x), packed_out)  # packed again on the way: same result
    assert prepack.is_packed(conv)


def test_assigning_or_loading_a_weight_puts_the_plain_parameter_back() -> None:
    conv, lin = _layers()
    prepack.prepack(lin)
    _run(conv, lin, torch.randn(1, 8, 4, 4, dtype=BF16))
    assert prepack.is_packed(lin)
    saved = copy.deepcopy(lin.state_dict())
    lin.weight = torch.nn.Parameter(torch.zeros(32, 16, dtype=BF16), requires_grad=False)
    assert type(lin) is torch.nn.Linear and torch.equal(lin.weight, torch.zeros(32, 16, dtype=BF16))
    with torch.inference_mode():
        assert torch.equal(lin(torch.ones(2, 16, dtype=BF16)), lin.bias.expand(2, 32))  # the new weight is used
    lin.load_state_dict(saved)
    _run(conv, lin, torch.randn(1, 8, 4, 4, dtype=BF16))
    assert prepack.is_packed(lin)
    lin.load_state_dict(saved)  # on a packed layer: unpacks, then loads
    assert type(lin) is torch.nn.Linear and torch.equal(lin.weight, saved["weight"])
    assert prepack.unpack(lin) == 0


def test_lora_on_a_packed_unet_equals_lora_on_the_plain_one(tmp_path: Path) -> None:
    """The real LoRA path (name table, `_weight_meta` fitting, DoRA reading the weight values) on a tiny
    SD1 UNet whose layers were packed by a first prediction, against the same LoRA on the plain UNet."""
    tiny = build_tiny_models("sd1", seed=0)
    plain_unet = tiny.unet.to(BF16).requires_grad_(False)
    packed_unet = copy.deepcopy(plain_unet)
    prepack.prepack(packed_unet)
    gen = torch.Generator().manual_seed(7)
    x, ctx = torch.randn(2, 4, 8, 8, generator=gen, dtype=BF16), torch.randn(2, 5, 32, generator=gen, dtype=BF16)
    t = torch.tensor([10.0, 700.0])

    def out(model: object) -> torch.Tensor:
        with torch.inference_mode(), model.active():  # type: ignore[attr-defined]
            return model.unet(x, t, encoder_hidden_states=ctx).sample.float()  # type: ignore[attr-defined, no-any-return]

    base_plain, base_packed = out(diffusion_model(plain_unet)), out(diffusion_model(packed_unet))
    packed_layers = [m for m in packed_unet.modules() if prepack.is_packed(m)]
    assert len(packed_layers) > 20 and not any(prepack.is_packed(m) for m in plain_unet.modules())
    w = LoraWriter(seed=1)
    for i, (base, module) in enumerate(KOHYA_DIFFUSERS_NAMES + KOHYA_LDM_NAMES):
        w.kohya(plain_unet, module, base, rank=4 if i % 2 else 2, alpha=2.0)
    # DoRA on two layers: its factor is computed from the weight's values (unpacked for the packed UNet),
    # on the input axis the hook reads the weight on every call.
    w.tensors["lora_unet_down_blocks_0_resnets_1_conv1.dora_scale"] = torch.rand(32, 1, 1, 1, generator=gen) + 0.5
    w.tensors["lora_unet_time_embed_0.dora_scale"] = torch.rand(1, 32, generator=gen) + 0.5
    lora = load_lora(w.save(tmp_path / "style.safetensors"))
    assert sum(layer.dora_scale is not None for layer in lora.layers) == 2
    got_plain = out(apply_lora(diffusion_model(plain_unet), None, lora, 0.8, 0.0)[0])
    got_packed = out(apply_lora(diffusion_model(packed_unet), None, lora, 0.8, 0.0)[0])
    assert all(prepack.is_packed(m) for m in packed_layers)  # applying the LoRA did not unpack anything
    scale = float(got_plain.abs().max())
    # Packed and plain bf16 convolutions may sum in another order: equal within bf16 rounding ...
    assert float((got_packed - got_plain).abs().max()) <= 0.02 * scale
    assert float((base_packed - base_plain).abs().max()) <= 0.02 * scale
    # ... which is far below what the LoRA changes.
    assert float((got_plain - base_plain).abs().max()) > 0.1 * scale
    assert float((got_packed - base_packed).abs().max()) > 0.1 * scale


def test_two_threads_taking_the_first_step_at_once_pack_each_layer_once() -> None:
    """Two graphs may sample one model at the same time; the first call packs (swapping the layer's class
    and freeing its plain weight) under a lock, so both threads get the single-threaded result and each
    layer holds one packed copy."""
    import threading

    layers = [_layers() for _ in range(6)]
    x = torch.randn(2, 8, 12, 12, dtype=BF16).contiguous(memory_format=CL)
    want = [_run(copy.deepcopy(conv), copy.deepcopy(lin), x) for conv, lin in layers]
    for conv, lin in layers:
        prepack.prepack(conv), prepack.prepack(lin)
    made: list[int] = []
    original = torch.ops.mkldnn._reorder_convolution_weight

    def counting(*args: object) -> torch.Tensor:
        made.append(1)
        return original(*args)  # type: ignore[no-any-return]

    start = threading.Barrier(2)
    got: dict[int, list[torch.Tensor]] = {}

    def sample(slot: int) -> None:
        start.wait()
        got[slot] = [_run(conv, lin, x) for conv, lin in layers]

    torch.ops.mkldnn._reorder_convolution_weight = counting  # type: ignore[assignment]
    try:
        threads = [threading.Thread(target=sample, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        torch.ops.mkldnn._reorder_convolution_weight = original  # type: ignore[assignment]
    assert len(made) == len(layers)  # each conv packed once, not once per thread
    for slot in (0, 1):
        assert all(torch.equal(a, b) for a, b in zip(got[slot], want, strict=True))
    assert all(prepack.is_packed(conv) and prepack.is_packed(lin) for conv, lin in layers)
