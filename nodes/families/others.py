"""Families sdgraph only recognises, to name them in the message instead of "unknown architecture".

Key names follow diffusers' single-file detection (``diffusers/loaders/single_file_utils.py``,
``CHECKPOINT_KEY_NAMES``). A family that becomes supported moves into its own module.
"""

from __future__ import annotations

from nodes.families.base import ModelFamily, Shapes, has_any, has_prefix, with_prefixes


def _flux2(shapes: Shapes) -> bool:
    return has_any(shapes, with_prefixes(["single_stream_modulation.lin.weight"]))


def _chroma(shapes: Shapes) -> bool:
    return has_prefix(shapes, with_prefixes(["distilled_guidance_layer."]))


def _auraflow(shapes: Shapes) -> bool:
    return has_prefix(shapes, with_prefixes(["double_layers.", "joint_transformer_blocks."])) and has_prefix(
        shapes, with_prefixes(["cond_seq_linear.", "context_embedder.", "t_embedder."])
    )


def _lumina2(shapes: Shapes) -> bool:
    return has_prefix(shapes, with_prefixes(["cap_embedder."])) and has_prefix(
        shapes, with_prefixes(["noise_refiner.", "context_refiner."])
    )


def _qwen_image(shapes: Shapes) -> bool:
    return has_any(shapes, with_prefixes(["transformer_blocks.0.img_mod.1.weight", "txt_in.text_norm.weight"]))


# Order matters where layouts overlap: FLUX.2 and Chroma before FLUX.1 (double_blocks), Z-Image before
# Lumina2 (cap_embedder); the registry places these accordingly.
FLUX2 = ModelFamily(
    name="flux2",
    display_name="FLUX.2",
    description="a FLUX.2 diffusion transformer",
    recognise=_flux2,
    diffusers_pipelines=("Flux2Pipeline", "Flux2KleinPipeline"),
)
CHROMA = ModelFamily(
    name="chroma",
    display_name="Chroma",
    description="a Chroma diffusion transformer (a FLUX.1-schnell derivative)",
    recognise=_chroma,
    diffusers_pipelines=("ChromaPipeline",),
)
AURAFLOW = ModelFamily(
    name="auraflow",
    display_name="AuraFlow",
    description="an AuraFlow diffusion transformer",
    recognise=_auraflow,
    diffusers_pipelines=("AuraFlowPipeline",),
)
LUMINA2 = ModelFamily(
    name="lumina2",
    display_name="Lumina Image 2.0",
    description="a Lumina Image 2.0 diffusion transformer",
    recognise=_lumina2,
    diffusers_pipelines=("Lumina2Pipeline", "Lumina2Text2ImgPipeline"),
)
QWEN_IMAGE = ModelFamily(
    name="qwen_image",
    display_name="Qwen-Image",
    description="a Qwen-Image diffusion transformer",
    recognise=_qwen_image,
    diffusers_pipelines=("QwenImagePipeline", "QwenImageEditPipeline", "QwenImageEditPlusPipeline"),
)
