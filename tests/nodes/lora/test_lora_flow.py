"""LoRAs on the tiny SD3.5, FLUX.1 and Z-Image transformers against diffusers' own LoRA loading.

Every file is loaded by sdgraph (hooks on the shared network) and by the diffusers pipeline of the
family (``load_lora_weights``: peft layers, scaled by ``set_adapters``) on a copy of the same network;
the transformer outputs agree to 1e-4 at strength 1 and 0.5 while the LoRA changes them by far more.
Layouts: diffusers/peft keys, and LoRAs on the original single-file modules (kohya ``lora_unet_…`` and
ComfyUI/BFL ``diffusion_model.…``) whose fused layers (FLUX's ``linear1`` and ``qkv``, SD3's and
Z-Image's ``qkv``) and swapped AdaLN halves must land on the right rows of diffusers' split layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("peft")

from nodes.diffusion.lora import apply_lora, load_lora
from tests.nodes.lora import flow_support as fs
from tests.support import tiny_flow as tf

BUILDERS = {
    "flux": lambda: tf.tiny_flux(seed=1),
    "sd3": lambda: tf.tiny_sd3(seed=2),
    "z_image": lambda: tf.tiny_z_image(seed=3),
}
ORIGINAL = {"flux": fs.flux_original, "sd3": fs.sd3_original, "z_image": fs.z_image_original}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def network(family: str) -> Any:
    torch.manual_seed(0)
    return BUILDERS[family]()


def _check(family: str, network: Any, ours: Path, oracle: Path, tmp_path: Path) -> None:
    inputs = tf.example_inputs(network, seed=5)
    base = tf.forward(network, inputs)
    pipe = fs.pipeline(family, network)
    lora = load_lora(ours)
    for strength in (1.0, 0.5):
        expected = fs.reference(pipe, oracle, [strength], inputs)
        model, _ = apply_lora(fs.flow_model(network, family), None, lora, strength, 0.0)
        got = fs.output(model, inputs)
        diff, effect = fs.max_diff(got, expected), fs.max_diff(base, expected)
        print(f"{family} {ours.name} strength {strength}: max diff {diff:.2e}, LoRA effect {effect:.2e}")
        assert diff <= fs.TOL
        assert effect > 1e-2  # the LoRA really changes the output
    assert torch.equal(tf.forward(network, inputs), base)  # the shared network is untouched outside the handle


@pytest.mark.parametrize("prefix", ["transformer.", "diffusion_model."])
def test_peft_lora_in_diffusers_keys(family: str, network: Any, prefix: str, tmp_path: Path) -> None:
    """peft adapters on every linear layer, as diffusers saves them (``transformer.``) and as ai-toolkit and
    ComfyUI save diffusers-named LoRAs (``diffusion_model.``; the oracle reads those only for Z-Image)."""
    if prefix == "diffusion_model." and family != "z_image":
        pytest.skip("diffusers reads diffusion_model. + diffusers module names only for Z-Image")
    state = fs.peft_lora(network, seed=11)
    ours = fs.save(tmp_path / "peft.safetensors", {prefix + k: v for k, v in state.items()})
    _check(family, network, ours, ours, tmp_path)


def test_kohya_spelled_diffusers_names(tmp_path: Path) -> None:
    """``lora_transformer_<diffusers module with _>.lora_down/up`` (a mix some FLUX trainers write) is the
    peft LoRA under other names: the oracle loads the peft file."""
    network = BUILDERS["flux"]()
    state = fs.peft_lora(network, seed=16)
    roles = {".lora_A.weight": ".lora_down.weight", ".lora_B.weight": ".lora_up.weight"}
    mixed = {}
    for key, tensor in state.items():
        suffix = next(s for s in roles if key.endswith(s))
        mixed["lora_transformer_" + key.removesuffix(suffix).replace(".", "_") + roles[suffix]] = tensor
    ours = fs.save(tmp_path / "mixed.safetensors", mixed)
    oracle = fs.save(tmp_path / "peft.safetensors", {f"transformer.{k}": v for k, v in state.items()})
    _check("flux", network, ours, oracle, tmp_path)


def test_unreadable_keys_of_a_flux_lora_are_named_with_their_count(tmp_path: Path) -> None:
    """An XLabs-style file (``double_blocks.0.processor.proj_lora1.down.weight``) is not read; the refusal
    counts the keys and shows the first ones instead of applying part of the file."""
    from nodes.diffusion.lora import LoraFormatError

    keys = [f"double_blocks.{i}.processor.proj_lora{j}.{r}.weight" for i in range(2) for j in (1, 2) for r in "du"]
    path = fs.save(tmp_path / "xlabs.safetensors", {k: torch.ones(2, 2) for k in keys})
    with pytest.raises(LoraFormatError, match=r"'xlabs.safetensors'.*8 key\(s\).*double_blocks.0.processor.proj_lora1"):
        load_lora(path)


@pytest.mark.parametrize("style", ["kohya", "comfy"])
def test_lora_on_original_module_names(family: str, network: Any, style: str, tmp_path: Path) -> None:
    """kohya ``lora_unet_double_blocks_0_img_attn_qkv`` / ComfyUI ``diffusion_model.single_blocks.0.linear1``
    against the same update converted by hand to diffusers keys (fused rows cut, AdaLN halves swapped)."""
    lora = fs.original_lora(network, ORIGINAL[family](network), seed=12, style=style, alpha=2.0)
    ours = fs.save(tmp_path / f"{style}.safetensors", lora.tensors)
    oracle = fs.save(tmp_path / f"{style}_as_diffusers.safetensors", lora.diffusers)
    _check(family, network, ours, oracle, tmp_path)


def test_flux_kohya_file_read_by_diffusers_own_converter(tmp_path: Path) -> None:
    """The sd-scripts FLUX layout read by diffusers' ``_convert_kohya_flux_lora_to_diffusers`` itself (a
    second oracle for the qkv split). Left to the hand-converted test above: ``linear1`` (diffusers assumes
    the released 3072-wide single blocks), ``final_layer`` (diffusers 0.42.1 names it without the
    ``transformer.`` prefix and then drops it) and the embedders (not in its table)."""
    network = BUILDERS["flux"]()
    skip = ("img_in", "txt_in", "time_in", "vector_in", "final_layer")
    table = {k: v for k, v in fs.flux_original(network).items() if not k.endswith("linear1") and not k.startswith(skip)}
    lora = fs.original_lora(network, table, seed=13, style="kohya", alpha=8.0)
    path = fs.save(tmp_path / "kohya_flux.safetensors", lora.tensors)
    _check("flux", network, path, path, tmp_path)


def test_two_stacked_loras_commute(tmp_path: Path) -> None:
    """A kohya LoRA and a peft LoRA stacked, in both orders, equal diffusers with both adapters active."""
    network = BUILDERS["flux"]()
    inputs = tf.example_inputs(network, seed=6)
    a = fs.original_lora(network, fs.flux_original(network), seed=14, style="kohya", alpha=4.0)
    a_ours = fs.save(tmp_path / "a.safetensors", a.tensors)
    a_oracle = fs.save(tmp_path / "a_diffusers.safetensors", a.diffusers)
    b = fs.save(tmp_path / "b.safetensors", {f"transformer.{k}": v for k, v in fs.peft_lora(network, 15).items()})
    strengths = (0.8, 0.5)
    expected = fs.reference(fs.pipeline("flux", network), [a_oracle, b], strengths, inputs)
    base = fs.flow_model(network, "flux")
    la, lb = load_lora(a_ours), load_lora(b)
    ab = apply_lora(apply_lora(base, None, la, strengths[0], 0.0)[0], None, lb, strengths[1], 0.0)[0]
    ba = apply_lora(apply_lora(base, None, lb, strengths[1], 0.0)[0], None, la, strengths[0], 0.0)[0]
    got_ab, got_ba = fs.output(ab, inputs), fs.output(ba, inputs)
    print(f"stacked: max diff {fs.max_diff(got_ab, expected):.2e}, orders {fs.max_diff(got_ab, got_ba):.2e}")
    assert fs.max_diff(got_ab, expected) <= fs.TOL
    assert fs.max_diff(got_ab, got_ba) <= 1e-5
    only_a = fs.output(apply_lora(base, None, la, strengths[0], 0.0)[0], inputs)
    assert fs.max_diff(only_a, expected) > 1e-2
