"""The compile setting (torch.compile stubbed: the real one takes a minute) and tiled VAE decoding."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest
import torch

from nodes.diffusion import compile as sd_compile
from nodes.diffusion.checkpoint import vae_ops
from nodes.diffusion.checkpoint.load import load_checkpoint, load_vae
from nodes.diffusion.conditioning import CondEntry
from nodes.diffusion.model import DiffusionModel, WeightPatch
from nodes.diffusion.sampling import ModelSampling


@pytest.fixture
def fake_compile(monkeypatch):
    """torch.compile replaced by a recorder that returns the module (eager), so tests take milliseconds."""
    calls: list[dict] = []

    def fake(module, **kwargs):
        calls.append(kwargs)
        return module

    monkeypatch.setattr(torch, "compile", fake)
    return calls


def test_compiled_once_per_key_with_freezing_on_cpu(fake_compile) -> None:
    net = torch.nn.Linear(2, 2)
    first = sd_compile.compiled(net, key=((1, 2), torch.float32))
    assert sd_compile.compiled(net, key=((1, 2), torch.float32)) is first
    sd_compile.compiled(net, key=((4, 2), torch.float32))
    assert len(fake_compile) == 2
    assert fake_compile[0]["options"] == {"freezing": True} and fake_compile[0]["dynamic"] is False
    assert sd_compile.cached_keys(net) == [((1, 2), torch.float32), ((4, 2), torch.float32)]
    assert list(net.children()) == []  # not registered as submodules (state_dict, .to() unaffected)


def test_compiled_forms_die_with_their_model(fake_compile) -> None:
    import gc
    import weakref

    net = torch.nn.Linear(2, 2)
    sd_compile.compiled(net, key="k")
    ref = weakref.ref(net)
    del net
    gc.collect()
    assert ref() is None  # the model manager's eviction really frees it


def test_no_compiling_on_the_window_thread(fake_compile) -> None:
    net = torch.nn.Linear(2, 2)
    seen: list[object] = []

    def window_thread() -> None:
        sd_compile.forbid_compiling_on_this_thread()
        seen.append(sd_compile.compiled(net, key="k"))

    t = threading.Thread(target=window_thread)
    t.start()
    t.join()
    assert seen == [net] and fake_compile == []  # eager, nothing compiled
    sd_compile.compiled(net, key="k")  # this (worker) thread may compile
    assert len(fake_compile) == 1


def _model(unet, **kw) -> DiffusionModel:
    sampling = ModelSampling.from_config({"prediction_type": "epsilon"})
    return DiffusionModel(unet=unet, family="sd1", prediction_type="epsilon", model_sampling=sampling, **kw)


def test_predict_reuses_the_compiled_unet_per_shape(tiny_sd1_file: Path, fake_compile) -> None:
    unet = load_checkpoint(tiny_sd1_file).unet
    sd_compile.clear(unet)
    model = _model(unet, compile=True)
    cond = [CondEntry(torch.randn(1, 77, unet.config.cross_attention_dim))]
    x = torch.randn(1, 4, 8, 8)
    eager = _model(unet).predict(x, torch.tensor(500.0), cond, (64, 64))
    for _ in range(3):
        out = model.predict(x, torch.tensor(500.0), cond, (64, 64))
    model.predict(torch.randn(1, 4, 16, 16), torch.tensor(500.0), cond, (128, 128))
    assert len(fake_compile) == 2  # one per latent shape, reused across steps
    assert torch.allclose(out, eager)
    # A LoRA'd handle runs eagerly: frozen weights would not see its hooks.
    lora = model.with_patches(
        [WeightPatch(unet.conv_in, torch.zeros(1, 4, 3, 3), torch.zeros(unet.conv_in.out_channels, 1, 1, 1), 1.0)]
    )
    lora.predict(torch.randn(1, 4, 4, 4), torch.tensor(500.0), cond, (32, 32))
    assert len(fake_compile) == 2


def test_tiled_decode_matches_the_whole_image(tiny_sd1_file: Path) -> None:
    vae = load_vae(tiny_sd1_file)
    g = torch.Generator().manual_seed(0)
    # Smooth latents, like real ones: tiles then see what the whole decode sees near their centres.
    latents = torch.nn.functional.interpolate(torch.randn(1, 4, 4, 6, generator=g), size=(24, 32), mode="bilinear")
    whole = vae_ops.decode(vae, latents, tile=False)
    tiled = vae_ops.decode(vae, latents, tile=True)
    assert tiled.shape == whole.shape == (1, 192, 256, 3)
    # Group norms and attention see one tile at a time, so tiles differ slightly from the whole; the
    # ramped blend keeps the difference small and seamless (no jump at tile borders).
    assert (tiled - whole).abs().mean() < 0.05
    assert torch.isfinite(tiled).all()


def test_tiles_cover_every_cell_with_overlap() -> None:
    assert vae_ops._tile_starts(64, 64, 16) == [0]
    assert vae_ops._tile_starts(100, 64, 16) == [0, 36]
    starts = vae_ops._tile_starts(200, 64, 16)
    assert starts[0] == 0 and starts[-1] + 64 == 200
    assert all(b - a <= 48 for a, b in itertools.pairwise(starts))


def test_decode_tiles_automatically_when_large_or_out_of_memory(tiny_sd1_file: Path, monkeypatch) -> None:
    vae = load_vae(tiny_sd1_file)
    tiled_calls: list[tuple] = []
    real_tiled = vae_ops.tiled_decode

    def spy(model, z, **kw):
        tiled_calls.append(tuple(z.shape))
        return real_tiled(model, z, tile=4, overlap=2)

    monkeypatch.setattr(vae_ops, "tiled_decode", spy)
    latents = torch.randn(1, 4, 8, 8)
    vae_ops.decode(vae, latents)
    assert tiled_calls == []  # 64x64 px: whole
    monkeypatch.setattr(vae_ops, "TILE_ABOVE_PIXELS", 32 * 32)
    vae_ops.decode(vae, latents)
    assert tiled_calls == [(1, 4, 8, 8)]
    monkeypatch.setattr(vae_ops, "TILE_ABOVE_PIXELS", 10**9)

    def oom(self, z, *a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB")

    real_decode = type(vae).decode
    monkeypatch.setattr(
        type(vae),
        "decode",
        lambda self, z, *a, **k: oom(self, z) if z.shape[-1] == 8 else real_decode(self, z, *a, **k),
    )
    image = vae_ops.decode(vae, latents)
    assert tiled_calls == [(1, 4, 8, 8), (1, 4, 8, 8)] and image.shape == (1, 64, 64, 3)


# A compile that really runs (inductor, C++), in fresh processes: the first builds the kernels, the
# second must find them in the user cache folder instead of building them again.
_COMPILE_ONCE = """
import sys, torch
sys.path.insert(0, {root!r})
from nodes.diffusion import compile as sd_compile
if {fail}:
    import torch._inductor.config as inductor_config
    inductor_config.cpp.cxx = ("/nonexistent/c++",)  # what a machine without a C++ compiler sees
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU())
fn = sd_compile.compiled(net, key="k")
with torch.inference_mode():
    x = torch.randn(2, 8)
    assert torch.allclose(fn(x), net(x), atol=1e-5)
