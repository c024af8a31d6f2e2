"""Which device runs the models, and in which precision.

Two modes, because users want two different things:

* ``exact``: results that match a reference run (fp32 wherever it matters). On the CPU everything
  is fp32; on a GPU the UNet and text encoders also stay fp32.
* ``fast``: the cheapest precision the hardware computes natively. On CPUs with AMX or
  AVX512-BF16, bf16 weights and inputs make a UNet step about 3x faster (measured: 1.75 s -> 0.59 s
  per full-size SD1.5 step on 2 cores); on CPUs without native bf16 the same cast is *slower* than
  fp32, so fast mode falls back to fp32 there. CUDA gets fp16 (bf16 where the card supports it,
  which removes fp16's overflow risk), MPS fp16.

The VAE is the one part that can overflow in half precision (NaN/black images, worst with SDXL's VAE),
so fast mode gives it bf16/fp16 and ``vae_ops.decode`` retries in fp32 when NaNs appear.

The CPU check reads /proc/cpuinfo flags rather than asking oneDNN: oneDNN reports bf16 "supported"
on any AVX-512 CPU, where it is emulated and slow.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import torch

DeviceName = Literal["auto", "cpu", "cuda", "mps"]
PrecisionMode = Literal["exact", "fast"]
Precision = tuple[torch.dtype, torch.dtype, torch.dtype]  # (unet, vae, text encoders)

_NATIVE_BF16_FLAGS = {"amx_bf16", "avx512_bf16"}


def pick_device(name: str = "auto") -> torch.device:
    """Resolve a user's device choice; ``auto`` prefers CUDA, then Apple MPS, then the CPU.

    Asking for a device that is not there is an error rather than a silent CPU fallback: a user who
    picked "cuda" and gets a 50x slower run deserves to know why.
    """
    name = name.lower().strip()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                "CUDA was requested but this PyTorch build has no usable CUDA device "
                f"(torch {torch.__version__}). Pick 'auto' or 'cpu', or install a CUDA build of PyTorch."
            )
        return torch.device(name)
    if name == "mps":
        if not _mps_available():
            raise RuntimeError("Apple MPS was requested but is not available on this machine. Pick 'auto' or 'cpu'.")
        return torch.device("mps")
    raise ValueError(f"Unknown device {name!r}; choose one of auto, cpu, cuda, mps.")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


@functools.cache
def cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU computes bf16 in hardware (AMX-BF16 or AVX512-BF16)."""
    flags = cpu_flags() if flags is None else flags
    if flags & _NATIVE_BF16_FLAGS:
        return True
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    return "AMX" in str(capability).upper()


def cpu_model_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def describe_cpu() -> str:
    """One line for benchmark reports: model, cores, and the flags that decide the CPU policy."""
    import os

    flags = cpu_flags()
    shown = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    return f"{cpu_model_name()}, {os.cpu_count()} cores, flags: {' '.join(shown) or 'none read'}"


def channels_last_helps(device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether the UNet should run in channels_last memory format on this device and dtype.

    Measured on CPUs (full-size SD1.5 UNet, batch 2, 32x32 latents, 2 threads, interleaved runs):

    * Xeon with AMX: bf16 0.59 -> 0.52 s/step with channels_last (helps); fp32 1.75 -> 1.94 (hurts).
    * EPYC with AVX2 only (no AVX-512): fp32 6.49 -> 5.67 s/step (helps, ~12 %); bf16 is emulated
      there and never picked (`precision_for`).

    So on the CPU: bf16 with native support, or fp32 on a CPU without AVX-512 (oneDNN's AVX2 fp32
    convolutions prefer NHWC; its AVX-512 ones did not). On CUDA it is the usual recommendation for
    fp16/bf16 convolutions (tensor cores want NHWC); not measured here. MPS: off.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return dtype in (torch.float16, torch.bfloat16)
    if device.type == "cpu":
        if dtype == torch.bfloat16:
            return cpu_has_native_bf16()
        flags = cpu_flags()
        return dtype == torch.float32 and "avx2" in flags and "avx512f" not in flags
    return False


def fast_mode_choice(device: torch.device | str = "cpu") -> str:
    """What fast mode runs on ``device`` and why, in one sentence (benchmark reports, `sdgraph` logs).

    Written for the person reading a benchmark from a machine they did not expect: on a CPU without
    AMX/AVX512-BF16 fast mode is fp32, which is not a fault but the policy (emulated bf16 is slower).
    """
    device = torch.device(device)
    unet, vae, text = precision_for(device, "fast")
    names = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    layout = "channels_last" if channels_last_helps(device, unet) else "contiguous"
    picked = f"UNet {names[unet]}, VAE {names[vae]}, text encoders {names[text]}, {layout}"
    if device.type == "cpu":
        flags = cpu_flags()
        if cpu_has_native_bf16():
            native = sorted(flags & _NATIVE_BF16_FLAGS) or ["AMX (oneDNN)"]
            return f"fast mode: {picked}, because the CPU computes bf16 natively ({', '.join(native)})"
        isa = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "no AVX2")
        return (
            f"fast mode: {picked}, because this CPU ({isa}) has neither AMX-BF16 nor AVX512-BF16: bf16 "
            "would be emulated, several times slower than fp32 (docs/benchmarks.md)"
        )
    return f"fast mode on {device.type}: {picked}"


def cuda_supports_bf16(device: torch.device) -> bool:
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def precision_for(
    device: torch.device | str,
    mode: PrecisionMode = "exact",
    *,
    cpu_bf16: bool | None = None,
    cuda_bf16: bool | None = None,
) -> Precision:
    """``(unet_dtype, vae_dtype, text_dtype)`` for a device and mode (see the module docstring).

    ``cpu_bf16``/``cuda_bf16`` override hardware detection (tests, or a user who knows better).
    """
    device = torch.device(device)
    if mode not in ("exact", "fast"):
        raise ValueError(f"precision mode must be 'exact' or 'fast', not {mode!r}")
    fp32, fp16, bf16 = torch.float32, torch.float16, torch.bfloat16
    if mode == "exact":
        return fp32, fp32, fp32
    if device.type == "cpu":
        native = cpu_has_native_bf16() if cpu_bf16 is None else cpu_bf16
        return (bf16, bf16, bf16) if native else (fp32, fp32, fp32)
    if device.type == "cuda":
        has_bf16 = cuda_supports_bf16(device) if cuda_bf16 is None else cuda_bf16
        return (fp16, bf16, fp16) if has_bf16 else (fp16, fp16, fp16)
    if device.type == "mps":
        return fp16, fp16, fp16
    return fp32, fp32, fp32
