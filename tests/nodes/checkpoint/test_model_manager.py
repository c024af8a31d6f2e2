"""Model cache: identity, reload on change, LRU eviction under a budget, pins, OOM, threads."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import torch

from nodes.diffusion.errors import OutOfMemoryError
from nodes.diffusion.model_manager import ModelManager


class Fake:
    """A stand-in model: a size and a device, movable like a module."""

    def __init__(self, path: Path, nbytes: int) -> None:
        self.path = path
        self._nbytes = nbytes
        self.device = "cpu"

    def nbytes(self) -> int:
        return self._nbytes

    def to(self, device: str) -> Fake:
        self.device = str(device)
        return self


def _files(tmp_path: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        p = tmp_path / f"m{i}.safetensors"
        p.write_bytes(b"x" * 10)
        paths.append(p)
    return paths


def _manager(budget: int, calls: list[Path], size: int = 100, delay: float = 0.0) -> ModelManager:
    def load(path: Path, **kwargs):
        calls.append(path)
        time.sleep(delay)
        fake = Fake(path, size)
        fake.device = str(kwargs.get("device", "cpu"))
        return fake

    return ModelManager(budget, loaders={"checkpoint": load, "vae": load})


def test_same_request_gives_the_same_object(tmp_path: Path) -> None:
    calls: list[Path] = []
    mm = _manager(1000, calls)
    (a,) = _files(tmp_path, 1)
    first = mm.checkpoint(a)
    assert mm.checkpoint(a) is first
    assert mm.checkpoint(str(a)) is first
    assert len(calls) == 1
    assert mm.checkpoint(a, dtype=torch.bfloat16) is not first  # different settings, different object
    assert mm.checkpoint(a, overrides={"prediction_type": "epsilon"}) is not first
    assert len(calls) == 3


def test_a_changed_file_is_reloaded(tmp_path: Path) -> None:
    calls: list[Path] = []
    mm = _manager(1000, calls)
    (a,) = _files(tmp_path, 1)
    first = mm.checkpoint(a)
    a.write_bytes(b"y" * 20)
    os.utime(a, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert mm.checkpoint(a) is not first


def test_lru_eviction_under_the_budget(tmp_path: Path) -> None:
    calls: list[Path] = []
    mm = _manager(250, calls)
    a, b, c = _files(tmp_path, 3)
    mm.checkpoint(a)
    mm.checkpoint(b)
    mm.checkpoint(a)  # a is now the most recently used
    mm.checkpoint(c)  # 300 > 250: b goes
    assert {Path(i.path).name for i in mm.loaded()} == {"m0.safetensors", "m2.safetensors"}
    assert mm.used_bytes == 200


def test_models_in_use_are_not_evicted(tmp_path: Path) -> None:
    calls: list[Path] = []
    mm = _manager(150, calls)
    a, b = _files(tmp_path, 2)
    model_a = mm.checkpoint(a)
    with mm.using(model_a):
        mm.checkpoint(b)  # over budget, but a is pinned
        assert {Path(i.path).name for i in mm.loaded()} == {"m0.safetensors", "m1.safetensors"}
        assert [i.in_use for i in mm.loaded() if i.path.endswith("m0.safetensors")] == [True]


def test_an_evicted_model_still_held_is_adopted_not_reloaded(tmp_path: Path) -> None:
    calls: list[Path] = []
    mm = _manager(100, calls)
    a, b = _files(tmp_path, 2)
    held = mm.checkpoint(a)
    mm.checkpoint(b)  # evicts a from the cache, but we still hold it
    assert mm.checkpoint(a) is held
    assert calls.count(a) == 1


def test_concurrent_requests_load_once(tmp_path: Path) -> None:
    calls: list[Path] = []
    mm = _manager(1000, calls, delay=0.2)
    (a,) = _files(tmp_path, 1)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(mm.checkpoint(a))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 4 and all(r is results[0] for r in results)


def test_make_room_moves_idle_models_off_the_gpu(tmp_path: Path) -> None:
    calls: list[Path] = []
    mm = _manager(10_000, calls)
    a, b = _files(tmp_path, 2)
    model_a = mm.checkpoint(a, device="cuda")  # fake loader: no GPU needed
    model_b = mm.checkpoint(b, device="cuda")
    free = {"bytes": 0}

    def free_bytes() -> int:
        return free["bytes"] + 100 * sum(1 for m in (model_a, model_b) if m.device == "cpu")

    with mm.using(model_b):
        assert mm.make_room("cuda", 100, free_bytes=free_bytes)
    assert model_a.device == "cpu" and model_b.device != "cpu"
    assert [i.offloaded for i in mm.loaded() if i.path.endswith("m0.safetensors")] == [True]


def test_oom_frees_models_and_raises_one_clear_error(tmp_path: Path) -> None:
    calls: list[Path] = []
    mm = _manager(10_000, calls)
    (a,) = _files(tmp_path, 1)
    mm.checkpoint(a, device="cuda")
    with (
        pytest.raises(OutOfMemoryError, match="Out of memory on cuda while sampling") as info,
        mm.oom_guard("cuda", "sampling"),
    ):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "smaller image size" in str(info.value)
    assert mm.loaded() == []
    with pytest.raises(ValueError), mm.oom_guard("cuda"):
        raise ValueError("not memory")


def test_oom_during_load_retries_after_freeing(tmp_path: Path) -> None:
    a, b = _files(tmp_path, 2)
    attempts: list[Path] = []

    def load(path: Path, **kwargs):
        attempts.append(path)
        if path == b and attempts.count(b) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return Fake(path, 100)

    mm = ModelManager(10_000, loaders={"checkpoint": load})
    mm.checkpoint(a, device="cuda")
    mm.checkpoint(b, device="cuda")
    assert attempts == [a, b, b]
    assert [Path(i.path).name for i in mm.loaded()] == ["m1.safetensors"]


def test_real_checkpoint_through_the_manager(tiny_sd1_file: Path) -> None:
    mm = ModelManager(10**9)
    ck = mm.checkpoint(tiny_sd1_file)
    assert mm.checkpoint(tiny_sd1_file) is ck
    assert mm.used_bytes == ck.nbytes() > 1_000_000
    vae = mm.vae(tiny_sd1_file)
    assert mm.vae(tiny_sd1_file) is vae