r = sd_compile.compile_log[-1]
print(fn.state, r.ok, r.disk_cache_hit, sd_compile.cache_dir())
"""


def _compile_in_fresh_process(home: Path, fail: bool = False) -> list[str]:
    import os
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[3])
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env.update(SDGRAPH_HOME=str(home), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", _COMPILE_ONCE.format(root=root, fail=fail)],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [*proc.stdout.split(), proc.stderr]


@pytest.mark.slow
def test_a_second_process_reuses_the_compiled_kernels_from_the_user_cache(tmp_path: Path) -> None:
    home = tmp_path / "home"
    state, ok, hit, folder, _ = _compile_in_fresh_process(home)
    assert (state, ok, hit) == ("compiled", "True", "False")
    assert Path(folder) == home / "cache" / "torch_compile"
    assert list((home / "cache" / "torch_compile" / "fxgraph").rglob("*")), "nothing was written to the cache"
    state, ok, hit, _, _ = _compile_in_fresh_process(home)
    assert (state, ok, hit) == ("compiled", "True", "True")


@pytest.mark.slow
def test_a_compile_that_fails_falls_back_to_eager(tmp_path: Path) -> None:
    state, ok, hit, _, stderr = _compile_in_fresh_process(tmp_path / "home", fail=True)
    # The script's own assert checked the output equals the eager module's.
    assert (state, ok, hit) == ("failed", "False", "False")
    assert "torch.compile failed for Sequential" in stderr and "running it eagerly" in stderr
