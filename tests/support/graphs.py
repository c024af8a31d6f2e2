"""The txt2img graph most diffusion tests need, built in one place."""

from __future__ import annotations

from graph_engine import Graph

TXT2IMG_LINKS = [
    ("ckpt", "CLIP", "pos", "clip", "CLIP"),
    ("ckpt", "MODEL", "ks", "model", "MODEL"),
    ("pos", "CONDITIONING", "ks", "positive", "CONDITIONING"),
    ("neg", "CONDITIONING", "ks", "negative", "CONDITIONING"),
    ("empty", "LATENT", "ks", "latent_image", "LATENT"),
    ("ks", "LATENT", "dec", "samples", "LATENT"),
    ("ckpt", "VAE", "dec", "vae", "VAE"),
    ("dec", "IMAGE", "out", "images", "IMAGE"),
]


def txt2img_graph(
    ckpt_name: str,
    *,
    prompt: str = "a red fox in the snow",
    negative: str | None = "",
    size: int = 64,
    output: str = "SaveImage",
    output_values: dict[str, object] | None = None,
    ckpt_title: str | None = None,
    **ksampler: object,
) -> tuple[Graph, dict[str, int]]:
    """Load Checkpoint → Encode Prompt ×2 → Empty Latent → KSampler → VAE Decode → `output`.

    `negative=None` zeroes the positive instead of encoding a negative (the usual SDXL negative).
    KSampler values not given keep the node's defaults; ids come back by role.
    """
    g = Graph()
    ids = {
        "ckpt": g.add_node("CheckpointLoaderSimple", {"ckpt_name": ckpt_name}, pos=(0, 0), title=ckpt_title).id,
        "pos": g.add_node("CLIPTextEncode", {"text": prompt}, pos=(300, 0)).id,
    }
    links = list(TXT2IMG_LINKS)
    if negative is None:
        ids["neg"] = g.add_node("ConditioningZeroOut", pos=(300, 220)).id
        links.append(("pos", "CONDITIONING", "neg", "conditioning", "CONDITIONING"))
    else:
        ids["neg"] = g.add_node("CLIPTextEncode", {"text": negative}, pos=(300, 220)).id
        links.append(("ckpt", "CLIP", "neg", "clip", "CLIP"))
    ids["empty"] = g.add_node("EmptyLatentImage", {"width": size, "height": size, "batch_size": 1}, pos=(300, 440)).id
    ids["ks"] = g.add_node("KSampler", dict(ksampler), pos=(640, 0)).id
    ids["dec"] = g.add_node("VAEDecode", pos=(960, 0)).id
    ids["out"] = g.add_node(output, dict(output_values or {}), pos=(1180, 0)).id
    for a, out, b, inp, t in links:
        g.add_link(ids[a], out, ids[b], inp, t)
    return g, ids
