"""fp8 text encoders (``t5xxl_fp8_e4m3fn``, ``*_fp8_e4m3fn_scaled``, fp8 CLIP-L/G and Qwen3) stay fp8 in
memory: every linear keeps its stored fp8 weight and computes ``(fp8.float() * scale).to(dtype)`` per call.

Tiny encoders built with transformers' classes and random weights are converted as ComfyUI's files are
(plain: every floating tensor cast to fp8; scaled: each 2-D weight divided by ``amax / 448`` and cast),
then loaded through the loader and through the loader nodes. The output must equal *exactly* the same
transformers model built from the dequantized weights, and be within fp8's rounding error of the
full-precision model it was made from.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import nodes.folders
from graph_engine import ExecutionContext
from nodes.diffusion.scaled_fp8 import ScaledFp8Linear, ScaledWeight
from nodes.diffusion.text.encoder_files import CLIP_G, CLIP_L, QWEN3, T5XXL, load_text_encoder
from tests.support.scaled_fp8_files import to_plain_fp8, to_scaled_fp8
from tests.support.tiny_text import encoder_state, tiny_encoder

IDS = torch.tensor([[5, 17, 42, 7, 1, 99, 3]])
PREFIX = {CLIP_L: "", CLIP_G: "", T5XXL: "", QWEN3: "model."}
# The relative error of rounding to the format's nearest value is at most half a unit in the last place:
# 2^-4 for e4m3fn's 3 mantissa bits, 2^-3 for e5m2's 2. An encoder's output, after several layers of
# such weights, must stay within one unit (twice that).
ULP = {torch.float8_e4m3fn: 2.0**-3, torch.float8_e5m2: 2.0**-2}


def _convert(state: Mapping[str, torch.Tensor], kind: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    if kind == "scaled":
        return to_scaled_fp8(state, scale_input=True)
    return to_plain_fp8(state, torch.float8_e5m2 if kind == "e5m2" else torch.float8_e4m3fn)


def _model_names(file_state: Mapping[str, torch.Tensor], role: str, model: Any) -> dict[str, torch.Tensor]:
    """A file's tensors under the transformers model's own names (the inverse of ``encoder_state``)."""
    names = dict(file_state)
    if role in (CLIP_L, CLIP_G) and not hasattr(model, "text_model"):
        names = {k.removeprefix("text_model."): v for k, v in names.items()}
    if role == T5XXL and "shared.weight" in names:
        names["encoder.embed_tokens.weight"] = names["shared.weight"]
    if role == QWEN3:
        names = {k.removeprefix("model."): v for k, v in names.items()}
    return names


def _reference(role: str, seed: int, dequantized: Mapping[str, torch.Tensor], dtype: torch.dtype) -> Any:
    """The transformers model of ``role`` with the dequantized weights, each rounded once to ``dtype`` —
    what an fp8 layer computes with (``(fp8.float() * scale).to(dtype)``). Rotary tables stay as built."""
    model = tiny_encoder(role, seed)
    state = {
        k: (v.to(dtype) if v.is_floating_point() else v) for k, v in _model_names(dequantized, role, model).items()
    }
    result = model.load_state_dict(state, strict=False, assign=True)
    assert not result.unexpected_keys
    assert all(k.endswith(("position_ids", "inv_freq")) for k in result.missing_keys)
    return model.eval()


def _forward(model: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).last_hidden_state


def _linear_names(model: Any) -> set[str]:
    return {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


CASES = [
    (role, kind)
    for role in (T5XXL, QWEN3, CLIP_L, CLIP_G)
    for kind in ("e4m3fn", "scaled", "e5m2")
    if kind != "e5m2" or role == T5XXL  # e5m2 files exist for T5 only; one role shows the format works
]


@pytest.mark.parametrize(("role", "kind"), CASES)
def test_fp8_encoder_stays_fp8_and_equals_its_dequantized_weights(tmp_path: Path, role: str, kind: str) -> None:
    dtype = torch.float32 if role in (CLIP_L, CLIP_G) else torch.bfloat16  # as the CLIP loaders choose
    original = tiny_encoder(role, 3)
    fp8_state, dequantized = _convert(encoder_state(original, role), kind)
    path = tmp_path / f"{role}_fp8_{kind}.safetensors"
    save_file(fp8_state, str(path))
    loaded = load_text_encoder(path, prefix=PREFIX[role], role=role, dtype=dtype)

    # Every linear of the architecture is an fp8 layer holding the file's bytes and scale, and no other.
    fp8_format = next(v.dtype for k, v in fp8_state.items() if k.endswith("q.weight") or "q_proj.weight" in k)
    layers = {n: m for n, m in loaded.named_modules() if isinstance(m, ScaledFp8Linear)}
    assert set(layers) == _linear_names(original) and not _linear_names(loaded)
    file_names = _model_names(fp8_state, role, original)
    scale_keys = {k.removesuffix(".scale_weight") + ".weight": v for k, v in fp8_state.items() if "scale_w" in k}
    scales = _model_names(scale_keys, role, original)
    assert (kind == "scaled") == bool(scales)
    for name, layer in layers.items():
        stored = file_names[name + ".weight"]
        assert layer.fp8_weight.dtype == fp8_format
        assert torch.equal(layer.fp8_weight.view(torch.uint8), stored.view(torch.uint8))
        scale = scales.get(name + ".weight")
        assert float(layer.scale_weight) == (1.0 if scale is None else float(scale))
    # Nothing else is fp8: tables and norms are in the working dtype (see nodes/diffusion/scaled_fp8.py).
    others = [t for n, t in [*loaded.named_parameters(), *loaded.named_buffers()] if not n.endswith("fp8_weight")]
    assert {t.dtype for t in others if t.is_floating_point()} <= {dtype, torch.float32}
    assert loaded.get_input_embeddings().weight.dtype == dtype
    fp8_bytes = sum(m.fp8_weight.nbytes for m in layers.values())
    assert fp8_bytes == sum(m.weight.numel() for m in original.modules() if isinstance(m, torch.nn.Linear))

    out = _forward(loaded)
    assert out.dtype == dtype
    assert torch.equal(out, _forward(_reference(role, 3, dequantized, dtype)))
    full = _forward(original)
    error = ((out.float() - full).norm() / full.norm()).item()
    assert 0 < error < ULP[fp8_format], error


@pytest.mark.parametrize("fmt", [torch.float8_e4m3fn, torch.float8_e5m2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dequantize_by_table_equals_the_formula_for_every_byte(fmt: torch.dtype, dtype: torch.dtype) -> None:
    """The per-call dequantization looks each byte up in a 256-entry table of products; for every byte
    (subnormals, ±0, the largest values, NaN codes) and scales that round differently, it equals
    ``(fp8.float() * scale).to(dtype)`` bit for bit."""
    data = torch.arange(256, dtype=torch.uint8).view(fmt).reshape(16, 16)
    for scale in (1.0, 0.01, 3.7e-5, 123.4, 2.0**-130):
        got = ScaledWeight(data, torch.tensor(scale)).dequantize(dtype)
        want = (data.float() * torch.tensor(scale)).to(dtype)
        assert got.dtype == dtype and got.shape == data.shape
        assert torch.equal(got.isnan(), want.isnan())
        assert torch.equal(got.nan_to_num(0.0), want.nan_to_num(0.0)), scale
    whole = ScaledWeight(data, torch.tensor(0.5))
    rows, cols = whole.split([4, 12])[1], whole.chunk(2, dim=1)[1]  # the converters' splits: views
    assert torch.equal(rows.dequantize().nan_to_num(0.0), (data[4:].float() * 0.5).nan_to_num(0.0))
    assert torch.equal(cols.dequantize().nan_to_num(0.0), (data[:, 8:].float() * 0.5).nan_to_num(0.0))


def test_a_bad_scale_names_the_tensor(tmp_path: Path) -> None:
    scaled, _ = to_scaled_fp8(encoder_state(tiny_encoder(T5XXL), T5XXL))
    scaled["encoder.block.0.layer.1.DenseReluDense.wo.scale_weight"] = torch.tensor([1.0, 2.0])
    save_file(scaled, str(tmp_path / "t5_fp8_scaled.safetensors"))
    with pytest.raises(Exception, match=r"wo\.scale_weight should be one positive number"):
        load_text_encoder(tmp_path / "t5_fp8_scaled.safetensors", prefix="", role=T5XXL)


# ------------------------------------------------------------------------------------------------
# Through the loader nodes, as a ComfyUI workflow loads them
# ------------------------------------------------------------------------------------------------

CTX = ExecutionContext(node_id=1, title="fp8 text encoders")
SEEDS = {CLIP_L: 11, CLIP_G: 12, T5XXL: 13, QWEN3: 14}
# The fp8 form each file takes in the model folder (as published: T5 plain and scaled, the rest mixed).
FILES = {
    "t5xxl_fp8_e4m3fn.safetensors": (T5XXL, "e4m3fn"),
    "t5xxl_fp8_e4m3fn_scaled.safetensors": (T5XXL, "scaled"),
    "clip_l_fp8_e4m3fn.safetensors": (CLIP_L, "e4m3fn"),
    "clip_g_fp8_e4m3fn_scaled.safetensors": (CLIP_G, "scaled"),
    "qwen_3_4b_fp8_scaled.safetensors": (QWEN3, "scaled"),
}


@pytest.fixture(scope="module")
def fp8_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each fp8 file with its dequantized twin ``deq_<name>``, stored in the dtype the loaders compute the
    fp8 file in (bf16 for T5/Qwen3, float32 for the CLIPs), so the twin's layers hold exactly the weights
    the fp8 layers compute with."""
    root = tmp_path_factory.mktemp("models")
    folder = root / "text_encoders"
    folder.mkdir()
    for name, (role, kind) in FILES.items():
        fp8_state, dequantized = _convert(encoder_state(tiny_encoder(role, SEEDS[role]), role), kind)
        save_file(fp8_state, str(folder / name))
        twin = torch.float32 if role in (CLIP_L, CLIP_G) else torch.bfloat16
        save_file(
            {k: v.to(twin) if v.is_floating_point() else v for k, v in dequantized.items()}, str(folder / f"deq_{name}")
        )
    return root


