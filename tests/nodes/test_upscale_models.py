"""Upscale models through sdgraph's graph against spandrel's own loader on the same files.

Tiny random ESRGAN (RRDBNet) and SwinIR networks are built with spandrel's architecture classes
(tests/support/tiny_upscale.py) and saved as people download them: ESRGAN in the original layout and in
RealESRGAN's (BasicSR) layout, as .safetensors and as a .pth written by torch.save (read weights-only).
The graph is Load Image → Upscale Image (using Model) ← Load Upscale Model; the oracle is
``spandrel.ModelLoader().load_from_file(path)`` called on the same pixels.

Tiling: with tiles smaller than the image, tiled and whole-image results differ only near tile seams,
because a tile's border pixels see less context. Stated tolerance, on 0..1 pixels, for 24-pixel tiles
overlapping by 12 on a 40×48 image (measured about half of each): ESRGAN mean |Δ| ≤ 0.003, max ≤ 0.05;
SwinIR (attention over whole windows, so a wider reach) mean |Δ| ≤ 0.01, max ≤ 0.1. One tile covering
the image gives exactly the whole-image result.
"""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import nodes.folders
from graph_engine import Executor, Graph, ResultCache, make_plan
from graph_engine.events import NodeProgress
from nodes import builtin_registry
from nodes.diffusion.spandrel_import import INSTALL_HINT, spandrel_available
from nodes.folders import input_dir

pytestmark = pytest.mark.skipif(not spandrel_available(), reason=f"spandrel is not installed. {INSTALL_HINT}")

H, W = 40, 48


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "models"
    (root / "upscale_models").mkdir(parents=True)
    nodes.folders.configure(extra_roots=[str(root)])
    yield root
    nodes.folders.configure()


@pytest.fixture(scope="module")
def esrgan():
    from tests.support.tiny_upscale import build_esrgan

    return build_esrgan(seed=1)


@pytest.fixture(scope="module")
def swinir():
    from tests.support.tiny_upscale import build_swinir

    return build_swinir(seed=2)


def picture(name: str = "photo.png") -> torch.Tensor:
    """A smooth random picture in the input folder; returns it as Load Image gives it ([1, H, W, 3])."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((W, H), Image.Resampling.BICUBIC)
    input_dir().mkdir(parents=True, exist_ok=True)
    img.save(input_dir() / name)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]


def upscale_graph(model_name: str, image: str = "photo.png") -> tuple[Graph, int]:
    g = Graph()
    loader = g.add_node("UpscaleModelLoader", {"model_name": model_name}).id
    load = g.add_node("LoadImage", {"image": image}).id
    up = g.add_node("ImageUpscaleWithModel").id
    g.add_link(loader, "UPSCALE_MODEL", up, "upscale_model", "UPSCALE_MODEL")
    g.add_link(load, "IMAGE", up, "image", "IMAGE")
    return g, up


def run(g: Graph, target: int, tmp_path, settings=None, events=None):
    registry = builtin_registry()
    executor = Executor(registry, output_dir=tmp_path, cache=ResultCache(), settings=settings)
    return executor.execute(make_plan(g, registry, [target]), on_event=events)


def upscaled(model_name: str, tmp_path, settings=None, events=None) -> torch.Tensor:
    g, up = upscale_graph(model_name)
    result = run(g, up, tmp_path, settings, events)
    assert result.status == "done", result.error
    return result.outputs[up][0]


def spandrel_reference(path, image: torch.Tensor) -> torch.Tensor:
    """spandrel's own file loader and call on the same pixels: the oracle."""
    import spandrel

    descriptor = spandrel.ModelLoader().load_from_file(path).eval()
    with torch.inference_mode():
        return descriptor(image.movedim(-1, 1)).movedim(1, -1)


