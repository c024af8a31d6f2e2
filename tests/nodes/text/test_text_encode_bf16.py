"""Fast mode's bf16 text encoders stay close to fp32: the embeddings' cosine similarity and error have
floors here, so a broken cast (or an fp16 one on the CPU) cannot pass silently."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from nodes.diffusion.clip import ClipModel

PROMPT = "a lighthouse on a cliff at sunset, (oil painting:1.2), dramatic clouds"
# Measured on the tiny seeded encoders below: min cosine 0.99991 (SD1) / 0.99994 (SDXL); the full-size
# CLIP-L gives 0.99994 and CLIP-L + CLIP-G 0.99989 (bench/graph_parts.py, docs/benchmarks.md).
MIN_COSINE = 0.999


def config(width: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=49408,
        max_position_embeddings=77,
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=4,
        num_attention_heads=4,
        projection_dim=width,
        bos_token_id=49406,
        eos_token_id=49407,
        hidden_act="gelu",
    )


def encoders(family: str, dtype: torch.dtype) -> list[torch.nn.Module]:
    torch.manual_seed(0)
    clip_l = CLIPTextModel(config(64)).eval().to(dtype)
    if family == "sd1":
        return [clip_l]
    torch.manual_seed(1)
    return [clip_l, CLIPTextModelWithProjection(config(96)).eval().to(dtype)]


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_bf16_embeddings_match_fp32(family: str) -> None:
    with torch.inference_mode():
        exact = ClipModel(family, encoders(family, torch.float32)).encode(PROMPT)[0]
        fast = ClipModel(family, encoders(family, torch.bfloat16)).encode(PROMPT)[0]
    assert fast.embeds.shape == exact.embeds.shape
    assert not torch.equal(fast.embeds.float(), exact.embeds)  # the bf16 path really ran
    cos = torch.nn.functional.cosine_similarity(fast.embeds.float(), exact.embeds, dim=-1)
    print(f"{family}: min cosine {float(cos.min()):.5f}")
    assert float(cos.min()) >= MIN_COSINE
    scale = float(exact.embeds.abs().max())
    assert float((fast.embeds.float() - exact.embeds).abs().max()) < 0.1 * scale
    if family == "sdxl":
        assert fast.pooled is not None and exact.pooled is not None
        pooled_cos = torch.nn.functional.cosine_similarity(fast.pooled.float(), exact.pooled, dim=-1)
        assert float(pooled_cos.min()) >= MIN_COSINE