@pytest.fixture
def fp8_models(fp8_root: Path) -> Iterator[Path]:
    nodes.folders.configure(extra_roots=[str(fp8_root)])
    try:
        yield fp8_root
    finally:
        nodes.folders.configure()


def _all_fp8(encoder: Any) -> bool:
    layers = [m for m in encoder.modules() if isinstance(m, ScaledFp8Linear)]
    return bool(layers) and not _linear_names(encoder) and all(m.fp8_weight.element_size() == 1 for m in layers)


@pytest.mark.parametrize("t5", ["t5xxl_fp8_e4m3fn.safetensors", "t5xxl_fp8_e4m3fn_scaled.safetensors"])
def test_dual_clip_loader_flux_fp8_encodes_as_the_dequantized_files(fp8_models: Path, t5: str) -> None:
    from nodes.text_encoders import dual_clip_loader

    clip_l = "clip_l_fp8_e4m3fn.safetensors"
    (clip,) = dual_clip_loader.execute(CTX, t5, clip_l, "flux", "default")
    (twin,) = dual_clip_loader.execute(CTX, f"deq_{t5}", f"deq_{clip_l}", "flux", "default")
    assert _all_fp8(clip.encoders.t5xxl) and _all_fp8(clip.encoders.clip_l)
    assert clip.encoders.t5xxl.dtype == torch.bfloat16 and clip.encoders.clip_l.dtype == torch.float32
    (a,), (b,) = clip.encode_flux("a cat", "a cat on a red sofa"), twin.encode_flux("a cat", "a cat on a red sofa")
    assert a.embeds.abs().max() > 0
    assert torch.equal(a.embeds, b.embeds) and torch.equal(a.pooled, b.pooled)


