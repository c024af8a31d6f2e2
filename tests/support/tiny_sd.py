"""Tiny, seeded Stable Diffusion models written in the real on-disk layouts.

Tests and benchmarks need checkpoints that exercise every code path of the loader (family detection,
key conversion, OpenCLIP q/k/v packing, SDXL's two encoders and size embedding, SD2's v-prediction
statistic) without downloading gigabytes. These builders make SD1-, SD2- and SDXL-shaped models
with two resolution levels, 32/64 channels and two-layer text encoders, then write them as an
original-layout single file (through ``nodes.diffusion.checkpoint.ldm_layout``) or a diffusers folder.

The architectures deliberately differ per family (resnets per level, transformer depth, text widths)
so detection is tested on more than one shape. The text encoders keep CLIP's vocabulary (49408) and
77 positions so the real tokenizer works with them; SDXL's two encoders have different widths as in
the real model (diffusers picks encoder 2's weights by comparing widths).

Weights are the library's default initialisation plus small seeded noise on every 1-D parameter
(norm scales and biases, which would otherwise all be 1 or 0 and hide swapped keys). The tiny SD2
v-prediction model sets the one LayerNorm bias the v-prediction heuristic measures to a spread like a
trained SD2-v model's (std 0.2); the epsilon variant keeps it near 0.02.

Everything is deterministic from ``seed``; building one family takes about a second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nodes.diffusion.checkpoint.detect import base_config, expected_text_encoders
from nodes.diffusion.checkpoint.ldm_layout import save_single_file

TEXT_COMMON: dict[str, Any] = {"vocab_size": 49408, "max_position_embeddings": 77, "num_hidden_layers": 2}


@dataclass
class TinyModels:
    """The reference models a tiny checkpoint was written from."""

    family: str
    unet: Any
    vae: Any
    text_encoders: list[Any]
    scheduler_config: dict[str, Any]
    prediction_type: str


def tiny_configs(family: str, *, inpainting: bool = False) -> dict[str, dict[str, Any]]:
    """Configs of the tiny models, derived from the shipped family configs."""
    unet = base_config(family, "unet")
    vae = base_config(family, "vae")
    # Four levels, like the real VAE: pixels are 8× the latent size, so sizes mean what they mean in use.
    vae.update(
        block_out_channels=[32, 32, 32, 32],  # 32 norm groups, as real VAEs (not stored in the weights)
        layers_per_block=1,
        sample_size=32,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
    )
    configs: dict[str, dict[str, Any]] = {"vae": vae}
    if family == "sd1":
        unet.update(
            block_out_channels=[32, 64],
            layers_per_block=2,
            cross_attention_dim=32,
            down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
            attention_head_dim=8,
            sample_size=8,
        )
        configs["text_encoder"] = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 1}
    elif family == "sd2":
        unet.update(
            block_out_channels=[32, 64],
            layers_per_block=1,
            cross_attention_dim=64,
            down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
            attention_head_dim=[1, 1],
            sample_size=8,
        )
        configs["text_encoder"] = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 1}
    elif family == "sdxl":
        unet.update(
            block_out_channels=[32, 64],
            layers_per_block=2,
            cross_attention_dim=96,
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
            attention_head_dim=[1, 1],
            transformer_layers_per_block=[1, 2],
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 6 * 8,
            sample_size=8,
        )
        configs["text_encoder"] = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 1}
        configs["text_encoder_2"] = {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 1,
            "projection_dim": 32,
        }
    elif family == "sdxl_refiner":
        unet.update(
            block_out_channels=[32, 64],
            layers_per_block=1,
            cross_attention_dim=64,
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
            attention_head_dim=[1, 1],
            transformer_layers_per_block=2,
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 5 * 8,
            sample_size=8,
        )
        configs["text_encoder_2"] = {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 1,
            "projection_dim": 32,
        }
    else:
        raise ValueError(family)
    if inpainting:
        unet["in_channels"] = 9
    configs["unet"] = unet
    for name in expected_text_encoders(family):
        configs[name] = {**base_config(family, name), **TEXT_COMMON, **configs[name]}
    return configs


def build_tiny_models(
    family: str, *, seed: int = 0, prediction_type: str | None = None, inpainting: bool = False
) -> TinyModels:
    """Build the seeded reference models (fp32, CPU) without writing anything."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if prediction_type is None:
        prediction_type = "v_prediction" if family == "sd2" else "epsilon"
    configs = tiny_configs(family, inpainting=inpainting)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel.from_config(configs["unet"])
        vae = AutoencoderKL.from_config(configs["vae"])
        encoders = []
        for name in expected_text_encoders(family):
            cfg = CLIPTextConfig(**{k: v for k, v in configs[name].items() if k != "architectures"})
            cls = CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel
            encoders.append(cls(cfg))
        generator = torch.Generator().manual_seed(seed + 1)
        for module in [unet, vae, *encoders]:
            module.eval().requires_grad_(False)
            for param in module.parameters():
                if param.ndim == 1:
                    param.add_(0.02 * torch.randn(param.shape, generator=generator))
        if family == "sd2" and prediction_type == "v_prediction":
            last_up = unet.up_blocks[-1].attentions[-1].transformer_blocks[0].norm1.bias
            last_up.copy_(0.2 * torch.randn(last_up.shape, generator=generator))
    scheduler = base_config(family, "scheduler")
    scheduler["prediction_type"] = prediction_type
    return TinyModels(family, unet, vae, encoders, scheduler, prediction_type)