@pytest.mark.parametrize(
    "layout", ["esrgan.safetensors", "realesrgan.safetensors", "RealESRGAN_x4plus.pth", "RRDB_ESRGAN_x4_legacy.pth"]
)
def test_esrgan_matches_spandrel(layout, esrgan, root, tmp_path):
    from tests.support.tiny_upscale import esrgan_state, realesrgan_state, save_pth, save_safetensors

    path = root / "upscale_models" / layout
    if layout == "esrgan.safetensors":
        save_safetensors(esrgan_state(esrgan), path)
    elif layout == "realesrgan.safetensors":
        save_safetensors(realesrgan_state(esrgan), path)
    elif layout.endswith("_legacy.pth"):  # 2018-19 ESRGAN releases: torch's pre-zip format (cannot be mmapped)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(esrgan_state(esrgan), path, _use_new_zipfile_serialization=False)
    else:  # RealESRGAN's releases: torch.save({"params_ema": state_dict})
        save_pth({"params_ema": realesrgan_state(esrgan)}, path)
    image = picture()
    ours = upscaled(layout, tmp_path)
    assert ours.shape == (1, H * 4, W * 4, 3)
    theirs = spandrel_reference(path, image)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    # The network really ran: not a plain resize, and the picture shows through.
    plain = torch.nn.functional.interpolate(image.movedim(-1, 1), scale_factor=4).movedim(1, -1)
    assert (ours - plain).abs().mean() > 0.01 and ours.std() > 0.05


def test_swinir_matches_spandrel(swinir, root, tmp_path):
    from tests.support.tiny_upscale import save_safetensors, swinir_state

    path = save_safetensors(swinir_state(swinir), root / "upscale_models" / "swinir_x2.safetensors")
    image = picture()
    ours = upscaled("swinir_x2.safetensors", tmp_path)
    assert ours.shape == (1, H * 2, W * 2, 3)
    torch.testing.assert_close(ours, spandrel_reference(path, image), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("arch", "mean_tol", "max_tol"), [("esrgan", 0.003, 0.05), ("swinir", 0.01, 0.1)])
def test_tiled_agrees_with_whole(arch, mean_tol, max_tol, esrgan, swinir, root, tmp_path):
    from tests.support.tiny_upscale import esrgan_state, save_safetensors, swinir_state

    state = esrgan_state(esrgan) if arch == "esrgan" else swinir_state(swinir)
    save_safetensors(state, root / "upscale_models" / f"{arch}.safetensors")
    picture()
    whole = upscaled(f"{arch}.safetensors", tmp_path)
    steps: list[tuple[int, int]] = []

    def on_event(event):
        if isinstance(event, NodeProgress):
            steps.append((event.step, event.total))

    tiled = upscaled(f"{arch}.safetensors", tmp_path, {"upscale_tile_size": 24}, on_event)
    # 24-pixel tiles overlapping by 12 over 40×48: 3 rows × 3 columns, each reported.
    assert steps == [(i, 9) for i in range(1, 10)]
    diff = (tiled - whole).abs()
    assert 0 < diff.mean() <= mean_tol and diff.max() <= max_tol, (diff.mean(), diff.max())
    one_tile = upscaled(f"{arch}.safetensors", tmp_path, {"upscale_tile_size": 64})
    torch.testing.assert_close(one_tile, whole, rtol=0, atol=1e-6)