def test_triple_clip_loader_sd3_fp8_encodes_as_the_dequantized_files(fp8_models: Path) -> None:
    from nodes.text_encoders import triple_clip_loader

    names = ("clip_l_fp8_e4m3fn.safetensors", "clip_g_fp8_e4m3fn_scaled.safetensors", "t5xxl_fp8_e4m3fn.safetensors")
    (clip,) = triple_clip_loader.execute(CTX, *names)
    (twin,) = triple_clip_loader.execute(CTX, *(f"deq_{n}" for n in names))
    assert all(_all_fp8(e) for e in (clip.encoders.clip_l, clip.encoders.clip_g, clip.encoders.t5xxl))
    (a,), (b,) = clip.encode_sd3("a", "b c", "a cat"), twin.encode_sd3("a", "b c", "a cat")
    assert torch.equal(a.embeds, b.embeds) and torch.equal(a.pooled, b.pooled)


def test_clip_loader_lumina2_fp8_qwen3_encodes_as_the_dequantized_file(fp8_models: Path) -> None:
    from nodes.text_encoders import clip_loader

    name = "qwen_3_4b_fp8_scaled.safetensors"
    (clip,) = clip_loader.execute(CTX, name, "lumina2", "default")
    (twin,) = clip_loader.execute(CTX, f"deq_{name}", "lumina2", "default")
    assert _all_fp8(clip.encoders.qwen3)
    (a,), (b,) = clip.encode("a photo of a cat"), twin.encode("a photo of a cat")
    assert a.embeds.abs().max() > 0 and torch.equal(a.embeds, b.embeds)
