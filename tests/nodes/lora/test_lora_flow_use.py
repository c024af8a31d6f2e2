"""Flow-family LoRAs in use: text encoders, LyCORIS on fused layers, two threads, LoRAs for other models.

Oracles here are merged weights written by the test (``W + strength · ΔW`` on a deep copy, ΔW built from
the file tensors by the textbook formulas), as in ``test_lora_apply``.
"""

from __future__ import annotations

import copy
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor

from nodes.diffusion.lora import LoraMismatchError, apply_lora, load_lora
from nodes.diffusion.lora_flow import PatchedFlowClip
from nodes.diffusion.model import DiffusionModel
from nodes.diffusion.text.flow_encode import FlowEncoders
from nodes.diffusion.text_encoders import FlowClip
from tests.nodes.lora import flow_support as fs
from tests.nodes.lora.lora_support import KOHYA_DIFFUSERS_NAMES, LoraWriter, merged
from tests.support import tiny_flow as tf
from tests.support.tiny_sd import TinyModels

PROMPT = "a lighthouse on a cliff at dusk"


def _module(root: torch.nn.Module, suffix: str) -> str:
    """The real name of the layer ending in ``suffix`` (CLIP has a ``text_model.`` level or not)."""
    (name,) = [n for n, _ in root.named_modules() if n == suffix or n.endswith("." + suffix)]
    return name


def _encode(clip: FlowClip) -> tuple[Tensor, Tensor]:
    (entry,) = clip.encode(PROMPT)
    return entry.embeds, entry.pooled


def test_flux_text_encoder_loras(tmp_path: Path) -> None:
    """CLIP-L (kohya ``lora_te1_`` and ComfyUI ``text_encoders.clip_l.transformer.``) and T5 (``lora_te3_``)
    parts of a FLUX LoRA change the prompt as merged weights do; the unpatched CLIP is unchanged."""
    clip_l, t5 = tf.tiny_flux_text_encoders(seed=30)
    w = LoraWriter(seed=31)
    q = _module(clip_l, "encoder.layers.0.self_attn.q_proj")
    fc1 = _module(clip_l, "encoder.layers.1.mlp.fc1")
    t5_q = _module(t5, "encoder.block.0.layer.0.SelfAttention.q")
    t5_wo = _module(t5, "encoder.block.1.layer.1.DenseReluDense.wo")
    planned_l = [
        w.kohya(clip_l, q, "lora_te1_text_model_encoder_layers_0_self_attn_q_proj", alpha=2.0),
        w.pair(
            clip_l,
            fc1,
            "text_encoders.clip_l.transformer.text_model.encoder.layers.1.mlp.fc1.lora_down.weight",
            "text_encoders.clip_l.transformer.text_model.encoder.layers.1.mlp.fc1.lora_up.weight",
        ),
    ]
    planned_t5 = [
        w.kohya(t5, t5_q, "lora_te3_encoder_block_0_layer_0_SelfAttention_q", alpha=8.0),
        w.kohya(t5, t5_wo, "lora_te3_encoder_block_1_layer_1_DenseReluDense_wo", alpha=4.0),
    ]
    network = tf.tiny_flux(seed=1)
    w.kohya(network, "transformer_blocks.0.attn.to_q", "lora_unet_double_blocks_0_img_attn_proj", alpha=None)
    lora = load_lora(w.save(tmp_path / "flux_te.safetensors"))
    base = FlowClip("flux", FlowEncoders(clip_l=clip_l, t5xxl=t5))
    before = _encode(base)
    for strength in (1.0, 0.5):
        _, patched = apply_lora(fs.flow_model(network, "flux"), base, lora, 1.0, strength)
        assert isinstance(patched, PatchedFlowClip)
        oracle = FlowClip(
            "flux",
            FlowEncoders(clip_l=merged(clip_l, planned_l, strength), t5xxl=merged(t5, planned_t5, strength)),
        )
        got, want = _encode(patched), _encode(oracle)
        diffs = [fs.max_diff(a, b) for a, b in zip(got, want, strict=True)]
        print(f"flux text encoders, strength {strength}: max diff embeds {diffs[0]:.2e}, pooled {diffs[1]:.2e}")
        assert max(diffs) <= fs.TOL
        assert fs.max_diff(got[0], before[0]) > 1e-3 and fs.max_diff(got[1], before[1]) > 1e-3
        # CLIP Set Last Layer and the T5 length keep the LoRA
        assert isinstance(patched.with_t5_length(256), PatchedFlowClip)
    after = _encode(base)
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])


