"""Stable Diffusion 3 / 3.5 (MMDiT): a rectified-flow transformer with CLIP-L, CLIP-G and T5-XXL.

Recognised from the original layout (``joint_blocks.*`` with ``x_embedder.proj`` and
``context_embedder``, bare as in ComfyUI's ``diffusion_models`` files or under
``model.diffusion_model.`` in all-in-one files) and from diffusers-format transformer files.
The network code is ``nodes.diffusion.dit.sd3``; sampling is ComfyUI's ModelSamplingSD3 default,
a constant shift of 3 with timestep σ·1000.
"""

from __future__ import annotations

from nodes.families.base import (
    LatentFormat,
    ModelFamily,
    Sampling,
    Shapes,
    TextConditioning,
    has_any,
    has_prefix,
    with_prefixes,
)
from nodes.families.base import TextEncoderSlot as Slot

TEXT_ENCODERS = (
    Slot("text_encoder", "CLIP-L", "text_encoders.clip_l.transformer.text_model.", "clip",
         "CLIPTextModelWithProjection", "clip", 49407),
    Slot("text_encoder_2", "OpenCLIP-bigG", "text_encoders.clip_g.transformer.text_model.", "clip",
         "CLIPTextModelWithProjection", "clip", 0),
    Slot("text_encoder_3", "T5-XXL", "text_encoders.t5xxl.transformer.", "t5", "T5EncoderModel", "t5", 0),
)  # fmt: skip


# Preview factors: the community's published least-squares latent-to-RGB fit for the SD3 VAE (as
# ComfyUI and many previewers ship it), applied to the denoiser-space latent.
SD3_LATENT = LatentFormat(
    channels=16,
    scaling_factor=1.5305,
    shift_factor=0.0609,
    rgb_factors=(
        (-0.0922, -0.0175, 0.0749), (0.0311, 0.0633, 0.0954), (0.1994, 0.0927, 0.0458), (0.0856, 0.0339, 0.0902),
        (0.0587, 0.0272, -0.0496), (-0.0006, 0.1104, 0.0309), (0.0978, 0.0306, 0.0427), (-0.0042, 0.1038, 0.1358),
        (-0.0194, 0.0020, 0.0669), (-0.0488, 0.0130, -0.0268), (0.0922, 0.0988, 0.0951), (-0.0278, 0.0524, -0.0542),
        (0.0332, 0.0456, 0.0895), (-0.0069, -0.0030, -0.0810), (-0.0596, -0.0465, -0.0293), (-0.1448, -0.1463, -0.1189),
    ),
    rgb_bias=(0.2394, 0.2135, 0.1925),
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
    supported=True,
    diffusers_pipelines=(
        "StableDiffusion3Pipeline",
        "StableDiffusion3Img2ImgPipeline",
        "StableDiffusion3InpaintPipeline",
    ),
    denoiser_class="diffusers.SD3Transformer2DModel",
    vae_class="diffusers.AutoencoderKL",
    config_dir="sd3.5_medium",
    components=("transformer", "vae", "scheduler"),
    latent=SD3_LATENT,
    sampling=Sampling("flow", "sd3", shift=3.0),
    text_encoders=TEXT_ENCODERS,
    # CLIP-L and CLIP-G at their penultimate layer, pooled from both (nodes.diffusion.text.flow_encode).
    conditioning=TextConditioning(default_layer=-2, final_norm=False, pooled_encoder=0),
    detector="nodes.diffusion.dit.sd3:config_from_shapes",
    predictor="nodes.diffusion.dit.sd3:predict",
    denoiser_loader="nodes.diffusion.dit.sd3:load",
    clip_type="sd3",
)
