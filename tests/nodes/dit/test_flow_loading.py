"""Loading the flow transformers: weights kept as stored, fp8 storage, and one clear
message for each wrong combination (missing text encoders, another family's prompts). A model over the
budget is streamed, not refused: tests/nodes/dit/test_streaming.py.

The numbers are checked against closed references: a bf16-stored model computing layer by layer in
float32 must equal the same network built in float32 from the bf16-rounded weights; fp8 storage keeps
every linear weight in fp8 and stays close to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from graph_engine import ExecutionContext, Executor, Graph
from nodes import builtin_registry
from nodes.diffusion import runtime
from nodes.diffusion.dit import z_image
from nodes.diffusion.dit.loading import load_transformer
from nodes.diffusion.dit.runtime import ConditioningMismatchError
from tests.support import tiny_flow as tf
from tests.support.model_root import FLOW_FILES, TINY_NAMES

CTX = ExecutionContext(node_id=1, title="Load Diffusion Model")


@pytest.fixture
def flow_models(tiny_model_root: Path, tiny_flow_root: Path) -> Iterator[Path]:
    import nodes.folders

    nodes.folders.configure(extra_roots=[str(tiny_model_root), str(tiny_flow_root)])
    yield tiny_flow_root
    nodes.folders.configure()


def _linear_dtypes(network: torch.nn.Module) -> set[torch.dtype]:
    """Dtypes of the linear weights, except the small modules a family keeps in the compute dtype."""
    keep = z_image.KEEP_IN_COMPUTE  # the only family that declares any
    return {
        m.weight.dtype
        for name, m in network.named_modules()
        if isinstance(m, torch.nn.Linear) and not name.startswith(keep)
    }


@pytest.mark.parametrize("family", ["flux", "sd3", "z_image"])
def test_bf16_file_runs_in_float32_layer_by_layer_without_a_float32_copy(tmp_path: Path, family: str) -> None:
    builder, to_original = {
        "flux": (tf.tiny_flux, tf.flux_to_original),
        "sd3": (tf.tiny_sd3, tf.sd3_to_original),
        "z_image": (tf.tiny_z_image, tf.z_image_to_original),
    }[family]
    reference = builder(4)
    path = tf.write_file(tmp_path / "model_bf16.safetensors", to_original(reference), dtype=torch.bfloat16)
    loaded = load_transformer(path, dtype=torch.float32)
    assert loaded.storage_dtype == torch.bfloat16 and loaded.compute_dtype == torch.float32
    assert _linear_dtypes(loaded.network) == {torch.bfloat16}  # stored, not copied to float32
    # The oracle: the same weights rounded to bf16, held in float32.
    rounded = builder(4)
    with torch.no_grad():
        for t in [*rounded.parameters(), *rounded.buffers()]:  # the file stores both in bf16
            if t.is_floating_point():
                t.copy_(t.to(torch.bfloat16).float())
    inputs = tf.example_inputs(reference, seed=1)
    got, want = tf.forward(loaded.network, inputs), tf.forward(rounded, inputs)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert _linear_dtypes(loaded.network) == {torch.bfloat16}  # and back to storage after the call


def test_fp8_weight_dtype_stores_linears_in_fp8_and_stays_close(tmp_path: Path) -> None:
    reference = tf.tiny_flux(4)
    path = tf.write_file(tmp_path / "flux.safetensors", tf.flux_to_original(reference))
    loaded = load_transformer(path, dtype=torch.float32, weight_dtype="fp8_e4m3fn")
    assert _linear_dtypes(loaded.network) == {torch.float8_e4m3fn}
    exact = load_transformer(path, dtype=torch.float32)
    assert loaded.nbytes() < exact.nbytes() * 0.5
    inputs = tf.example_inputs(reference, seed=2)
    got, want = tf.forward(loaded.network, inputs), tf.forward(reference, inputs)
    assert (got - want).abs().max() < 0.1 * want.abs().max()  # fp8 (3 mantissa bits), not garbage
    assert (got - want).abs().max() > 0  # and really fp8


def test_checkpoint_without_text_encoders_says_which_loader_to_add(flow_models: Path, tmp_path: Path) -> None:
    g = Graph()
    ck = g.add_node("CheckpointLoaderSimple", {"ckpt_name": FLOW_FILES["sd3.5_medium.safetensors"]}).id
    enc = g.add_node("CLIPTextEncode", {"text": "a cat"}, title="Prompt").id
    g.add_link(ck, "CLIP", enc, "clip", "CLIP")
    result = Executor(builtin_registry(), output_dir=tmp_path).run(g, targets=[enc])
    assert result.status == "failed"
    assert result.error.node_id == enc and result.error.input == "clip"
    assert "holds no text encoders" in str(result.error) and "TripleCLIPLoader" in str(result.error)


def test_sd_prompts_into_a_flux_model_are_refused_by_name(flow_models: Path, tmp_path: Path) -> None:
    """Conditioning from an SD1 checkpoint's CLIP reaching FLUX: one message naming both."""
    g = Graph()
    sd = g.add_node("CheckpointLoaderSimple", {"ckpt_name": TINY_NAMES["sd1"]}).id
    unet = g.add_node("UNETLoader", {"unet_name": FLOW_FILES["flux1-dev.safetensors"], "weight_dtype": "default"}).id
    pos = g.add_node("CLIPTextEncode", {"text": "a cat"}).id
    g.add_link(sd, "CLIP", pos, "clip", "CLIP")
    latent = g.add_node("EmptySD3LatentImage", {"width": 64, "height": 64, "batch_size": 1}).id
    ks = g.add_node(
        "KSampler", {"seed": 1, "steps": 2, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}
    ).id
    g.add_link(unet, "MODEL", ks, "model", "MODEL")
    g.add_link(pos, "CONDITIONING", ks, "positive", "CONDITIONING")
    g.add_link(pos, "CONDITIONING", ks, "negative", "CONDITIONING")
    g.add_link(latent, "LATENT", ks, "latent_image", "LATENT")
    result = Executor(builtin_registry(), output_dir=tmp_path).run(g, targets=[ks])
    assert result.status == "failed" and result.error.node_id == ks
    text = str(result.error)
    assert "encoded with a Stable Diffusion checkpoint's CLIP, but the model is FLUX.1" in text
    assert "'flux'" in text and "Traceback" not in text
    assert issubclass(ConditioningMismatchError, ValueError)