def test_sd3_clip_g_lora_and_a_missing_t5_reported_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """diffusers ``text_encoder_2.`` is SD3's CLIP-G; T5 layers for a CLIP loaded without T5 are reported
    (count and first key) and left out, the rest still applies."""
    clip_l, clip_g, t5 = tf.tiny_text_encoders(seed=40)
    w = LoraWriter(seed=41)
    k = _module(clip_g, "encoder.layers.0.self_attn.k_proj")
    key = "text_encoder_2.text_model.encoder.layers.0.self_attn.k_proj"
    planned = [w.pair(clip_g, k, f"{key}.lora_A.weight", f"{key}.lora_B.weight")]
    t5_q = _module(t5, "encoder.block.0.layer.0.SelfAttention.q")
    w.pair(t5, t5_q, "text_encoder_3.encoder.block.0.layer.0.SelfAttention.q.lora_A.weight",
           "text_encoder_3.encoder.block.0.layer.0.SelfAttention.q.lora_B.weight")  # fmt: skip
    lora = load_lora(w.save(tmp_path / "sd3_te.safetensors"))
    base = FlowClip("sd3", FlowEncoders(clip_l=clip_l, clip_g=clip_g))
    network = tf.tiny_sd3(seed=2)
    with caplog.at_level(logging.WARNING, logger="nodes.diffusion.lora_flow"):
        model, patched = apply_lora(fs.flow_model(network, "sd3"), base, lora, 1.0, 0.7)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "1 T5-XXL layers not used" in warnings[0] and "text_encoder_3.encoder" in warnings[0]
    assert model.patches == ()  # the file has no transformer layers
    oracle = FlowClip("sd3", FlowEncoders(clip_l=clip_l, clip_g=merged(clip_g, planned, 0.7)))
    got, want = _encode(patched), _encode(oracle)
    print(f"sd3 CLIP-G: max diff {max(fs.max_diff(a, b) for a, b in zip(got, want, strict=True)):.2e}")
    assert all(fs.max_diff(a, b) <= fs.TOL for a, b in zip(got, want, strict=True))
    assert fs.max_diff(got[1], _encode(base)[1]) > 1e-3


def _merged_rows(network: torch.nn.Module, slices: list[tuple[str, int, int]], delta: Tensor, strength: float) -> Any:
    out = copy.deepcopy(network)
    with torch.no_grad():
        for name, start, stop in slices:
            out.get_submodule(name).weight += strength * delta[start:stop]
    return out