def test_out_of_memory_falls_back_to_halved_tiles(esrgan, monkeypatch):
    """The whole image and 512- to 64-pixel tiles run out of memory (injected); 32-pixel tiles fit."""
    import spandrel

    from nodes.diffusion.upscale_models import UpscaleModel, upscale_image, upscale_tiled
    from tests.support.tiny_upscale import esrgan_state

    descriptor = spandrel.ModelLoader().load_from_state_dict(esrgan_state(esrgan)).eval()
    model = UpscaleModel(descriptor, "esrgan.safetensors")
    image = torch.rand(1, 80, 72, 3, generator=torch.Generator().manual_seed(3))
    calls: list[tuple[int, int, bool]] = []
    forward = descriptor.model.forward

    def tight_memory(x):
        h, w = x.shape[-2:]
        calls.append((h, w, h * w <= 32 * 32))
        if h * w > 32 * 32:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return forward(x)

    monkeypatch.setattr(descriptor.model, "forward", tight_memory)
    out = upscale_image(model, image, torch.device("cpu"))
    # The whole image first; tiles of 512, 256 and 128 still hold it whole; 64 is too big; 32 fits.
    assert [c[:2] for c in calls[:5]] == [(80, 72)] * 4 + [(64, 64)]
    assert all(ok for *_, ok in calls[5:]) and len(calls[5:]) == 4 * 4  # 4×4 tiles of 32, stride 16
    monkeypatch.setattr(descriptor.model, "forward", forward)
    expected = upscale_tiled(model, image.movedim(-1, 1), 32, 16).movedim(1, -1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_unknown_file_is_one_clear_message(root, tmp_path):
    from safetensors.torch import save_file

    (root / "upscale_models" / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    save_file({"foo.weight": torch.zeros(3, 3)}, str(root / "upscale_models" / "mystery.safetensors"))
    picture()
    for name, expected in [
        ("junk.safetensors", "damaged or not a model file"),
        ("mystery.safetensors", "is not an upscale model spandrel"),
    ]:
        g, up = upscale_graph(name)
        result = run(g, up, tmp_path)
        assert result.status == "failed"
        error = result.error
        assert error.type == "UpscaleModelLoader" and error.input == "model_name"
        message = str(error)
        assert "Load Upscale Model" in message or "UpscaleModelLoader" in message
        assert name in message and expected in message, message
        assert "Traceback" not in message and "\n" not in message


def test_checkpoint_in_the_wrong_folder(tiny_model_root, root, tmp_path):
    from tests.support.model_root import TINY_NAMES

    shutil.copy(tiny_model_root / "checkpoints" / TINY_NAMES["sd1"], root / "upscale_models" / "oops.safetensors")
    picture()
    g, up = upscale_graph("oops.safetensors")
    result = run(g, up, tmp_path)
    assert result.status == "failed" and result.error.input == "model_name"
    message = str(result.error)
    assert "oops.safetensors is not an upscale model" in message and "models/checkpoints" in message, message


def test_inpainting_model_is_refused(root, tmp_path):
    """LaMa (inpainting: image and mask in) is a model spandrel knows, but not an image-to-image one."""
    from spandrel.architectures.LaMa import LaMa

    from tests.support.tiny_upscale import save_safetensors

    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in LaMa().state_dict().items()}
    save_safetensors(state, root / "upscale_models" / "big-lama.safetensors")
    picture()
    g, up = upscale_graph("big-lama.safetensors")
    result = run(g, up, tmp_path)
    assert result.status == "failed" and result.error.input == "model_name"
    assert "needs a mask" in str(result.error), str(result.error)


def test_without_spandrel_the_nodes_say_how_to_install(root, tmp_path, monkeypatch):
    for name in [n for n in sys.modules if n == "spandrel" or n.startswith("spandrel.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "spandrel", None)  # `import spandrel` now fails as if not installed
    (root / "upscale_models" / "x.safetensors").write_bytes(b"")
    picture()
    g, up = upscale_graph("x.safetensors")
    result = run(g, up, tmp_path)
    assert result.status == "failed"
    message = str(result.error)
    assert "need the spandrel package" in message, message
    assert "pip install --no-deps 'spandrel>=0.4.2,<0.5' && pip install einops" in message, message
    assert "Traceback" not in message and "ModuleNotFoundError" not in message


def test_spandrel_imports_without_torchvision_and_leaves_no_stand_in():
    """On a CPU torch there is no torchvision; the stand-in is gone after import and its normalize is exact."""
    import spandrel  # noqa: F401  (imported through nodes.diffusion.spandrel_import by the skip check)
    from spandrel.architectures import RestoreFormer

    from nodes.diffusion.spandrel_import import torchvision_works

    if torchvision_works():
        pytest.skip("a working torchvision is installed; the stand-in is not used")
    assert "torchvision" not in sys.modules
    x = torch.rand(1, 3, 4, 5)
    out = RestoreFormer.tv_normalize(x, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    torch.testing.assert_close(out, (x - 0.5) / 0.5)
