"""A FLUX LoRA through the real graph: UNETLoader / DualCLIPLoader → LoraLoader → prompts → KSampler.

The sampled latents equal ``FluxPipeline`` with the same LoRA loaded by ``load_lora_weights`` (transformer
and CLIP-L parts, at adapter weight = the node's strengths) to 1e-4, with the sampler set up as in
``tests/nodes/dit/test_flow_pipeline_parity`` (euler, ``linspace_diffusers``, FLUX.1-schnell unshifted).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("peft")

from graph_engine import Graph
from nodes.diffusion.text.encoder_files import CLIP_L, T5XXL
from nodes.diffusion.text.llm_vocab import build_t5_tokenizer
from nodes.diffusion.text.vocab import build_clip_tokenizer
from tests.nodes.dit.test_flow_pipeline_parity import (  # noqa: F401 - models is a fixture
    PROMPT,
    SEED,
    H,
    W,
    flow_graph,
    models,
    run_latents,
    scheduler_for,
)
from tests.nodes.lora import flow_support as fs
from tests.nodes.lora.lora_support import LoraWriter
from tests.support import tiny_flow as tf
from tests.support.tiny_text import save_encoder

STEPS = 3


def _reference(
    transformer: Any, vae: Any, clip_l: Any, t5: Any, lora: Path, strength: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pipeline's latents with the LoRA, and without it (adapters disabled)."""
    from diffusers import FluxPipeline

    pipe = FluxPipeline(
        scheduler=scheduler_for("flux1_schnell"),
        vae=vae,
        text_encoder=copy.deepcopy(clip_l.text_model),
        tokenizer=build_clip_tokenizer(),
        text_encoder_2=t5,
        tokenizer_2=build_t5_tokenizer(),
        transformer=copy.deepcopy(transformer),
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(lora), adapter_name="style")
    assert "style" in pipe.get_list_adapters().get("text_encoder", [])  # the CLIP-L part was loaded too
    pipe.set_adapters(["style"], [strength])

    def sample() -> torch.Tensor:
        packed = pipe(
            prompt=PROMPT,
            height=H,
            width=W,
            num_inference_steps=STEPS,
            guidance_scale=3.5,
            generator=torch.Generator().manual_seed(SEED),
            output_type="latent",
            max_sequence_length=512,
        ).images
        return FluxPipeline._unpack_latents(packed, H, W, 8)

    with_lora = sample()
    pipe.disable_lora()
    return with_lora, sample()


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_flux_lora_in_a_graph_matches_flux_pipeline(models: Path, tmp_path: Path, strength: float) -> None:  # noqa: F811
    transformer = tf.tiny_flux(5, guidance=False)
    vae = tf.tiny_vae16(6, "flux")
    clip_l, t5 = tf.tiny_flux_text_encoders(7)
    tf.write_file(models / "diffusion_models" / "flux1-schnell.safetensors", tf.flux_to_original(transformer))
    tf.write_file(models / "vae" / "ae.safetensors", tf.vae16_to_original(vae))
    save_encoder(clip_l, CLIP_L, models / "text_encoders" / "clip_l.safetensors")
    save_encoder(t5, T5XXL, models / "text_encoders" / "t5xxl_fp16.safetensors")

    # A kohya file (transformer on original names, CLIP-L as lora_te1_) and the same LoRA in diffusers keys.
    lora = fs.original_lora(transformer, fs.flux_original(transformer), seed=90, style="kohya", alpha=2.0)
    tower = clip_l.text_model
    te = LoraWriter(seed=91)
    for i, part in ((0, "self_attn.q_proj"), (1, "mlp.fc2")):
        module = f"encoder.layers.{i}.{part}"
        kohya = f"lora_te1_text_model_encoder_layers_{i}_{part.replace('.', '_')}"
        te.kohya(tower, module, kohya, alpha=4.0)  # rank 4: alpha/rank = 1, the scale diffusers gives it
        lora.diffusers[f"text_encoder.{module}.lora_A.weight"] = te.tensors[f"{kohya}.lora_down.weight"]
        lora.diffusers[f"text_encoder.{module}.lora_B.weight"] = te.tensors[f"{kohya}.lora_up.weight"]
    (models / "loras").mkdir(exist_ok=True)
    fs.save(models / "loras" / "flux_style.safetensors", lora.tensors | te.tensors)
    oracle = fs.save(tmp_path / "flux_style_diffusers.safetensors", lora.diffusers)

    g = Graph()
    unet = g.add_node("UNETLoader", {"unet_name": "flux1-schnell.safetensors", "weight_dtype": "default"}).id
    clip = g.add_node(
        "DualCLIPLoader",
        {"clip_name1": "t5xxl_fp16.safetensors", "clip_name2": "clip_l.safetensors", "type": "flux"},
    ).id
    vae_node = g.add_node("VAELoader", {"vae_name": "ae.safetensors"}).id
    node = g.add_node(
        "LoraLoader", {"lora_name": "flux_style.safetensors", "strength_model": strength, "strength_clip": strength}
    ).id
    g.add_link(unet, "MODEL", node, "model", "MODEL")
    g.add_link(clip, "CLIP", node, "clip", "CLIP")
    loaders = {"MODEL": (node, "MODEL"), "CLIP": (node, "CLIP"), "VAE": (vae_node, "VAE")}
    ks = flow_graph(loaders, g, steps=STEPS, cfg=1.0, scheduler="linspace_diffusers")
    ours, model = run_latents(g, ks, tmp_path)
    assert model.patches  # the graph sampled the LoRA'd handle

    reference, without = _reference(transformer, vae, clip_l, t5, oracle, strength)
    ours = model.to_model_space(ours)
    diff = float((ours - reference).abs().max())
    print(f"FLUX graph with LoRA at {strength}: max latent diff {diff:.2e}")
    assert reference.abs().max() > 0.5
    assert float((reference - without).abs().max()) > 1e-2  # the LoRA changes the picture
    assert diff < fs.TOL