def test_loha_and_lokr_on_fused_flux_layers(tmp_path: Path) -> None:
    """A LoHa on a single block's ``linear1`` (q, k, v and the MLP input fused) and a LoKr on a double
    block's ``qkv``: the dense ΔW is cut by rows onto the diffusers layers."""
    network = tf.tiny_flux(seed=1)
    g = torch.Generator().manual_seed(50)
    width, r = 64, 4
    loha = {
        "hada_w1_a": torch.randn(7 * width, r, generator=g) * 0.1,
        "hada_w1_b": torch.randn(r, width, generator=g) * 0.1,
        "hada_w2_a": torch.randn(7 * width, r, generator=g) * 0.1,
        "hada_w2_b": torch.randn(r, width, generator=g) * 0.1,
    }
    lokr = {"lokr_w1": torch.randn(3, 2, generator=g) * 0.3, "lokr_w2": torch.randn(width, width // 2, generator=g)}
    tensors = {f"lora_unet_single_blocks_1_linear1.{k}": v for k, v in loha.items()}
    tensors |= {f"diffusion_model.double_blocks.0.txt_attn.qkv.{k}": v for k, v in lokr.items()}
    tensors["lora_unet_single_blocks_1_linear1.alpha"] = torch.tensor(2.0)
    path = tmp_path / "lyco.safetensors"
    save_file(tensors, str(path))
    d_loha = (loha["hada_w1_a"] @ loha["hada_w1_b"]) * (loha["hada_w2_a"] @ loha["hada_w2_b"]) * (2.0 / r)
    d_lokr = torch.kron(lokr["lokr_w1"], lokr["lokr_w2"])
    s, t = "single_transformer_blocks.1.", "transformer_blocks.0.attn."
    cuts = [
        (s + "attn.to_q", 0, 64),
        (s + "attn.to_k", 64, 128),
        (s + "attn.to_v", 128, 192),
        (s + "proj_mlp", 192, 448),
    ]
    inputs = tf.example_inputs(network, seed=8)
    strength = 0.5
    oracle = _merged_rows(network, cuts, d_loha, strength)
    qkv = [(t + "add_q_proj", 0, 64), (t + "add_k_proj", 64, 128), (t + "add_v_proj", 128, 192)]
    oracle = _merged_rows(oracle, qkv, d_lokr, strength)
    model, _ = apply_lora(fs.flow_model(network, "flux"), None, load_lora(path), strength, 0.0)
    got, want = fs.output(model, inputs), tf.forward(oracle, inputs)
    print(f"LoHa/LoKr on fused FLUX layers: max diff {fs.max_diff(got, want):.2e}")
    assert fs.max_diff(got, want) <= fs.TOL
    assert fs.max_diff(want, tf.forward(network, inputs)) > 1e-2


ROUNDS = 8


def test_two_threads_sample_one_flux_with_different_loras(tmp_path: Path) -> None:
    """As ``test_lora_threads`` for the UNet: handles sampling one shared transformer on three threads see
    only their own LoRA."""
    network = tf.tiny_flux(seed=1)
    inputs = tf.example_inputs(network, seed=9)
    handles: list[DiffusionModel] = [fs.flow_model(network, "flux")]
    for seed, style in ((60, "kohya"), (61, "comfy")):
        lora = fs.original_lora(network, fs.flux_original(network), seed=seed, style=style)
        path = fs.save(tmp_path / f"{seed}.safetensors", lora.tensors)
        handles.append(apply_lora(handles[0], None, load_lora(path), 1.0, 0.0)[0])
    alone = [fs.output(h, inputs) for h in handles]
    for i in range(3):
        for j in range(i):
            assert fs.max_diff(alone[i], alone[j]) > 1e-2
    results: dict[int, list[Tensor]] = {i: [] for i in range(len(handles))}
    errors: list[BaseException] = []
    start = threading.Barrier(len(handles))

    def run(i: int) -> None:
        try:
            start.wait()
            for _ in range(ROUNDS):
                results[i].append(fs.output(handles[i], inputs))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(handles))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not errors, errors
    for i, outs in results.items():
        assert len(outs) == ROUNDS
        worst = max(fs.max_diff(o, alone[i]) for o in outs)
        assert worst <= 1e-6, f"handle {i} mixed with another thread's LoRA (max diff {worst})"
    assert all(not m._forward_hooks for m in network.modules())


def test_flux_lora_on_sd1_and_sd3_models_is_refused(sd1_model: DiffusionModel, sd1: TinyModels, tmp_path: Path) -> None:
    """The other direction of ``test_a_lora_on_a_flux_model_is_one_clear_message``: a FLUX LoRA on an SD1
    UNet or an SD3 transformer names the file, the model and what the LoRA is for."""
    network = tf.tiny_flux(seed=1)
    lora = fs.original_lora(network, fs.flux_original(network), seed=70, style="kohya")
    path = fs.save(tmp_path / "flux_style.safetensors", lora.tensors)
    with pytest.raises(LoraMismatchError, match=r"'flux_style.safetensors' does not fit this sd1 model.*FLUX\.1"):
        apply_lora(sd1_model, None, load_lora(path), 1.0, 0.0)
    with pytest.raises(LoraMismatchError, match=r"'flux_style.safetensors' does not fit this sd3 model.*FLUX\.1"):
        apply_lora(fs.flow_model(tf.tiny_sd3(seed=2), "sd3"), None, load_lora(path), 1.0, 0.0)
    w = LoraWriter(seed=71)
    for base, module in KOHYA_DIFFUSERS_NAMES[:2]:
        w.kohya(sd1.unet, module, base, alpha=2.0)
    sd1_path = w.save(tmp_path / "sd1_style.safetensors")
    with pytest.raises(
        LoraMismatchError,
        match=r"2 of 2 transformer layers are not in the model.*those of a Stable Diffusion 1.x/2.x/XL UNet",
    ):
        apply_lora(fs.flow_model(network, "flux"), None, load_lora(sd1_path), 1.0, 0.0)


def test_lora_on_a_gguf_flux_equals_lora_on_its_dequantized_weights(tmp_path: Path) -> None:
    """A GGUF transformer's quantized linears take the same hooks (no weight is dequantized to apply them):
    the LoRA'd Q8_0 model computes what the LoRA'd network built from its dequantized weights computes."""
    from nodes.diffusion.dit.loading import load_transformer
    from nodes.diffusion.gguf import GGUFLinear
    from tests.support.gguf_files import write_gguf

    reference = tf.tiny_flux(seed=4)
    path, dequantized = write_gguf(tmp_path / "tiny_flux-Q8_0.gguf", tf.flux_to_original(reference), "Q8_0")
    quantized = load_transformer(path, dtype=torch.float32).network
    exact = load_transformer(tf.write_file(tmp_path / "dequantized.safetensors", dequantized), dtype=torch.float32)
    assert any(isinstance(m, GGUFLinear) for m in quantized.modules())
    lora = fs.original_lora(reference, fs.flux_original(reference), seed=80, style="kohya")
    file = load_lora(fs.save(tmp_path / "flux.safetensors", lora.tensors))
    inputs = tf.example_inputs(reference, seed=10)
    outs = []
    for network in (quantized, exact.network):
        model, _ = apply_lora(fs.flow_model(network, "flux"), None, file, 0.5, 0.0)
        outs.append((fs.output(model, inputs), tf.forward(network, inputs)))
    print(f"GGUF Q8_0 with LoRA vs dequantized with LoRA: max diff {fs.max_diff(outs[0][0], outs[1][0]):.2e}")
    assert fs.max_diff(outs[0][0], outs[1][0]) <= 1e-5
    assert fs.max_diff(outs[0][0], outs[0][1]) > 1e-2


def test_lora_on_a_scaled_fp8_flux_equals_lora_on_its_dequantized_weights(tmp_path: Path) -> None:
    """ComfyUI's ``*_fp8_scaled`` FLUX files are how many people run FLUX with LoRAs: their fp8 linears take
    the same hooks as GGUF's (the weight stays fp8), and compute what the dequantized network with the LoRA
    computes."""
    from nodes.diffusion.dit.loading import load_transformer
    from nodes.diffusion.scaled_fp8 import ScaledFp8Linear
    from tests.support.scaled_fp8_files import to_scaled_fp8

    reference = tf.tiny_flux(seed=4)
    scaled, dequantized = to_scaled_fp8(tf.flux_to_original(reference))
    stored = load_transformer(tf.write_file(tmp_path / "flux_fp8_scaled.safetensors", scaled), dtype=torch.float32)
    exact = load_transformer(tf.write_file(tmp_path / "dequantized.safetensors", dequantized), dtype=torch.float32)
    assert any(isinstance(m, ScaledFp8Linear) for m in stored.network.modules())
    lora = fs.original_lora(reference, fs.flux_original(reference), seed=81, style="kohya")
    file = load_lora(fs.save(tmp_path / "flux.safetensors", lora.tensors))
    inputs = tf.example_inputs(reference, seed=10)
    outs = []
    for network in (stored.network, exact.network):
        model, _ = apply_lora(fs.flow_model(network, "flux"), None, file, 0.5, 0.0)
        outs.append((fs.output(model, inputs), tf.forward(network, inputs)))
    print(f"scaled fp8 with LoRA vs dequantized with LoRA: max diff {fs.max_diff(outs[0][0], outs[1][0]):.2e}")
    assert fs.max_diff(outs[0][0], outs[1][0]) <= 1e-5
    assert fs.max_diff(outs[0][0], outs[0][1]) > 1e-2


def test_z_image_qwen3_lora(tmp_path: Path) -> None:
    """Z-Image's Qwen3 text encoder under ComfyUI's ``text_encoders.qwen3_4b.transformer.model.`` names and
    diffusers' ``text_encoder.`` (the Qwen3Model's own names) equals merged weights."""
    from nodes.diffusion.text.encoder_files import QWEN3
    from tests.support.tiny_text import tiny_encoder

    qwen = tiny_encoder(QWEN3, seed=100)
    w = LoraWriter(seed=101)
    q = _module(qwen, "layers.0.self_attn.q_proj")
    down = _module(qwen, "layers.1.mlp.down_proj")
    comfy = f"text_encoders.qwen3_4b.transformer.model.{q}"
    planned = [
        w.pair(qwen, q, f"{comfy}.lora_down.weight", f"{comfy}.lora_up.weight", alpha=2.0, alpha_key=f"{comfy}.alpha"),
        w.pair(qwen, down, f"text_encoder.{down}.lora_A.weight", f"text_encoder.{down}.lora_B.weight"),
    ]
    lora = load_lora(w.save(tmp_path / "z_te.safetensors"))
    base = FlowClip("z_image", FlowEncoders(qwen3=qwen))
    _, patched = apply_lora(fs.flow_model(tf.tiny_z_image(seed=3), "z_image"), base, lora, 0.0, 0.8)
    (got,) = patched.encode(PROMPT)
    (want,) = FlowClip("z_image", FlowEncoders(qwen3=merged(qwen, planned, 0.8))).encode(PROMPT)
    (before,) = base.encode(PROMPT)
    print(f"Z-Image Qwen3: max diff {fs.max_diff(got.embeds, want.embeds):.2e}")
    assert fs.max_diff(got.embeds, want.embeds) <= fs.TOL
    assert fs.max_diff(got.embeds, before.embeds) > 1e-3
