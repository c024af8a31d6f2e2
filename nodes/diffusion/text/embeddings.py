"""Textual-inversion embeddings: files in ``models/embeddings``, used in prompts as ``embedding:name``.

An embedding is a few learnt input vectors for a text encoder: a "word" the vocabulary does not have.
The files people download come in a handful of layouts, all read here from their tensors:

=============================== ===============================================================
keys                            what it is
=============================== ===============================================================
``string_to_param`` → ``*``     A1111's ``.pt`` (one tensor ``[n, width]``); read with
                                ``torch.load(weights_only=True)``, which loads tensors and plain
                                containers but runs no code
``emb_params``                  A1111's ``.safetensors`` export, ``[n, width]``
``clip_l`` and ``clip_g``       SDXL: one tensor per encoder (``[n, 768]`` and ``[n, 1280]``)
one key (``<token>``)           diffusers' ``learned_embeds``: ``[width]`` or ``[n, width]``
=============================== ===============================================================

A name in a prompt is looked up among the installed embeddings (names as workflows name model files,
with or without the suffix; ``.safetensors`` wins over ``.pt`` when both exist), so a prompt cannot
reach a file outside the embeddings folders; an unknown name raises :class:`EmbeddingError` listing the
closest installed names.

:class:`PromptEmbeddings` gives each vector of the embeddings one prompt uses an id from
:data:`~.tokenize.FIRST_EMBEDDING_ID` up, in order of first use, and hands :mod:`.encode` the vectors for
each encoder: CLIP-L reads ``clip_l``, OpenCLIP-bigG ``clip_g`` (SDXL's and SD3's), and any encoder the
plain ``[n, width]`` tensor when its width fits. The flow families use them on their CLIP encoders
(:mod:`.flow_encode`); T5-XXL and Qwen3 have none. That is what diffusers' ``load_textual_inversion``
does (new token ids after the vocabulary, whose input embeddings are the vectors), without changing the
shared encoder.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from nodes.diffusion.errors import ModelError

from .tokenize import FIRST_EMBEDDING_ID

if TYPE_CHECKING:
    from transformers import PreTrainedModel

KIND = "embeddings"
SUFFIX_ORDER = (".safetensors", ".sft", ".pt", ".pth", ".bin")
"""Suffixes tried after a bare name, safetensors first."""
PLAIN = "*"
"""The vectors key for single-encoder files (SD1, SD2)."""
_TRAILING = ".,;:!?"
"""Punctuation that may end a sentence right after a name (``embedding:foo.``): tried without it."""


class EmbeddingError(ModelError):
    """An embedding named in a prompt that is missing, unreadable or made for another model."""

    user_facing = True
    field: str | None = None
    """The prompt text it came from when a node has several (``clip_l``, ``clip_g``), else None."""


@dataclass(frozen=True)
class Embedding:
    """One embedding file's vectors by encoder key (``*``, ``clip_l``, ``clip_g``), each ``[n, width]``."""

    name: str
    vectors: dict[str, Tensor]

    @property
    def length(self) -> int:
        return int(next(iter(self.vectors.values())).shape[0])


def read_embedding(path: Path, name: str) -> Embedding:
    """The vectors in an embedding file (see the module table); refuses anything else with its keys."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".safetensors", ".sft"):
            from safetensors.torch import load_file

            data: dict[str, object] = dict(load_file(str(path), device="cpu"))
        else:
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
            if not isinstance(loaded, dict):
                raise EmbeddingError(f"embedding {name!r} ({path}) holds a {type(loaded).__name__}, not tensors")
            data = loaded
    except EmbeddingError:
        raise
    except Exception as exc:  # a damaged file, or a pickle that needs code to load (refused)
        raise EmbeddingError(f"embedding {name!r} ({path}) cannot be read: {exc}") from None
    vectors: dict[str, object] = {}
    if "clip_l" in data or "clip_g" in data:
        vectors = {k: data[k] for k in ("clip_l", "clip_g") if k in data}
    elif "emb_params" in data:
        vectors = {PLAIN: data["emb_params"]}
    elif isinstance(data.get("string_to_param"), dict):
        params = data["string_to_param"]
        assert isinstance(params, dict)
        if len(params) == 1:
            vectors = {PLAIN: next(iter(params.values()))}
    elif len(data) == 1:
        vectors = {PLAIN: next(iter(data.values()))}
    out: dict[str, Tensor] = {}
    for key, value in vectors.items():
        if isinstance(value, Tensor) and value.ndim in (1, 2) and value.numel():
            out[key] = (value if value.ndim == 2 else value.unsqueeze(0)).detach().float()
    if not out or len(out) != len(vectors):
        keys = ", ".join(sorted(map(str, data)))[:200]
        raise EmbeddingError(
            f"{path.name} is not a textual-inversion embedding sdgraph reads (keys: {keys}); expected "
            "emb_params, string_to_param, clip_l/clip_g, or one tensor"
        )
    if len({v.shape[0] for v in out.values()}) != 1:
        raise EmbeddingError(f"embedding {name!r}: its clip_l and clip_g hold different numbers of vectors")
    return Embedding(name, out)


_cache_lock = threading.Lock()
_cache: dict[tuple[str, int, int], Embedding] = {}
_CACHE_SIZE = 32


def _load_cached(path: Path, name: str) -> Embedding:
    """Embeddings are small and a prompt is re-encoded often: keep the last few by (path, mtime, size)."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return Embedding(name, hit.vectors)
    emb = read_embedding(path, name)
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = emb
    return emb


