"""The Load LoRA node in a graph: it changes the image, strength 0 does not, a misfit is one clear error."""

from __future__ import annotations

import pytest
import torch

import nodes.folders
from graph_engine import Executor, Graph
from nodes import builtin_registry
from tests.nodes.lora.lora_support import LoraWriter
from tests.support.model_root import TINY_NAMES
from tests.support.tiny_sd import build_tiny_models

ATTN = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"  # SD1's first cross-attention
XL_ATTN = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"  # SDXL's (its level 0 has none)


@pytest.fixture
def lora_root(tiny_model_root, tmp_path):
    root = tmp_path / "lora_root"
    (root / "loras").mkdir(parents=True)
    sd1 = build_tiny_models("sd1")
    w = LoraWriter(seed=1)
    w.kohya(sd1.unet, ATTN, "lora_unet_" + ATTN.replace(".", "_"), alpha=2.0)
    w.kohya(
        sd1.text_encoders[0],
        "encoder.layers.0.self_attn.q_proj",
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj",
        alpha=2.0,
    )
    w.save(root / "loras" / "style.safetensors")
    xl = build_tiny_models("sdxl")
    w = LoraWriter(seed=2)
    w.kohya(xl.unet, XL_ATTN, "lora_unet_" + XL_ATTN.replace(".", "_"), alpha=2.0)
    w.save(root / "loras" / "xl_style.safetensors")
    nodes.folders.configure(extra_roots=[str(tiny_model_root), str(root)])
    yield root
    nodes.folders.configure()


def graph(lora_name: str, strength: float) -> tuple[Graph, int, int]:
    g = Graph()
    ckpt = g.add_node("CheckpointLoaderSimple", {"ckpt_name": TINY_NAMES["sd1"]}).id
    lora = g.add_node("LoraLoader", {"lora_name": lora_name, "strength_model": strength, "strength_clip": strength}).id
    g.add_link(ckpt, "MODEL", lora, "model", "MODEL")
    g.add_link(ckpt, "CLIP", lora, "clip", "CLIP")
    pos = g.add_node("CLIPTextEncode", {"text": "a fox"}).id
    neg = g.add_node("CLIPTextEncode", {"text": ""}).id
    g.add_link(lora, "CLIP", pos, "clip", "CLIP")
    g.add_link(lora, "CLIP", neg, "clip", "CLIP")
    empty = g.add_node("EmptyLatentImage", {"width": 64, "height": 64}).id
    ks = g.add_node("KSampler", {"seed": 3, "steps": 3}).id
    for a, out, inp, t in [
        (lora, "MODEL", "model", "MODEL"),
        (pos, "CONDITIONING", "positive", "CONDITIONING"),
        (neg, "CONDITIONING", "negative", "CONDITIONING"),
        (empty, "LATENT", "latent_image", "LATENT"),
    ]:
        g.add_link(a, out, ks, inp, t)
    dec = g.add_node("VAEDecode").id
    g.add_link(ks, "LATENT", dec, "samples", "LATENT")
    g.add_link(ckpt, "VAE", dec, "vae", "VAE")
    prev = g.add_node("PreviewImage").id
    g.add_link(dec, "IMAGE", prev, "images", "IMAGE")
    return g, lora, prev


def image(g: Graph, tmp_path) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    result = Executor(builtin_registry(), output_dir=tmp_path).run(g)
    assert result.status == "done", result.error
    (entry,) = [i for ui in result.ui.values() for i in ui["images"]]
    return torch.from_numpy(np.asarray(Image.open(entry["path"]), dtype=np.float32))


def test_lora_changes_the_image_and_strength_zero_does_not(lora_root, tmp_path):
    base, _, _ = graph("style.safetensors", 0.0)
    styled, _, _ = graph("style.safetensors", 1.5)
    a = image(base, tmp_path / "a")
    b = image(styled, tmp_path / "b")
    assert (a - b).abs().max() > 0
    again = image(graph("style.safetensors", 0.0)[0], tmp_path / "c")
    assert torch.equal(a, again)


def test_lora_for_another_model_is_one_clear_error(lora_root, tmp_path):
    g, lora, _ = graph("xl_style.safetensors", 1.0)
    result = Executor(builtin_registry(), output_dir=tmp_path).run(g)
    assert result.status == "failed" and result.error.node_id == lora and result.error.input == "lora_name"
    assert "does not fit this sd1 model" in str(result.error) and "Traceback" not in str(result.error)


def test_model_only_loader_equals_lora_loader_without_clip(lora_root, tmp_path):
    """LoraLoaderModelOnly changes the model exactly as LoraLoader at strength_clip 0 (and leaves CLIP alone)."""
    g, lora, _ = graph("style.safetensors", 1.5)
    g.set_value(lora, "strength_clip", 0.0)
    want = image(g, tmp_path / "a")

    g2, lora2, _ = graph("style.safetensors", 0.0)  # strength 0 on the full loader: the base model
    base = image(g2, tmp_path / "b")
    only = g2.add_node("LoraLoaderModelOnly", {"lora_name": "style.safetensors", "strength_model": 1.5}).id
    ks = next(n.id for n in g2.nodes.values() if n.type == "KSampler")
    g2.remove_link(g2.link_into(ks, "model").id)
    g2.add_link(lora2, "MODEL", only, "model", "MODEL")
    g2.add_link(only, "MODEL", ks, "model", "MODEL")
    got = image(g2, tmp_path / "c")
    assert (got - base).abs().max() > 0
    assert torch.equal(got, want)
