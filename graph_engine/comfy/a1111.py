"""AUTOMATIC1111 / Forge PNGs: the `parameters` text chunk turned into an equivalent txt2img graph.

The chunk is plain text, not a graph:

    a watercolor fox <lora:style:0.8>
    Negative prompt: blurry
    Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 512x768, Model: sd15, Clip skip: 2

The last line is `key: value` pairs (values with commas are quoted). We rebuild what those settings
mean in our nodes: checkpoint (+ LoRAs from `<lora:name:weight>` tags, + clip skip, + a VAE file), two
prompts, an empty latent of the size, one KSampler, decode, save; with "Hires upscale" a second,
latent-upscaled pass at the "Denoising strength". A1111 names a sampler and its schedule together
("DPM++ 2M Karras"); `SAMPLERS` and `SCHEDULES` split them into our sampler_name and scheduler.

What cannot be rebuilt is said in a notice (an img2img source image is not in the PNG; an unknown
sampler falls back to euler), never silently dropped. Prompt weights `(word:1.2)` mean the same in
our text encoder, so the prompt text is kept as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from graph_engine.comfy.api_import import layout_columns
from graph_engine.comfy.common import ComfyImport, fail
from graph_engine.model import Graph

# A1111 sampler label -> our sampler_name (schedule suffixes are split off first).
SAMPLERS = {
    "euler": "euler",
    "euler a": "euler_ancestral",
    "heun": "heun",
    "dpm2": "dpm_2",
    "dpm2 a": "dpm_2_ancestral",
    "lms": "lms",
    "dpm++ 2s a": "dpmpp_2s_ancestral",
    "dpm++ sde": "dpmpp_sde",
    "dpm++ 2m": "dpmpp_2m",
    "dpm++ 2m sde": "dpmpp_2m_sde",
    "dpm++ 3m sde": "dpmpp_3m_sde",
    "ddim": "ddim",
    "unipc": "uni_pc",
    "lcm": "lcm",
}
# A1111 schedule (a sampler-name suffix, or the separate "Schedule type" of newer versions) -> scheduler.
SCHEDULES = {
    "karras": "karras",
    "exponential": "exponential",
    "sgm uniform": "sgm_uniform",
    "simple": "simple",
    "normal": "normal",
    "uniform": "normal",
    "automatic": "normal",
    "beta": "beta",
    "ddim": "ddim_uniform",
}
_PAIR = re.compile(r'\s*([\w][\w \-/+.()]*?)\s*:\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_LORA = re.compile(r"<lora:([^:>]+)(?::([-+]?[\d.]+))?(?::[^>]*)?>")


@dataclass
class A1111Parameters:
    prompt: str
    negative: str
    settings: dict[str, str] = field(default_factory=dict)


def parse_parameters(text: str) -> A1111Parameters:
    """Split the chunk into prompt, negative prompt and the settings line (the last line with `Steps:`)."""
    lines = text.strip().split("\n")
    settings: dict[str, str] = {}
    if lines and re.match(r"\s*Steps\s*:", lines[-1]):
        for key, value in _PAIR.findall(lines[-1]):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1].replace('\\"', '"')
            settings[key.strip()] = value
        lines = lines[:-1]
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    target = prompt_lines
    for line in lines:
        if line.startswith("Negative prompt:"):
            target = negative_lines
            line = line[len("Negative prompt:") :].strip()
        target.append(line)
    return A1111Parameters("\n".join(prompt_lines).strip(), "\n".join(negative_lines).strip(), settings)


def split_sampler(label: str, schedule_type: str | None = None) -> tuple[str | None, str]:
    """ "DPM++ 2M Karras" -> ("dpmpp_2m", "karras"); an unknown sampler gives (None, scheduler)."""
    name = label.strip().lower()
    scheduler = "normal"
    for suffix, ours in sorted(SCHEDULES.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(" " + suffix) and name[: -len(suffix) - 1] in SAMPLERS:
            name, scheduler = name[: -len(suffix) - 1], ours
            break
    if schedule_type:
        scheduler = SCHEDULES.get(schedule_type.strip().lower(), scheduler)
    return SAMPLERS.get(name), scheduler


def _int(settings: dict[str, str], key: str, default: int, notices: list[str]) -> int:
    raw = settings.get(key)
    if raw is None:
        return default
    try:
        return int(float(raw))
    except ValueError:
        notices.append(f"A1111 setting {key!r} is {raw!r}, not a number; using {default}")
        return default


def _float(settings: dict[str, str], key: str, default: float, notices: list[str]) -> float:
    raw = settings.get(key)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        notices.append(f"A1111 setting {key!r} is {raw!r}, not a number; using {default}")
        return default


def _model_file(name: str, installed: list[str]) -> str:
    """A1111 writes the checkpoint's name without its extension; find the file it means, if it is here."""
    for candidate in installed:
        stem = candidate.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if candidate == name or stem == name:
            return candidate
    return name if "." in name.rsplit("/", 1)[-1] else f"{name}.safetensors"