def test_flux_timeline_frames_preview_and_decode_with_the_family_latent_format(
    flow_models: Path, tmp_path: Path
) -> None:
    """The watch tools on a 16-channel model: previews use FLUX's factors and the last frame, decoded on
    request, is the image VAE Decode made (the VAE's latent is x/scale + shift)."""
    import numpy as np
    from PIL import Image

    from nodes.diffusion.previews import latent_to_rgb
    from nodes.diffusion.timeline import decode_frame

    g = Graph()
    unet = g.add_node(
        "UNETLoader", {"unet_name": FLOW_FILES["flux1-schnell.safetensors"], "weight_dtype": "default"}
    ).id
    clip = g.add_node(
        "DualCLIPLoader",
        {
            "clip_name1": FLOW_FILES["t5xxl_fp16.safetensors"],
            "clip_name2": FLOW_FILES["clip_l.safetensors"],
            "type": "flux",
        },
    ).id
    vae = g.add_node("VAELoader", {"vae_name": FLOW_FILES["ae.safetensors"]}).id
    pos = g.add_node("CLIPTextEncode", {"text": "a cat"}).id
    g.add_link(clip, "CLIP", pos, "clip", "CLIP")
    latent = g.add_node("EmptySD3LatentImage", {"width": 64, "height": 64, "batch_size": 1}).id
    ks = g.add_node(
        "KSampler", {"seed": 3, "steps": 3, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}
    ).id
    wires = [(unet, "MODEL", "model"), (pos, "CONDITIONING", "positive"), (pos, "CONDITIONING", "negative")]
    for src, out, inp in [*wires, (latent, "LATENT", "latent_image")]:
        g.add_link(src, out, ks, inp, out)
    dec = g.add_node("VAEDecode").id
    g.add_link(ks, "LATENT", dec, "samples", "LATENT")
    g.add_link(vae, "VAE", dec, "vae", "VAE")
    save = g.add_node("SaveImage", {"filename_prefix": "t"}).id
    g.add_link(dec, "IMAGE", save, "images", "IMAGE")
    executor = Executor(builtin_registry(), output_dir=tmp_path, settings={"record_timeline": True})
    result = executor.run(g)
    assert result.status == "done", result.error
    record = result.records[ks]["timeline"]
    assert record["family"] == "flux" and len(record["frames"]) == 4
    last = record["frames"][-1]
    assert np.array_equal(last["preview_denoised"], latent_to_rgb(last["denoised"], "flux"))
    assert not np.array_equal(latent_to_rgb(last["denoised"], "flux"), latent_to_rgb(last["denoised"], "sd1"))
    from nodes.diffusion.dit.loading import load_vae16
    from nodes.folders import model_folders

    autoencoder = load_vae16(model_folders().resolve("vae", FLOW_FILES["ae.safetensors"]))
    decoded = decode_frame(autoencoder, last, record["latent_scale"], which="x")
    (entry,) = result.ui[save]["images"]
    saved = np.asarray(Image.open(entry["path"]).convert("RGB"), dtype=np.int16)
    assert np.abs(decoded.astype(np.int16) - saved).max() <= 1  # the same picture (8-bit rounding)
    unshifted = decode_frame(autoencoder, {**last, "latent_shift": 0.0}, record["latent_scale"], which="x")
    assert np.abs(unshifted.astype(np.int16) - saved).max() > 1  # the shift matters