def _match(name: str, installed: Sequence[str]) -> str | None:
    """The installed name ``name`` means: itself, or itself plus a suffix (safetensors first)."""
    if name in installed:
        return name
    for suffix in SUFFIX_ORDER:
        if name + suffix in installed:
            return name + suffix
    return None


def find_installed(name: str) -> tuple[Embedding, str]:
    """The installed embedding a prompt's ``embedding:name`` means, and any punctuation left after the name.

    Only names the embeddings folders list can match, so a name cannot leave them (``..``, absolute paths).
    """
    from nodes.folders import model_folders

    folders = model_folders()
    entries = {e.name: e.path for e in folders.entries(KIND)}
    installed = sorted(entries)
    stripped = name.rstrip(_TRAILING)
    for candidate, leftover in ((name, ""), (stripped, name[len(stripped) :])):
        found = _match(candidate, installed) if candidate else None
        if found is not None:
            return _load_cached(entries[found], found), leftover
    raise EmbeddingError(_not_found_message(stripped or name, installed))


def _not_found_message(name: str, installed: Sequence[str]) -> str:
    if not installed:
        return f"no embedding named {name!r}: no embeddings are installed (put them into the models/embeddings folder)"
    stems = {PurePosixPath(n).with_suffix("").as_posix(): n for n in installed}
    close = difflib.get_close_matches(name, list(stems), n=5, cutoff=0.3)
    shown = close or list(stems)[:5]
    what = "closest" if close else "installed"
    return f"no embedding named {name!r} in models/embeddings; {what}: " + ", ".join(f"embedding:{s}" for s in shown)


# The role names of nodes.families' text encoder slots that read the SDXL keys.
_ROLE_KEYS = {"CLIP-L": "clip_l", "OpenCLIP-bigG with projection": "clip_g", "CLIP-G": "clip_g"}  # CLIP-G: SD3's


class PromptEmbeddings:
    """The embeddings one prompt uses, their vectors numbered as token ids (see the module docstring)."""

    def __init__(self, lookup: Callable[[str], tuple[Embedding, str]] | None = None) -> None:
        self._lookup = lookup or find_installed
        self._rows: list[tuple[Embedding, int]] = []
        self._ids: dict[str, list[int]] = {}

    def ids_for(self, name: str) -> tuple[list[int], str]:
        """An :data:`~.tokenize.EmbedLookup`: the ids of ``name``'s vectors (numbered on first use)."""
        emb, leftover = self._lookup(name)
        if emb.name not in self._ids:
            start = FIRST_EMBEDDING_ID + len(self._rows)
            self._ids[emb.name] = list(range(start, start + emb.length))
            self._rows.extend((emb, i) for i in range(emb.length))
        return self._ids[emb.name], leftover

    @property
    def used(self) -> bool:
        return bool(self._rows)

    def vectors(self, encoder: PreTrainedModel, role: str) -> Tensor:
        """``[k, width]``: row i is the vector of id FIRST_EMBEDDING_ID + i, for this encoder."""
        width = int(encoder.config.hidden_size)
        key = _ROLE_KEYS.get(role)
        rows = []
        for emb, i in self._rows:
            table = emb.vectors.get(key) if key is not None else None
            if table is None:
                table = emb.vectors.get(PLAIN)
            if table is None or table.shape[-1] != width:
                held = ", ".join(f"{k} {v.shape[-1]} wide" for k, v in emb.vectors.items())
                raise EmbeddingError(
                    f"embedding {emb.name!r} has no vectors for this model's {role} text encoder ({width} wide; "
                    f"the file holds {held}): it was made for another model family"
                )
            rows.append(table[i])
        return torch.stack(rows)
