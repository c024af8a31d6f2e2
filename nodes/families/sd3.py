"""Stable Diffusion 3 / 3.5 (MMDiT): known, not yet runnable.

Recognised from the original layout (``joint_blocks.*`` with ``x_embedder.proj`` and
``context_embedder``, bare as in ComfyUI's ``diffusion_models`` files or under
``model.diffusion_model.`` in all-in-one files) and from diffusers-format transformer files.
To support it: set ``supported=True`` and fill in the fields the conformance test asks for
(``tests/nodes/families/test_registry.py``); see ``nodes.families`` for the list.
"""

from __future__ import annotations

from nodes.families.base import LatentFormat, ModelFamily, Sampling, Shapes, has_any, has_prefix, with_prefixes
from nodes.families.base import TextEncoderSlot as Slot

TEXT_ENCODERS = (
    Slot("text_encoder", "CLIP-L", "text_encoders.clip_l.transformer.text_model.", "clip",
         "CLIPTextModelWithProjection", "clip", 49407),
    Slot("text_encoder_2", "OpenCLIP-bigG", "text_encoders.clip_g.transformer.text_model.", "clip",
         "CLIPTextModelWithProjection", "clip", 0),
    Slot("text_encoder_3", "T5-XXL", "text_encoders.t5xxl.transformer.", "t5", "T5EncoderModel", "t5", 0),
)  # fmt: skip


def recognise(shapes: Shapes) -> bool:
    if has_prefix(shapes, with_prefixes(["joint_blocks."])):
        return True
    # diffusers-format SD3 transformer: patch embedding with a position table, joint attention.
    return has_any(shapes, ["pos_embed.proj.weight"]) and has_any(
        shapes, ["transformer_blocks.0.attn.add_q_proj.weight"]
    )


FAMILY = ModelFamily(
    name="sd3",
    display_name="Stable Diffusion 3 / 3.5",
    description="a Stable Diffusion 3 / 3.5 (MMDiT) model",
    recognise=recognise,
    diffusers_pipelines=(
        "StableDiffusion3Pipeline",
        "StableDiffusion3Img2ImgPipeline",
        "StableDiffusion3InpaintPipeline",
    ),
    denoiser_class="diffusers.SD3Transformer2DModel",
    vae_class="diffusers.AutoencoderKL",
    latent=LatentFormat(channels=16, scaling_factor=1.5305, shift_factor=0.0609),
    sampling=Sampling("flow", "sd3", shift=3.0),
    text_encoders=TEXT_ENCODERS,
)