def test_a_lora_on_a_flux_model_is_one_clear_message(flow_models: Path, tmp_path: Path) -> None:
    """A LoRA for an SD1 UNet on a FLUX model is refused by node and input, naming the file, the model and
    what the LoRA was made for (the other direction: ``tests/nodes/lora/test_lora_flow_use.py``)."""
    from tests.nodes.lora.lora_support import LoraWriter
    from tests.support.tiny_sd import build_tiny_models

    (flow_models / "loras").mkdir(exist_ok=True)
    writer = LoraWriter(seed=1)
    attn = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    writer.kohya(build_tiny_models("sd1").unet, attn, "lora_unet_" + attn.replace(".", "_"), alpha=2.0)
    writer.save(flow_models / "loras" / "some_lora.safetensors")
    g = Graph()
    unet = g.add_node("UNETLoader", {"unet_name": FLOW_FILES["flux1-dev.safetensors"], "weight_dtype": "default"}).id
    clip = g.add_node(
        "DualCLIPLoader",
        {
            "clip_name1": FLOW_FILES["t5xxl_fp16.safetensors"],
            "clip_name2": FLOW_FILES["clip_l.safetensors"],
            "type": "flux",
        },
    ).id
    lora = g.add_node(
        "LoraLoader", {"lora_name": "some_lora.safetensors", "strength_model": 1.0, "strength_clip": 1.0}
    ).id
    g.add_link(unet, "MODEL", lora, "model", "MODEL")
    g.add_link(clip, "CLIP", lora, "clip", "CLIP")
    result = Executor(builtin_registry(), output_dir=tmp_path).run(g, targets=[lora])
    assert result.status == "failed" and result.error.node_id == lora and result.error.input == "lora_name"
    message = str(result.error)
    assert "'some_lora.safetensors' does not fit this flux model" in message
    assert (
        "the file's layers are those of a Stable Diffusion 1.x/2.x/XL UNet" in message
        and "lora_unet_down_blocks_0" in message
    )


def test_text_encoders_are_freed_when_the_budget_needs_room_and_come_back(flow_models: Path) -> None:
    """The CLIP value a loader returns does not hold T5 itself: once the model manager drops it (the
    budget needs the room for the diffusion model), the memory is really released, and the next prompt
    loads it again with the same result."""
    import gc
    import weakref

    from nodes.diffusion.clip_loading import load_clip

    files = [("clip_name1", FLOW_FILES["t5xxl_fp16.safetensors"]), ("clip_name2", FLOW_FILES["clip_l.safetensors"])]
    clip = load_clip(CTX, "DualCLIPLoader", "flux", files)
    (first,) = clip.encode("a red fox")
    t5 = weakref.ref(clip.encoders.t5xxl)
    assert t5() is not None
    loads = runtime.manager().loads
    runtime.manager().unload_all()  # what eviction does when a load needs the room
    gc.collect()
    assert t5() is None, "the CLIP value kept T5 alive"
    (again,) = clip.encode("a red fox")
    assert runtime.manager().loads > loads  # loaded again
    torch.testing.assert_close(again.embeds, first.embeds)


def test_missing_flow_files_are_offered_installed_ones_of_the_family(flow_models: Path) -> None:
    """The editor's missing-models bar for ComfyUI's FLUX names: the diffusion model, both text encoders
    and the VAE are reported, and the installed FLUX.1 file is the first candidate for flux1-dev."""
    from graph_engine.serialization import load
    from nodes.model_matching import find_missing_models

    root = Path(__file__).resolve().parents[3]
    graph = load(root / "workflows" / "flux_dev.json")
    missing = {(m.kind, m.name): m for m in find_missing_models(graph, builtin_registry())}
    assert set(missing) == {
        ("diffusion_models", "flux1-dev.safetensors"),
        ("text_encoders", "t5xxl_fp16.safetensors"),
        ("text_encoders", "clip_l.safetensors"),
        ("vae", "ae.safetensors"),
    }
    unet = missing[("diffusion_models", "flux1-dev.safetensors")]
    assert unet.family == "flux" and unet.candidates[0].startswith("tiny_flux1_")
