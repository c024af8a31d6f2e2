"""Converting a state dict to ComfyUI's "scaled fp8" layout, as its converters do: every 2-D ``.weight``
(the linear layers) stored as ``(w / scale).to(float8_e4m3fn)`` with ``scale = amax(|w|) / 448`` in
``<layer>.scale_weight`` (float32), the marker ``scaled_fp8`` at the model's prefix, everything else as it
was; and to plain fp8 (``t5xxl_fp8_e4m3fn``), every floating tensor cast as it is."""

from __future__ import annotations

from collections.abc import Mapping

import torch

#: The largest finite float8_e4m3fn value: the scale maps each layer's largest |w| onto it.
E4M3_MAX = 448.0


def to_scaled_fp8(
    state: Mapping[str, torch.Tensor], prefix: str = "", *, scale_input: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Returns the scaled-fp8 state and its *dequantized* twin (``fp8.float() * scale`` in place of each
    weight, the rest unchanged): the reference a loaded scaled file must compute exactly.
    ``scale_input`` adds a ``<layer>.scale_input`` (as some published files have) to every scaled layer."""
    scaled: dict[str, torch.Tensor] = {prefix + "scaled_fp8": torch.zeros(2, dtype=torch.float8_e4m3fn)}
    dequantized: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.startswith(prefix) and name.endswith(".weight") and tensor.ndim == 2:
            w = tensor.detach().float()
            scale = (w.abs().max() / E4M3_MAX).clamp_min(1e-12).reshape(())
            fp8 = (w / scale).to(torch.float8_e4m3fn)
            layer = name[: -len(".weight")]
            scaled[name] = fp8
            scaled[layer + ".scale_weight"] = scale
            if scale_input:
                scaled[layer + ".scale_input"] = torch.tensor(0.5)
            dequantized[name] = fp8.float() * scale
        else:
            scaled[name] = dequantized[name] = tensor.detach()
    return scaled, dequantized


def to_plain_fp8(
    state: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float8_e4m3fn
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Every floating tensor (norm scales and biases too: the most fp8 a file can be) cast to ``dtype``,
    no scales; and the dequantized twin (``fp8.float()``), the reference the loaded file must compute."""
    plain = {k: v.detach().to(dtype) if v.is_floating_point() else v.detach() for k, v in state.items()}
    return plain, {k: v.float() if v.is_floating_point() else v for k, v in plain.items()}
