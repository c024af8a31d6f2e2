"""GGUF text encoders (T5-XXL, Qwen3) as llama.cpp writes them: its tensor names (``enc.blk.0.attn_q``),
quantized linears kept quantized and dequantized per call. The encoder must compute exactly what the
same model built from the dequantized weights computes, through the loader and through the nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from graph_engine import ExecutionContext
from nodes.diffusion.gguf import GGUFLinear, read_gguf_shapes
from nodes.diffusion.text.encoder_files import QWEN3, T5XXL, load_text_encoder
from tests.support import tiny_flow as tf
from tests.support.gguf_files import write_text_encoder_gguf
from tests.support.tiny_text import encoder_state, tiny_encoder

CTX = ExecutionContext(node_id=1, title="DualCLIPLoader (GGUF)")


@pytest.mark.parametrize(("role", "arch"), [(T5XXL, "t5encoder"), (QWEN3, "qwen3")])
def test_gguf_text_encoder_equals_its_dequantized_weights(tmp_path: Path, role: str, arch: str) -> None:
    reference = tiny_encoder(role, 3)
    state = encoder_state(reference, role)
    path, dequantized = write_text_encoder_gguf(tmp_path / f"{arch}-Q8_0.gguf", state, arch)
    # llama.cpp names read back as Hugging Face names (Qwen3's without the "model." its loader drops anyway)
    assert set(read_gguf_shapes(path)) == {k.removeprefix("model.") for k in state}
    loaded = load_text_encoder(path, prefix="", role=role, dtype=torch.float32)
    bare = {k.removeprefix("model."): v for k, v in dequantized.items()}  # Qwen3 as a bare file
    exact = load_text_encoder(tf.write_file(tmp_path / "deq.safetensors", bare), prefix="", role=role)
    layers = [m for m in loaded.modules() if isinstance(m, GGUFLinear)]
    assert layers and not any(isinstance(m, torch.nn.Linear) for m in loaded.modules())
    ids = torch.tensor([[5, 17, 42, 7, 1]])
    with torch.no_grad():
        out = loaded(input_ids=ids).last_hidden_state
        want = exact(input_ids=ids).last_hidden_state
        floats = reference(input_ids=ids).last_hidden_state
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    assert not torch.equal(out, floats)  # it is the quantized model


@pytest.fixture
def encoder_root(tmp_path: Path) -> Iterator[Path]:
    import nodes.folders
    from tests.support.tiny_text import save_encoder

    root = tmp_path / "models"
    clip_l, t5 = tf.tiny_flux_text_encoders(4)
    _, dequantized = write_text_encoder_gguf(
        root / "text_encoders" / "t5-v1_1-xxl-encoder-Q8_0.gguf", encoder_state(t5, T5XXL), "t5encoder"
    )
    tf.write_file(root / "text_encoders" / "t5_dequantized.safetensors", dequantized)
    from nodes.diffusion.text.encoder_files import CLIP_L

    save_encoder(clip_l, CLIP_L, root / "text_encoders" / "clip_l.safetensors")
    nodes.folders.configure(extra_roots=[str(root)])
    yield root
    nodes.folders.configure()


def test_dual_clip_loader_gguf_encodes_as_the_dequantized_t5(encoder_root: Path) -> None:
    from nodes.text_encoders import _files, dual_clip_loader, dual_clip_loader_gguf

    assert "t5-v1_1-xxl-encoder-Q8_0.gguf" in _files()
    (clip,) = dual_clip_loader_gguf.execute(CTX, "t5-v1_1-xxl-encoder-Q8_0.gguf", "clip_l.safetensors", "flux")
    (exact,) = dual_clip_loader.execute(CTX, "t5_dequantized.safetensors", "clip_l.safetensors", "flux", "default")
    (a,), (b,) = clip.encode_flux("a cat", "a cat"), exact.encode_flux("a cat", "a cat")
    assert a.embeds.abs().max() > 0
    torch.testing.assert_close(a.embeds, b.embeds, rtol=1e-5, atol=1e-5)
