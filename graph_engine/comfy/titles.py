"""What ComfyUI shows as the title of each node type it shares with sdgraph.

Its display name where it has one, the bare type name where it shows that. The editor titles nodes this
way by default (`ui.node_titles`), and the server describes nodes with these names in `/object_info`,
so ComfyUI clients show the names their users know. Types ComfyUI lacks keep sdgraph's own title.
"""

from __future__ import annotations

from graph_engine.node_spec import NodeSpec

COMFY_TITLES: dict[str, str] = {
    # loaders
    "CheckpointLoaderSimple": "Load Checkpoint",
    "VAELoader": "Load VAE",
    "UNETLoader": "Load Diffusion Model",
    "LoraLoader": "Load LoRA",
    "LoraLoaderModelOnly": "LoraLoaderModelOnly",
    "CLIPLoader": "Load CLIP",
    "DualCLIPLoader": "DualCLIPLoader",
    "TripleCLIPLoader": "TripleCLIPLoader",
    "CLIPSetLastLayer": "CLIP Set Last Layer",
    # conditioning
    "CLIPTextEncode": "CLIP Text Encode (Prompt)",
    "CLIPTextEncodeSDXL": "CLIPTextEncodeSDXL",
    "CLIPTextEncodeFlux": "CLIPTextEncodeFlux",
    "CLIPTextEncodeSD3": "CLIPTextEncodeSD3",
    "ConditioningCombine": "Conditioning (Combine)",
    "ConditioningZeroOut": "ConditioningZeroOut",
    "ConditioningSetTimestepRange": "ConditioningSetTimestepRange",
    "FluxGuidance": "FluxGuidance",
    # model sampling
    "ModelSamplingSD3": "ModelSamplingSD3",
    "ModelSamplingFlux": "ModelSamplingFlux",
    "ModelSamplingAuraFlow": "ModelSamplingAuraFlow",
    # latents and images
    "EmptyLatentImage": "Empty Latent Image",
    "EmptySD3LatentImage": "EmptySD3LatentImage",
    "LatentUpscale": "Upscale Latent",
    "VAEDecode": "VAE Decode",
    "VAEEncode": "VAE Encode",
    "VAEEncodeForInpaint": "VAE Encode (for Inpainting)",
    "SetLatentNoiseMask": "Set Latent Noise Mask",
    "LoadImage": "Load Image",
    "SaveImage": "Save Image",
    "PreviewImage": "Preview Image",
    "ImageScale": "Upscale Image",
    # sampling
    "KSampler": "KSampler",
    "KSamplerAdvanced": "KSampler (Advanced)",
    "SamplerCustomAdvanced": "SamplerCustomAdvanced",
    "BasicGuider": "BasicGuider",
    "CFGGuider": "CFGGuider",
    "DisableNoise": "DisableNoise",
    "RandomNoise": "RandomNoise",
    "AddNoise": "AddNoise",
    "KSamplerSelect": "KSamplerSelect",
    "KarrasScheduler": "KarrasScheduler",
    "BasicScheduler": "BasicScheduler",
    # the frontend's own
    "PrimitiveNode": "Primitive",
    "Note": "Note",
}


def comfy_title(spec: NodeSpec) -> str:
    return COMFY_TITLES.get(spec.type, spec.display_name)
