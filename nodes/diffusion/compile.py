"""Optional torch.compile of the UNet, reused per (model, input shape, dtype).

Compiling is opt-in (the ``compile`` setting), also in fast mode, decided by measurement on a
2-core Xeon with AMX (full-size SD1.5 UNet, bf16, channels_last, 256², inductor ``freezing``;
docs/benchmarks.md): measured quietly, each in its own process, a compiled step took 0.62-0.66 s
against 0.47 s for the eager UNet with oneDNN-prepacked weights (`nodes.diffusion.prepack`, what
fast mode runs without compiling), and the compile costs 165-260 s per shape in the first process
and 23-38 s in the next (FX graph cache hit: dynamo's trace, AOTAutograd and the freezing passes run
every time). So compiling does not pay back on such a CPU; it stays a setting for other machines
(CUDA, CPUs without AMX) where it may. Plain ``torch.compile`` without freezing was *slower* than
eager in earlier measurements, so on the CPU we always compile with freezing (weights become
constants the compiler can prepack); on CUDA the default mode is used.

Each (model, shape, dtype, layout) gets its own compiled callable, stored on the model itself (a
compiled module refers to its original, so a table outside would keep every model alive and defeat
the model manager's eviction; on the model, the two die together). A second run at the same
resolution starts sampling at once and a new resolution compiles once. A model with LoRA hooks is
never compiled: frozen weights would ignore them.

Inductor's on-disk caches (FX graph cache, AOTAutograd cache) live in the user cache folder
(`cache_dir()`), so a second process compiling the same shape reuses the built kernels: measured
on a tiny module 47 s → 5.7 s; on the full-size SD1.5 UNet see docs/benchmarks.md. The first call of
each entry is timed (`compile_log`: the compile time, reported apart from the step time) and, when
the compiler fails (no C++ compiler, an op it cannot lower), answered eagerly from then on.

Compiling can take a minute, so it must never happen on the window's thread. The GUI calls
``forbid_compiling_on_this_thread()`` at start-up; a compile requested there falls back to eager
with a warning (the executor normally runs nodes on a worker thread, where compiling is fine).
This module imports torch only inside functions, so the window can import it cheaply.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_ATTR = "_sdgraph_compiled"  # per-model {key: compiled callable}, set with object.__setattr__
_lock = threading.Lock()
_forbidden_threads: set[int] = set()
compile_count = 0  # how many compiled callables were built in this process (tests, the status line)


def forbid_compiling_on_this_thread() -> None:
    """Called by the GUI on the Qt thread: compiling there would freeze the window for a minute."""
    _forbidden_threads.add(threading.get_ident())


def compiling_allowed() -> bool:
    return threading.get_ident() not in _forbidden_threads


def compiled(
    module: Any,
    *,
    key: Hashable,
    channels_last: bool = False,
    backend_options: dict[str, Any] | None = None,
) -> Callable[..., Any]:
    """A compiled callable for ``module`` specialised to ``key`` (shape, dtype, layout), built once.

    Falls back to the module itself (eager) where compiling is not allowed (the window's thread).
    The first *call* of a new entry is what compiles; callers should make it on a worker thread.
    """
    global compile_count
    if not compiling_allowed():
        log.warning("not compiling %s on the window's thread; running it eagerly", type(module).__name__)
        return module  # type: ignore[no-any-return]
    with _lock:
        per_model = _table(module)
        fn = per_model.get(key)
        if fn is not None:
            return fn
        fn = _FirstCallGuard(module, _build(module, channels_last=channels_last, backend_options=backend_options), key)
        per_model[key] = fn
        compile_count += 1
        return fn


def _table(module: Any) -> dict[Hashable, Callable[..., Any]]:
    table = module.__dict__.get(_ATTR)
    if table is None:
        table = {}
        # Not nn.Module.__setattr__: the compiled modules must not become registered submodules.
        object.__setattr__(module, _ATTR, table)
    return table  # type: ignore[no-any-return]


def cached_keys(module: Any) -> list[Hashable]:
    with _lock:
        return list(module.__dict__.get(_ATTR, {}))


def clear(module: Any) -> None:
    """Forget ``module``'s compiled forms (they are rebuilt on the next request)."""
    with _lock:
        module.__dict__.pop(_ATTR, None)


def _build(module: Any, *, channels_last: bool, backend_options: dict[str, Any] | None) -> Callable[..., Any]:
    import torch

    from nodes.diffusion import prepack

    use_disk_caches()
    prepack.unpack(module)  # real weight Parameters for inductor's freezing (which packs them itself)
    device = next(module.parameters()).device
    if channels_last:
        module.to(memory_format=torch.channels_last)
    options: dict[str, Any] = {}
    if device.type == "cpu":
        # Without freezing, inductor's CPU code is slower than eager for the UNet (measured).
        options["freezing"] = True
    options.update(backend_options or {})
    # dynamic=False: one specialised graph per shape, which is what the per-key table mirrors.
    return torch.compile(module, dynamic=False, options=options)  # type: ignore[no-any-return]


class _FirstCallGuard:
    """A compiled callable whose first call (the one that compiles) falls back to eager on failure.

    torch.compile is lazy: a graph inductor cannot compile (a missing C++ compiler, an op without a
    lowering) raises at the first call, in the middle of a sampler. That call is timed (the compile
    time, reported apart from the step time) and, if it raises, logged and answered by the eager
    module, which this key then keeps using: a run is never lost to the compiler.
    """

    def __init__(self, module: Any, fn: Callable[..., Any], key: Hashable) -> None:
        self.module = module
        self.fn = fn
        self.key = key
        self.state = "new"  # new | compiled | failed

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.state == "compiled":
            return self.fn(*args, **kwargs)
        if self.state == "failed":
            return self.module(*args, **kwargs)
        hits_before = _fx_cache_hits()
        t0 = time.perf_counter()
        try:
            out = self.fn(*args, **kwargs)
        except Exception as exc:  # any compiler failure: the eager module is always right
            self.state = "failed"
            seconds = time.perf_counter() - t0
            log.warning(
                "torch.compile failed for %s (%s: %s); running it eagerly",
                type(self.module).__name__,
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
            )
            compile_log.append(CompileRecord(type(self.module).__name__, self.key, seconds, False, False))
            return self.module(*args, **kwargs)
        self.state = "compiled"
        compile_log.append(
            CompileRecord(
                type(self.module).__name__,
                self.key,
                time.perf_counter() - t0,
                True,
                _fx_cache_hits() > hits_before,
            )
        )
        return out


@dataclass(frozen=True)
class CompileRecord:
    """One first call of a compiled entry: how long it took (compile + one step), and whether the
    on-disk FX graph cache answered it (a second process compiling the same shape)."""

    module: str
    key: Hashable
    seconds: float
    ok: bool
    disk_cache_hit: bool


compile_log: list[CompileRecord] = []  # this process's compiles, oldest first (benchmarks, the log)


def _fx_cache_hits() -> int:
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover - torch without dynamo
        return 0
    return int(counters["inductor"]["fxgraph_cache_hit"])


def cache_dir() -> Path:
    """Where inductor keeps its compiled graphs between processes: the user cache folder.

    ``$SDGRAPH_HOME/cache/torch_compile`` when SDGRAPH_HOME is set (tests, portable installs), else the
    platform's user cache folder (``~/.cache/sdgraph/torch_compile`` on Linux). Inductor's own
    default is under /tmp, which many systems wipe at every boot, so the minutes of a compile would
    be paid again after each restart.
    """
    home = os.environ.get("SDGRAPH_HOME")
    if home:
        return Path(home).expanduser() / "cache" / "torch_compile"
    import platformdirs

    return Path(platformdirs.user_cache_dir("sdgraph", appauthor=False)) / "torch_compile"


_caches_configured = False


def use_disk_caches() -> Path:
    """Turn on inductor's FX graph cache and AOTAutograd cache, kept in `cache_dir()` (once a process).

    A ``TORCHINDUCTOR_CACHE_DIR`` the user set wins. What the cache saves, measured on the full-size
    SD1.5 UNet (bf16, channels_last, freezing; see docs/benchmarks.md): the generated C++ kernels and
    their build; dynamo's trace, AOTAutograd's and the freezing passes still run in every process
    (freezing bypasses the AOTAutograd cache), so a second process's compile is shorter, not free.
    """
    global _caches_configured
    folder = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or cache_dir())
    if _caches_configured:
        return folder
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    inductor_config.fx_graph_cache = True
    functorch_config.enable_autograd_cache = True
    _caches_configured = True
    return folder
