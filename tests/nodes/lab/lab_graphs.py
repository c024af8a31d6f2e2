"""Small SD graphs on the tiny checkpoint, shared by the noise-lab tests."""

from __future__ import annotations

from dataclasses import dataclass

from graph_engine import Graph
from tests.support.model_root import TINY_NAMES


@dataclass
class SdGraph:
    g: Graph
    ckpt: int
    pos: int
    neg: int
    empty: int


def sd_base(size: int = 64) -> SdGraph:
    """Checkpoint, a prompt pair and an empty latent: what every sampler graph starts from."""
    g = Graph()
    ckpt = g.add_node("CheckpointLoaderSimple", {"ckpt_name": TINY_NAMES["sd1"]}).id
    pos = g.add_node("CLIPTextEncode", {"text": "a red fox in the snow"}).id
    neg = g.add_node("CLIPTextEncode", {"text": "blurry"}).id
    g.add_link(ckpt, "CLIP", pos, "clip", "CLIP")
    g.add_link(ckpt, "CLIP", neg, "clip", "CLIP")
    empty = g.add_node("EmptyLatentImage", {"width": size, "height": size}).id
    return SdGraph(g, ckpt, pos, neg, empty)


def wire_sampler(b: SdGraph, node: int) -> None:
    """Connect model, prompts and latent into a KSampler-shaped node."""
    for src, out, inp, t in [
        (b.ckpt, "MODEL", "model", "MODEL"),
        (b.pos, "CONDITIONING", "positive", "CONDITIONING"),
        (b.neg, "CONDITIONING", "negative", "CONDITIONING"),
        (b.empty, "LATENT", "latent_image", "LATENT"),
    ]:
        b.g.add_link(src, out, node, inp, t)