def a1111_graph(
    params: A1111Parameters, installed: dict[str, list[str]] | None = None, *, sampler_choices: list[str] | None = None
) -> ComfyImport:
    """The txt2img graph the settings describe. `installed` maps a model kind to the files on disk."""
    installed = installed or {}
    s = params.settings
    notices: list[str] = []
    if not s and not params.prompt:
        raise fail("parameters", "the A1111 'parameters' text is empty")
    g = Graph()

    def add(type: str, values: dict[str, Any] | None = None, **kw: Any) -> int:
        return g.add_node(type, values or {}, **kw).id

    model_name = s.get("Model")
    if model_name is None:
        notices.append("the A1111 settings name no checkpoint; choose one in Load Checkpoint")
    ckpt = add(
        "CheckpointLoaderSimple",
        {"ckpt_name": _model_file(model_name, installed.get("checkpoints", []))} if model_name else {},
    )
    model_src, clip_src = (ckpt, "MODEL"), (ckpt, "CLIP")

    prompt = params.prompt
    for name, weight in _LORA.findall(prompt):
        strength = float(weight) if weight else 1.0
        lora = add(
            "LoraLoader",
            {
                "lora_name": _model_file(name, installed.get("loras", [])),
                "strength_model": strength,
                "strength_clip": strength,
            },
        )
        g.add_link(*model_src, lora, "model", "MODEL")
        g.add_link(*clip_src, lora, "clip", "CLIP")
        model_src, clip_src = (lora, "MODEL"), (lora, "CLIP")
    prompt = re.sub(r"\s*,?\s*" + _LORA.pattern, "", prompt).strip()

    clip_skip = _int(s, "Clip skip", 1, notices)
    if clip_skip > 1:
        skip = add("CLIPSetLastLayer", {"stop_at_clip_layer": -clip_skip})
        g.add_link(*clip_src, skip, "clip", "CLIP")
        clip_src = (skip, "CLIP")

    pos = add("CLIPTextEncode", {"text": prompt}, title="Positive prompt")
    neg = add("CLIPTextEncode", {"text": params.negative}, title="Negative prompt")
    for n in (pos, neg):
        g.add_link(*clip_src, n, "clip", "CLIP")

    width, height = 512, 512
    if "Size" in s:
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", s["Size"])
        if m:
            width, height = int(m.group(1)), int(m.group(2))
        else:
            notices.append(f"A1111 setting 'Size' is {s['Size']!r}, not WIDTHxHEIGHT; using 512x512")
    batch = _int(s, "Batch size", 1, notices)
    latent = add("EmptyLatentImage", {"width": width, "height": height, "batch_size": batch})

    sampler, scheduler = split_sampler(s.get("Sampler", "Euler"), s.get("Schedule type"))
    if sampler is None or (sampler_choices is not None and sampler not in sampler_choices):
        notices.append(f"A1111 sampler {s.get('Sampler')!r} has no equivalent here; using euler")
        sampler = "euler"
    common = {"cfg": _float(s, "CFG scale", 7.0, notices), "sampler_name": sampler, "scheduler": scheduler}
    seed = _int(s, "Seed", 0, notices)
    steps = _int(s, "Steps", 20, notices)
    first = add(
        "KSampler",
        {"seed": seed, "steps": steps, **common, "denoise": 1.0},
        extra={"control_after_generate": "fixed"},
    )
    g.add_link(*model_src, first, "model", "MODEL")
    g.add_link(pos, "CONDITIONING", first, "positive", "CONDITIONING")
    g.add_link(neg, "CONDITIONING", first, "negative", "CONDITIONING")
    g.add_link(latent, "LATENT", first, "latent_image", "LATENT")
    result = (first, "LATENT")

    denoise = s.get("Denoising strength")
    hires = "Hires upscale" in s or "Hires resize-1" in s
    if hires:
        scale = _float(s, "Hires upscale", 2.0, notices)
        hw = _int(s, "Hires resize-1", 0, notices) or round(width * scale / 8) * 8
        hh = _int(s, "Hires resize-2", 0, notices) or round(height * scale / 8) * 8
        upscaler = s.get("Hires upscaler", "Latent")
        if not upscaler.lower().startswith("latent"):
            notices.append(f"A1111 hires upscaler {upscaler!r} is not available; the latent is upscaled instead")
        up = add("LatentUpscale", {"upscale_method": "nearest-exact", "width": hw, "height": hh, "crop": "disabled"})
        g.add_link(*result, up, "samples", "LATENT")
        second = add(
            "KSampler",
            {
                "seed": seed,
                "steps": _int(s, "Hires steps", 0, notices) or steps,
                **common,
                "denoise": _float(s, "Denoising strength", 0.7, notices),
            },
            title="Hires pass",
            extra={"control_after_generate": "fixed"},
        )
        g.add_link(*model_src, second, "model", "MODEL")
        g.add_link(pos, "CONDITIONING", second, "positive", "CONDITIONING")
        g.add_link(neg, "CONDITIONING", second, "negative", "CONDITIONING")
        g.add_link(up, "LATENT", second, "latent_image", "LATENT")
        result = (second, "LATENT")
    elif denoise is not None:
        notices.append(
            f"this image was made with img2img (denoising strength {denoise}); the source image is not in "
            "the PNG, so this is the txt2img equivalent"
        )

    vae_src = (ckpt, "VAE")
    vae_name = s.get("VAE")
    if vae_name:
        vae = add("VAELoader", {"vae_name": _model_file(vae_name, installed.get("vae", []))})
        vae_src = (vae, "VAE")
    decode = add("VAEDecode")
    g.add_link(*result, decode, "samples", "LATENT")
    g.add_link(*vae_src, decode, "vae", "VAE")
    save = add("SaveImage", {"filename_prefix": "a1111"})
    g.add_link(decode, "IMAGE", save, "images", "IMAGE")
    layout_columns(g)
    g.extra["a1111_parameters"] = dict(s)
    return ComfyImport(g, "a1111", notices)
