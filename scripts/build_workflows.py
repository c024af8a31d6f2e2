"""Writes the shipped workflows in workflows/ through the graph model, so they are valid by
construction and at the current schema version. Run after a schema change:

    .venv/bin/python scripts/build_workflows.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from graph_engine import Graph  # noqa: E402
from graph_engine.serialization import save  # noqa: E402

SD15 = "v1-5-pruned-emaonly.safetensors"
SD15_INPAINT = "sd-v1-5-inpainting.safetensors"
SDXL = "sd_xl_base_1.0.safetensors"
CONTROLNET_CANNY = "control_v11p_sd15_canny_fp16.safetensors"
UPSCALER = "RealESRGAN_x4plus.pth"
POSITIVE = "beautiful scenery nature glass bottle landscape, purple galaxy bottle"
NEGATIVE = "text, watermark"


class Builder:
    def __init__(self) -> None:
        self.g = Graph()

    def add(self, type: str, pos: tuple[float, float], title: str | None = None, **values: object) -> int:
        return self.g.add_node(type, dict(values), pos=pos, title=title).id

    def link(self, src: int, out: str, dst: int, inp: str, type: str) -> None:
        self.g.add_link(src, out, dst, inp, type)

    def note(self, pos: tuple[float, float], text: str, size: tuple[float, float] = (320, 140)) -> None:
        self.g.add_node("Note", {"text": text}, pos=pos, size=size)


def prompt_pair(b: Builder, ckpt: int, x: float = 420) -> tuple[int, int]:
    pos = b.add("CLIPTextEncode", (x, 60), "Positive prompt", text=POSITIVE)
    neg = b.add("CLIPTextEncode", (x, 300), "Negative prompt", text=NEGATIVE)
    b.link(ckpt, "CLIP", pos, "clip", "CLIP")
    b.link(ckpt, "CLIP", neg, "clip", "CLIP")
    return pos, neg


def ksampler(
    b: Builder,
    pos: tuple[float, float],
    model: int,
    positive: int,
    negative: int,
    latent: int,
    latent_out: str = "LATENT",
    title: str | None = None,
    **values: object,
) -> int:
    defaults = {
        "seed": 156680208700286,
        "steps": 20,
        "cfg": 8.0,
        "sampler_name": "euler",
        "scheduler": "normal",
        "denoise": 1.0,
    }
    k = b.add("KSampler", pos, title, **(defaults | values))
    b.link(model, "MODEL", k, "model", "MODEL")
    b.link(positive, "CONDITIONING", k, "positive", "CONDITIONING")
    b.link(negative, "CONDITIONING", k, "negative", "CONDITIONING")
    b.link(latent, latent_out, k, "latent_image", "LATENT")
    return k


def decode_save(b: Builder, x: float, latent: int, vae: int, prefix: str, y: float = 60, out: str = "LATENT") -> int:
    dec = b.add("VAEDecode", (x, y))
    b.link(latent, out, dec, "samples", "LATENT")
    b.link(vae, "VAE", dec, "vae", "VAE")
    save = b.add("SaveImage", (x + 240, y), filename_prefix=prefix)
    b.link(dec, "IMAGE", save, "images", "IMAGE")
    return save


def txt2img() -> Graph:
    b = Builder()
    ckpt = b.add("CheckpointLoaderSimple", (20, 200), ckpt_name=SD15)
    pos, neg = prompt_pair(b, ckpt)
    empty = b.add("EmptyLatentImage", (420, 540), width=512, height=512, batch_size=1)
    k = ksampler(b, (880, 60), ckpt, pos, neg, empty)
    decode_save(b, 1260, k, ckpt, "txt2img")
    return b.g


def img2img() -> Graph:
    b = Builder()
    ckpt = b.add("CheckpointLoaderSimple", (20, 200), ckpt_name=SD15)
    pos, neg = prompt_pair(b, ckpt)
    load = b.add("LoadImage", (20, 480), image="example.png")
    enc = b.add("VAEEncode", (420, 540))
    b.link(load, "IMAGE", enc, "pixels", "IMAGE")
    b.link(ckpt, "VAE", enc, "vae", "VAE")
    k = ksampler(b, (880, 60), ckpt, pos, neg, enc, denoise=0.75)
    decode_save(b, 1260, k, ckpt, "img2img")
    b.note(
        (880, 520),
        "denoise 0.75 keeps the composition of the input image and repaints its details; "
        "lower keeps more of it, 1.0 ignores it.",
    )
    return b.g


def inpaint() -> Graph:
    b = Builder()
    ckpt = b.add("CheckpointLoaderSimple", (20, 200), ckpt_name=SD15_INPAINT)
    pos, neg = prompt_pair(b, ckpt)
    load = b.add("LoadImage", (20, 480), "Image with transparent area", image="example_masked.png")
    enc = b.add("VAEEncodeForInpaint", (420, 540), grow_mask_by=6)
    b.link(load, "IMAGE", enc, "pixels", "IMAGE")
    b.link(load, "MASK", enc, "mask", "MASK")
    b.link(ckpt, "VAE", enc, "vae", "VAE")
    k = ksampler(b, (880, 60), ckpt, pos, neg, enc)
    decode_save(b, 1260, k, ckpt, "inpaint")
    b.note(
        (880, 520),
        "The transparent pixels of the loaded image are the mask: only they are repainted. "
        "Use an inpainting checkpoint at denoise 1.0.\n\n"
        "To mask a picture of your own:\n"
        "1. choose it in Load Image (its image list shows the input folder);\n"
        "2. right-click Load Image \u2192 Open in Mask Editor (or Edit \u25b8 Open in Mask Editor);\n"
        "3. paint what should change ([ and ] set the brush size) and Save: the node then loads "
        "<name>_mask.png;\n"
        "4. Run.",
        size=(400, 170),
    )
    return b.g


def controlnet_canny() -> Graph:
    b = Builder()
    ckpt = b.add("CheckpointLoaderSimple", (20, 200), ckpt_name=SD15)
    pos, neg = prompt_pair(b, ckpt)
    load = b.add("LoadImage", (20, 480), "Image to take the edges of", image="example.png")
    canny = b.add("Canny", (420, 560), low_threshold=0.4, high_threshold=0.8)
    b.link(load, "IMAGE", canny, "image", "IMAGE")
    control = b.add("ControlNetLoader", (420, 760), control_net_name=CONTROLNET_CANNY)
    apply = b.add(
        "ControlNetApplyAdvanced", (700, 300), "Apply ControlNet", strength=1.0, start_percent=0.0, end_percent=1.0
    )
    b.link(pos, "CONDITIONING", apply, "positive", "CONDITIONING")
    b.link(neg, "CONDITIONING", apply, "negative", "CONDITIONING")
    b.link(control, "CONTROL_NET", apply, "control_net", "CONTROL_NET")
    b.link(canny, "IMAGE", apply, "image", "IMAGE")
    b.link(ckpt, "VAE", apply, "vae", "VAE")
    empty = b.add("EmptyLatentImage", (700, 620), width=512, height=512, batch_size=1)
    k = b.add(
        "KSampler",
        (1000, 60),
        seed=156680208700286,
        steps=20,
        cfg=8.0,
        sampler_name="euler",
        scheduler="normal",
        denoise=1.0,
    )
    b.link(ckpt, "MODEL", k, "model", "MODEL")
    b.link(apply, "positive", k, "positive", "CONDITIONING")
    b.link(apply, "negative", k, "negative", "CONDITIONING")
    b.link(empty, "LATENT", k, "latent_image", "LATENT")
    decode_save(b, 1380, k, ckpt, "controlnet_canny")
    b.note(
        (1000, 560),
        "The edges of the loaded image (Canny) hold the composition while the prompt paints it. "
        f"models/controlnet: {CONTROLNET_CANNY} (ControlNet 1.1 canny for SD 1.5). Lower strength or "
        "end_percent to loosen the hold; put a Preview Image after Canny to see the edges.",
        size=(380, 160),
    )
    return b.g


def hires_fix() -> Graph:
    b = Builder()
    ckpt = b.add("CheckpointLoaderSimple", (20, 200), ckpt_name=SD15)
    pos, neg = prompt_pair(b, ckpt)
    empty = b.add("EmptyLatentImage", (420, 540), width=512, height=512, batch_size=1)
    k1 = ksampler(b, (880, 60), ckpt, pos, neg, empty, title="First pass")
    up = b.add("LatentUpscale", (880, 520), upscale_method="nearest-exact", width=768, height=768, crop="disabled")
    b.link(k1, "LATENT", up, "samples", "LATENT")
    k2 = ksampler(b, (1260, 420), ckpt, pos, neg, up, title="Second pass", steps=14, denoise=0.5)
    decode_save(b, 1260, k1, ckpt, "hires_first_pass", y=60)
    decode_save(b, 1640, k2, ckpt, "hires", y=420)
    return b.g


def upscale_hires_fix() -> Graph:
    b = Builder()
    ckpt = b.add("CheckpointLoaderSimple", (20, 200), ckpt_name=SD15)
    pos, neg = prompt_pair(b, ckpt)
    empty = b.add("EmptyLatentImage", (420, 540), width=512, height=512, batch_size=1)
    k1 = ksampler(b, (880, 60), ckpt, pos, neg, empty, title="First pass")
    dec = b.add("VAEDecode", (880, 360))
    b.link(k1, "LATENT", dec, "samples", "LATENT")
    b.link(ckpt, "VAE", dec, "vae", "VAE")
    loader = b.add("UpscaleModelLoader", (880, 480), model_name=UPSCALER)
    up = b.add("ImageUpscaleWithModel", (1200, 360))
    b.link(loader, "UPSCALE_MODEL", up, "upscale_model", "UPSCALE_MODEL")
    b.link(dec, "IMAGE", up, "image", "IMAGE")
    scale = b.add("ImageScaleBy", (1200, 480), "Back to 2x", upscale_method="lanczos", scale_by=0.5)
    b.link(up, "IMAGE", scale, "image", "IMAGE")
    enc = b.add("VAEEncode", (1200, 620))
    b.link(scale, "IMAGE", enc, "pixels", "IMAGE")
    b.link(ckpt, "VAE", enc, "vae", "VAE")
    k2 = ksampler(b, (1500, 360), ckpt, pos, neg, enc, title="Second pass", steps=14, denoise=0.5)
    decode_save(b, 1860, k2, ckpt, "upscale_hires", y=360)
    b.note(
        (420, 720),
        f"The first pass is decoded, upscaled 4x by an upscale model (models/upscale_models: {UPSCALER}, or "
        "any ESRGAN, SwinIR, HAT, DAT … file), scaled back to 2x and repainted at denoise 0.5, which adds "
        "detail a latent upscale cannot. Large images are upscaled in tiles when memory runs short.",
        size=(400, 150),
    )
    return b.g


def sdxl() -> Graph:
    b = Builder()
    ckpt = b.add("CheckpointLoaderSimple", (20, 200), ckpt_name=SDXL)
    pos = b.add("CLIPTextEncode", (420, 60), "Positive prompt", text=POSITIVE)
    b.link(ckpt, "CLIP", pos, "clip", "CLIP")
    neg = b.add("ConditioningZeroOut", (420, 320), "Empty negative")
    b.link(pos, "CONDITIONING", neg, "conditioning", "CONDITIONING")
    empty = b.add("EmptyLatentImage", (420, 480), width=1024, height=1024, batch_size=1)
    k = ksampler(b, (880, 60), ckpt, pos, neg, empty, steps=25, cfg=7.0, sampler_name="dpmpp_2m", scheduler="karras")
    decode_save(b, 1260, k, ckpt, "sdxl")
    return b.g


def custom_sampling() -> Graph:
    b = Builder()
    ckpt = b.add("CheckpointLoaderSimple", (20, 200), ckpt_name=SD15)
    pos, neg = prompt_pair(b, ckpt)
    noise = b.add("RandomNoise", (880, 20), noise_seed=42)
    guider = b.add("CFGGuider", (880, 160), cfg=7.5)
    b.link(ckpt, "MODEL", guider, "model", "MODEL")
    b.link(pos, "CONDITIONING", guider, "positive", "CONDITIONING")
    b.link(neg, "CONDITIONING", guider, "negative", "CONDITIONING")
    sampler = b.add("KSamplerSelect", (880, 340), sampler_name="dpmpp_2m")
    sched = b.add("BasicScheduler", (880, 440), scheduler="karras", steps=20, denoise=1.0)
    b.link(ckpt, "MODEL", sched, "model", "MODEL")
    empty = b.add("EmptyLatentImage", (420, 540), width=512, height=512, batch_size=1)
    sca = b.add("SamplerCustomAdvanced", (1260, 160))
    b.link(noise, "NOISE", sca, "noise", "NOISE")
    b.link(guider, "GUIDER", sca, "guider", "GUIDER")
    b.link(sampler, "SAMPLER", sca, "sampler", "SAMPLER")
    b.link(sched, "SIGMAS", sca, "sigmas", "SIGMAS")
    b.link(empty, "LATENT", sca, "latent_image", "LATENT")
    decode_save(b, 1640, sca, ckpt, "custom", y=160, out="output")
    b.note(
        (1260, 460),
        "Noise, guidance, sampling algorithm and schedule are separate nodes here: swap any "
        "one without touching the others.",
    )
    return b.g


def forward_noise() -> Graph:
    b = Builder()
    ckpt = b.add("CheckpointLoaderSimple", (20, 60), ckpt_name=SD15)
    load = b.add("LoadImage", (20, 340), image="example.png")
    noise = b.add("ForwardNoise", (420, 120), t=500, schedule="scaled_linear", seed=0)
    b.link(load, "IMAGE", noise, "image", "IMAGE")
    b.link(ckpt, "VAE", noise, "vae", "VAE")
    dec = b.add("VAEDecode", (800, 120))
    b.link(noise, "LATENT", dec, "samples", "LATENT")
    b.link(ckpt, "VAE", dec, "vae", "VAE")
    prev = b.add("PreviewImage", (1040, 120), "What the noisy latent looks like")
    b.link(dec, "IMAGE", prev, "images", "IMAGE")
    b.note(
        (800, 560),
        "The forward process. Training a diffusion model starts by destroying images: at timestep t the "
        "image (as a latent x₀) is mixed with Gaussian noise ε as x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε. Drag t: at 0 "
        "you see the image, by 500 it is mostly static, at 1000 almost pure noise. The numbers on the node "
        "are the mix: √ᾱ of image, √(1−ᾱ) of noise, and the signal-to-noise ratio SNR = ᾱ/(1−ᾱ).",
        size=(420, 190),
    )
    b.note(
        (1260, 560),
        "Schedules decide how fast the image fades. Stable Diffusion's scaled-linear schedule keeps √ᾱ ≈ 0.07 "
        "of the image even at t = 1000 (SNR ≈ 0.005), which is why SD struggles with very dark or very bright "
        "images; DDPM's linear schedule ends at SNR ≈ 4e-5, and the cosine schedule destroys the image more "
        "evenly over t. The node's small picture is the latent itself; the preview is what the VAE decodes.",
        size=(420, 190),
    )
    return b.g


def denoise_timeline() -> Graph:
    b = Builder()
    ckpt = b.add("CheckpointLoaderSimple", (20, 200), ckpt_name=SD15)
    pos, neg = prompt_pair(b, ckpt)
    empty = b.add("EmptyLatentImage", (420, 540), width=512, height=512, batch_size=1)
    k = ksampler(b, (880, 60), ckpt, pos, neg, empty, steps=20, sampler_name="euler")
    decode_save(b, 1260, k, ckpt, "timeline")
    b.note(
        (880, 520),
        "Noise prediction. The sampler starts from pure noise (step 0) and at every step the UNet predicts the "
        "noise ε̂ in the current x_t. Removing it gives a guess of the finished image, x̂₀ = (x_t − √(1−ᾱ)·ε̂)/√ᾱ, "
        "and the sampler moves x_t part of the way towards that guess, to a lower noise level σ.",
        size=(420, 170),
    )
    b.note(
        (1320, 520),
        "Open the Timeline panel before you run: it records every step. Scrub it to see x_t (left) get cleaner "
        "and x̂₀ (right) sharpen from a blurry average into details: the composition is decided in the first "
        "few steps, the fine texture in the last ones. Decode any step with the full VAE, or export a GIF.",
        size=(420, 170),
    )
    return b.g


def guidance_sweep() -> Graph:
    b = Builder()
    ckpt = b.add("CheckpointLoaderSimple", (20, 200), ckpt_name=SD15)
    pos, neg = prompt_pair(b, ckpt)
    empty = b.add("EmptyLatentImage", (420, 540), width=512, height=512, batch_size=1)
    sweep = b.add(
        "XYSweep",
        (880, 60),
        "CFG × seed",
        seed=156680208700286,
        steps=20,
        cfg=7.5,
        sampler_name="euler",
        scheduler="normal",
        denoise=1.0,
        x_input="cfg",
        x_values="1, 3, 5, 7.5, 9, 12",
        y_input="seed",
        y_values="1, 2",
    )
    for src, out, inp, typ in [
        (ckpt, "MODEL", "model", "MODEL"),
        (pos, "CONDITIONING", "positive", "CONDITIONING"),
        (neg, "CONDITIONING", "negative", "CONDITIONING"),
        (empty, "LATENT", "latent_image", "LATENT"),
        (ckpt, "VAE", "vae", "VAE"),
    ]:
        b.link(src, out, sweep, inp, typ)
    save = b.add("SaveImage", (1300, 60), filename_prefix="guidance_sweep")
    b.link(sweep, "IMAGE", save, "images", "IMAGE")
    b.note(
        (880, 620),
        "Classifier-free guidance. At every step the UNet runs twice: once with your prompt (ε̂_cond) and once "
        "with the negative prompt (ε̂_uncond). The sampler uses ε̂ = ε̂_uncond + s·(ε̂_cond − ε̂_uncond): s = 1 is "
        "the plain conditional model, larger s pushes the image further in the direction the prompt points.",
        size=(420, 170),
    )
    b.note(
        (1320, 620),
        "Read the grid left to right: at cfg 1 the image ignores much of the prompt and looks washed out; "
        "around 7–9 it follows the prompt with natural colours, which is why that is the usual range; at 12 and "
        "above colours saturate, contrast burns and details repeat, because the extrapolation overshoots what "
        "the model ever saw in training. The rows repeat the sweep for another seed. The prompts are encoded once.",
        size=(420, 190),
    )
    return b.g


# --------------------------------------------------------------------------------------------
# Flow-matching families: ComfyUI's file names and folders, so the same downloads work in both
# --------------------------------------------------------------------------------------------

FLOW_PROMPT = "a red fox sitting in fresh snow at golden hour, detailed fur, photograph"


def flow_txt2img(
    b: Builder,
    model: int,
    clip: tuple[int, str],
    vae: int,
    prefix: str,
    *,
    negative: str | None,
    guidance: float | None = None,
    **sampler: object,
) -> None:
    """Prompt (→ FluxGuidance) and a negative (encoded, or zeroed where cfg is 1) → KSampler → save."""
    pos = b.add("CLIPTextEncode", (420, 60), "Positive prompt", text=FLOW_PROMPT)
    b.link(clip[0], clip[1], pos, "clip", "CLIP")
    if guidance is not None:
        fg = b.add("FluxGuidance", (420, 300), guidance=guidance)
        b.link(pos, "CONDITIONING", fg, "conditioning", "CONDITIONING")
        pos = fg
    if negative is None:
        neg = b.add("ConditioningZeroOut", (420, 420), "Negative (unused at cfg 1)")
        b.link(pos, "CONDITIONING", neg, "conditioning", "CONDITIONING")
    else:
        neg = b.add("CLIPTextEncode", (420, 420), "Negative prompt", text=negative)
        b.link(clip[0], clip[1], neg, "clip", "CLIP")
    empty = b.add("EmptySD3LatentImage", (420, 620), width=1024, height=1024, batch_size=1)
    k = ksampler(b, (880, 60), model, pos, neg, empty, **sampler)
    decode_save(b, 1260, k, vae, prefix)


def flux(variant: str) -> Graph:
    b = Builder()
    dev = variant == "dev"
    unet = b.add("UNETLoader", (20, 60), unet_name=f"flux1-{variant}.safetensors", weight_dtype="default")
    clip_files = {"clip_name1": "t5xxl_fp16.safetensors", "clip_name2": "clip_l.safetensors"}
    clip = b.g.add_node("DualCLIPLoader", {**clip_files, "type": "flux", "device": "default"}, pos=(20, 240)).id
    vae = b.add("VAELoader", (20, 440), vae_name="ae.safetensors")
    model = unet
    if dev:
        model = b.add(
            "ModelSamplingFlux", (20, 560), "Shift for the image size", max_shift=1.15, base_shift=0.5,
            width=1024, height=1024,
        )  # fmt: skip
        b.link(unet, "MODEL", model, "model", "MODEL")
    flow_txt2img(
        b, model, (clip, "CLIP"), vae, f"flux1_{variant}", negative=None,
        guidance=3.5 if dev else None, steps=20 if dev else 4, cfg=1.0, scheduler="simple",
    )  # fmt: skip
    kind = (
        "guidance-distilled: the strength is FluxGuidance (3.5), cfg stays 1; ModelSamplingFlux's width and "
        "height should be the image's"
        if dev
        else "timestep-distilled: 4 steps, no guidance, no shift"
    )
    b.note(
        (20, 760),
        f"FLUX.1-{variant}, {kind}.\n\nmodels/diffusion_models (or unet): flux1-{variant}.safetensors "
        "(weight_dtype fp8_e4m3fn halves a bf16 file's memory)\nmodels/text_encoders (or clip): "
        "t5xxl_fp16.safetensors, clip_l.safetensors\nmodels/vae: ae.safetensors\n\nAbout 24 GB of weights "
        "plus 9 GB for T5; idle text encoders are freed when the model budget needs the room.",
        size=(420, 220),
    )
    return b.g


def flux_dev() -> Graph:
    return flux("dev")


def flux_schnell() -> Graph:
    return flux("schnell")


def sd35() -> Graph:
    b = Builder()
    ckpt = b.add("CheckpointLoaderSimple", (20, 60), ckpt_name="sd3.5_medium.safetensors")
    clip = b.add(
        "TripleCLIPLoader", (20, 260), clip_name1="clip_l.safetensors", clip_name2="clip_g.safetensors",
        clip_name3="t5xxl_fp16.safetensors",
    )  # fmt: skip
    flow_txt2img(
        b, ckpt, (clip, "CLIP"), ckpt, "sd3.5", negative="blurry, low quality",
        steps=28, cfg=4.5, scheduler="simple",
    )  # fmt: skip
    b.note(
        (20, 460),
        "Stable Diffusion 3.5 Medium (Large works the same with sd3.5_large.safetensors).\n\n"
        "models/checkpoints: sd3.5_medium.safetensors (MMDiT and VAE)\nmodels/text_encoders (or clip): "
        "clip_l.safetensors, clip_g.safetensors, t5xxl_fp16.safetensors\n\nA checkpoint that includes its "
        "text encoders (…incl_clips_t5xxl…) gives CLIP itself: connect Load Checkpoint's CLIP instead.",
        size=(380, 200),
    )
    return b.g


def z_image_turbo() -> Graph:
    b = Builder()
    unet = b.add("UNETLoader", (20, 60), unet_name="z_image_turbo_bf16.safetensors", weight_dtype="default")
    qwen = {"clip_name": "qwen_3_4b.safetensors", "type": "lumina2", "device": "default"}
    clip = b.g.add_node("CLIPLoader", qwen, pos=(20, 240)).id
    vae = b.add("VAELoader", (20, 420), vae_name="ae.safetensors")
    shift = b.add("ModelSamplingAuraFlow", (20, 540), shift=3.0)
    b.link(unet, "MODEL", shift, "model", "MODEL")
    flow_txt2img(
        b, shift, (clip, "CLIP"), vae, "z_image_turbo", negative=None,
        steps=8, cfg=1.0, sampler_name="res_multistep", scheduler="simple",
    )  # fmt: skip
    b.note(
        (20, 680),
        "Z-Image Turbo: 8 steps, no guidance (cfg 1), res_multistep.\n\nmodels/diffusion_models (or unet): "
        "z_image_turbo_bf16.safetensors\nmodels/text_encoders (or clip): qwen_3_4b.safetensors (Qwen3-4B, "
        "type lumina2)\nmodels/vae: ae.safetensors (the FLUX.1 VAE)",
        size=(380, 180),
    )
    return b.g


def outpaint() -> Graph:
    b = Builder()
    ckpt = b.add("CheckpointLoaderSimple", (20, 200), ckpt_name=SD15_INPAINT)
    pos, neg = prompt_pair(b, ckpt)
    load = b.add("LoadImage", (20, 480), image="example.png")
    pad = b.add("ImagePadForOutpaint", (20, 820), left=0, top=0, right=256, bottom=0, feathering=40)
    b.link(load, "IMAGE", pad, "image", "IMAGE")
    enc = b.add("VAEEncodeForInpaint", (420, 540), grow_mask_by=8)
    b.link(pad, "IMAGE", enc, "pixels", "IMAGE")
    b.link(pad, "MASK", enc, "mask", "MASK")
    b.link(ckpt, "VAE", enc, "vae", "VAE")
    k = ksampler(b, (880, 60), ckpt, pos, neg, enc)
    decode_save(b, 1260, k, ckpt, "outpaint")
    b.note(
        (880, 520),
        "Pad Image for Outpainting grows the canvas (here 256 px to the right) and masks the new strip, "
        "fading 40 px into the old image so the seam blends. Use an inpainting checkpoint at denoise 1.0.",
    )
    return b.g


def regional_prompt() -> Graph:
    b = Builder()
    ckpt = b.add("CheckpointLoaderSimple", (20, 200), ckpt_name=SD15)
    scene = b.add("CLIPTextEncode", (420, 60), "Whole image", text="a wide meadow at sunset, distant hills")
    left = b.add("CLIPTextEncode", (420, 280), "Left third", text="a red barn")
    right = b.add("CLIPTextEncode", (420, 500), "Right third", text="a large oak tree")
    neg = b.add("CLIPTextEncode", (420, 720), "Negative prompt", text=NEGATIVE)
    for enc in (scene, left, right, neg):
        b.link(ckpt, "CLIP", enc, "clip", "CLIP")
    left_area = b.add(
        "ConditioningSetAreaPercentage", (800, 280), "Left area", width=0.4, height=1.0, x=0.0, y=0.0, strength=1.2
    )
    right_area = b.add(
        "ConditioningSetAreaPercentage", (800, 500), "Right area", width=0.4, height=1.0, x=0.6, y=0.0, strength=1.2
    )
    b.link(left, "CONDITIONING", left_area, "conditioning", "CONDITIONING")
    b.link(right, "CONDITIONING", right_area, "conditioning", "CONDITIONING")
    both = b.add("ConditioningCombine", (1160, 380))
    b.link(left_area, "CONDITIONING", both, "conditioning_1", "CONDITIONING")
    b.link(right_area, "CONDITIONING", both, "conditioning_2", "CONDITIONING")
    allc = b.add("ConditioningCombine", (1160, 120))
    b.link(scene, "CONDITIONING", allc, "conditioning_1", "CONDITIONING")
    b.link(both, "CONDITIONING", allc, "conditioning_2", "CONDITIONING")
    empty = b.add("EmptyLatentImage", (800, 720), width=768, height=512, batch_size=1)
    k = ksampler(b, (1420, 60), ckpt, allc, neg, empty)
    decode_save(b, 1800, k, ckpt, "regional_prompt")
    b.note(
        (1420, 520),
        "Each area prompt guides only its part of the image (fractions of the width and height, so any "
        "size works); where areas overlap the whole-image prompt, their predictions are averaged, "
        "weighted by strength and fading over 64 px at inner edges.",
        size=(360, 160),
    )
    return b.g


WORKFLOWS = {
    "txt2img": txt2img,
    "img2img": img2img,
    "inpaint": inpaint,
    "hires_fix": hires_fix,
    "upscale_hires_fix": upscale_hires_fix,
    "controlnet_canny": controlnet_canny,
    "sdxl": sdxl,
    "custom_sampling": custom_sampling,
    "forward_noise": forward_noise,
    "denoise_timeline": denoise_timeline,
    "guidance_sweep": guidance_sweep,
    "flux_dev": flux_dev,
    "flux_schnell": flux_schnell,
    "sd3.5": sd35,
    "z_image_turbo": z_image_turbo,
    "outpaint": outpaint,
    "regional_prompt": regional_prompt,
}


def main() -> None:
    out = ROOT / "workflows"
    out.mkdir(exist_ok=True)
    for name, build in WORKFLOWS.items():
        save(build(), out / f"{name}.json")
        print(out / f"{name}.json")


if __name__ == "__main__":
    main()