def write_single_file(models: TinyModels, path: Path, *, dtype: torch.dtype = torch.float32) -> Path:
    """Original LDM layout, with the ``alphas_cumprod`` buffer real SD1/SD2 files carry."""
    extra: dict[str, torch.Tensor] = {}
    if models.family in ("sd1", "sd2"):
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
        extra["alphas_cumprod"] = torch.cumprod(1 - betas, 0).float()
    return save_single_file(
        path,
        models.family,
        unet=models.unet,
        vae=models.vae,
        text_encoders=models.text_encoders,
        dtype=dtype,
        extra=extra,
    )


def write_diffusers_folder(models: TinyModels, folder: Path, *, dtype: torch.dtype = torch.float32) -> Path:
    """A diffusers pipeline folder (no tokenizer: the app builds its tokenizer from the vendored BPE)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = expected_text_encoders(models.family)
    pipeline = (
        "StableDiffusionPipeline"
        if models.family in ("sd1", "sd2")
        else ("StableDiffusionXLPipeline" if models.family == "sdxl" else "StableDiffusionXLImg2ImgPipeline")
    )
    index: dict[str, Any] = {
        "_class_name": pipeline,
        "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    }
    for name, model in zip(names, models.text_encoders, strict=True):
        index[name] = ["transformers", type(model).__name__]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()  # "modules to keep in float32: []" on every cast
    transformers.utils.logging.disable_progress_bar()
    for name, model in [("unet", models.unet), ("vae", models.vae), *zip(names, models.text_encoders, strict=True)]:
        original = next(model.parameters()).dtype
        model.to(dtype)
        try:
            model.save_pretrained(folder / name, safe_serialization=True)
        finally:
            model.to(original)
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(models.scheduler_config, indent=2))
    return folder


def make_tiny(
    family: str,
    directory: str | Path,
    *,
    layout: str = "single_file",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    prediction_type: str | None = None,
    inpainting: bool = False,
    name: str | None = None,
) -> Path:
    """Write a tiny model of ``family`` into ``directory`` and return the file or folder path."""
    models = build_tiny_models(family, seed=seed, prediction_type=prediction_type, inpainting=inpainting)
    directory = Path(directory)
    stem = name or f"tiny_{family}{'_inpaint' if inpainting else ''}_{str(dtype).removeprefix('torch.')}"
    if layout == "single_file":
        return write_single_file(models, directory / f"{stem}.safetensors", dtype=dtype)
    if layout == "diffusers":
        return write_diffusers_folder(models, directory / stem, dtype=dtype)
    raise ValueError(f"layout must be 'single_file' or 'diffusers', not {layout!r}")


def make_tiny_sd1(
    directory: str | Path, layout: str = "single_file", dtype: torch.dtype = torch.float32, **kwargs: Any
) -> Path:
    return make_tiny("sd1", directory, layout=layout, dtype=dtype, **kwargs)


def make_tiny_sd2(
    directory: str | Path, layout: str = "single_file", dtype: torch.dtype = torch.float32, **kwargs: Any
) -> Path:
    """SD2 with v-prediction by default (``prediction_type="epsilon"`` for an SD2-base-like model)."""
    return make_tiny("sd2", directory, layout=layout, dtype=dtype, **kwargs)


def make_tiny_sdxl(
    directory: str | Path, layout: str = "single_file", dtype: torch.dtype = torch.float32, **kwargs: Any
) -> Path:
    return make_tiny("sdxl", directory, layout=layout, dtype=dtype, **kwargs)


def make_tiny_sdxl_refiner(
    directory: str | Path, layout: str = "single_file", dtype: torch.dtype = torch.float32, **kwargs: Any
) -> Path:
    return make_tiny("sdxl_refiner", directory, layout=layout, dtype=dtype, **kwargs)
