"""oneDNN weight prepacking (nodes.diffusion.prepack): same results as the plain layers, one packed copy
per input shape, remade when the weight changes, and LoRA hooks still applied."""

from __future__ import annotations

import pytest
import torch

from nodes.diffusion import prepack

BF16 = torch.bfloat16
CL = torch.channels_last

pytestmark = pytest.mark.skipif(
    not (prepack.available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    reason="oneDNN bf16 needs AVX-512 (packing is only used on CPUs with AMX/AVX512-BF16)",
)


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.Flatten(2)).to(BF16)


def test_packed_layers_match_the_plain_ones() -> None:
    conv = torch.nn.Conv2d(8, 16, 3, padding=1).to(BF16).to(memory_format=CL)
    lin = torch.nn.Linear(16, 32).to(BF16)
    x = torch.randn(2, 8, 12, 12, dtype=BF16).contiguous(memory_format=CL)
    with torch.inference_mode():
        plain_conv, plain_lin = conv(x), lin(conv(x).permute(0, 2, 3, 1))
        assert prepack.prepack(conv) == 1 and prepack.prepack(lin) == 1
        packed_conv = conv(x)
        packed_lin = lin(packed_conv.permute(0, 2, 3, 1))  # a non-contiguous input, as attention gives
    assert prepack.packed_nbytes(conv) > 0 and prepack.packed_nbytes(lin) > 0  # the packed path ran
    # Same bf16 arithmetic, possibly another summation order: within a few bf16 ulps.
    torch.testing.assert_close(packed_conv.float(), plain_conv.float(), atol=0.05, rtol=0.02)
    torch.testing.assert_close(packed_lin.float(), plain_lin.float(), atol=0.05, rtol=0.02)
    assert packed_lin.shape == (2, 12, 12, 32)


def test_one_packed_copy_serves_every_size_and_is_remade_when_the_weight_changes() -> None:
    conv = torch.nn.Conv2d(8, 16, 3, padding=1).to(BF16)
    prepack.prepack(conv)
    a = torch.randn(1, 8, 8, 8, dtype=BF16)
    with torch.inference_mode():
        conv(a)
        size = prepack.packed_nbytes(conv)
        other = torch.randn(3, 8, 5, 7, dtype=BF16)  # another batch and resolution
        torch.testing.assert_close(conv(other), conv._conv_forward(other, conv.weight, conv.bias))
        assert prepack.packed_nbytes(conv) == size  # still one copy: memory does not grow per size
    with torch.no_grad():
        conv.weight.mul_(0.0)  # in place: a stale packed copy would still give the old output
        conv.bias.fill_(1.0)
    with torch.inference_mode():
        out = conv(a)
    assert torch.equal(out, torch.ones_like(out))


def test_hooks_and_gradients_still_work() -> None:
    net = _net()
    prepack.prepack(net)
    x = torch.randn(1, 8, 6, 6, dtype=BF16)
    handle = net[0].register_forward_hook(lambda m, args, out: out + 100)  # what a LoRA dispatcher does
    with torch.inference_mode():
        hooked = net(x)
    handle.remove()
    with torch.inference_mode():
        assert (hooked - net(x)).float().mean().item() == pytest.approx(100, abs=0.5)
    x.requires_grad_(True)
    net(x).float().sum().backward()  # training falls back to the plain layers, which have a backward
    assert x.grad is not None and net[0].weight.grad is not None
