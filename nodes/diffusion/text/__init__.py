"""Prompts → conditioning: emphasis syntax, CLIP tokenization with chunking, family-specific encoding.

Modules, in pipeline order:

* :mod:`.weights` — parse ``(word:1.2)`` / ``(word)`` / ``[word]`` emphasis into (text, weight) segments;
* :mod:`.vocab` — the CLIP BPE vocabulary built from the vendored merge list, text pre-cleaning;
* :mod:`.tokenize` — weighted ids cut into 77-token chunks with per-encoder padding;
* :mod:`.encode` — chunks through the text encoders into :class:`nodes.diffusion.conditioning.CondEntry`.

The node-facing value is :class:`nodes.diffusion.clip.ClipModel`. Only :mod:`.weights` is free of third-party
imports; the others import torch/transformers, so UI code should not import them at module level.
"""
