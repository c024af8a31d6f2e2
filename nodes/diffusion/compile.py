"""Optional torch.compile of the UNet, reused per (model, input shape, dtype).

Compiling is opt-in (the ``compile`` setting) because it costs about a minute per shape on a CPU
and pays back only over many steps: on a 2-core AMX Xeon, channels_last + bf16 + inductor
``freezing`` brought a full-size SD1.5 step from 0.52 s to 0.31 s, while plain ``torch.compile``
(no freezing) was *slower* than eager (see docs/benchmarks.md and the shared notes §5). So on the
CPU we always compile with freezing (weights become constants the compiler can prepack); on CUDA
the default mode is used.

Each (model, shape, dtype, layout) gets its own compiled callable, stored on the model itself (a
compiled module refers to its original, so a table outside would keep every model alive and defeat
the model manager's eviction; on the model, the two die together). A second run at the same
resolution starts sampling at once and a new resolution compiles once. A model with LoRA hooks is
never compiled: frozen weights would ignore them.

Compiling can take a minute, so it must never happen on the window's thread. The GUI calls
``forbid_compiling_on_this_thread()`` at start-up; a compile requested there falls back to eager
with a warning (the executor normally runs nodes on a worker thread, where compiling is fine).
This module imports torch only inside functions, so the window can import it cheaply.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
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
        fn = _build(module, channels_last=channels_last, backend_options=backend_options)
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
