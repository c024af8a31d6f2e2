"""The CLIP byte-pair vocabulary, built in memory from the vendored merge list.

Every Stable Diffusion text encoder (OpenAI CLIP-L for SD1.x and SDXL, OpenCLIP-H for SD2.x,
OpenCLIP-bigG for SDXL) uses the same 49,408-entry BPE vocabulary. Hugging Face normally downloads
it as ``vocab.json`` + ``merges.txt`` from the Hub; we must never touch the Hub, so we ship OpenAI's
original ``bpe_simple_vocab_16e6.txt.gz`` (MIT, see ``resources/clip/LICENSE-open_clip.txt``) and
derive both tables from it exactly the way OpenAI's/open_clip's ``SimpleTokenizer`` does:

* ids 0–255: the 256 byte symbols of the reversible byte→unicode map (GPT-2 style),
* ids 256–511: the same symbols with the end-of-word marker ``</w>``,
* ids 512–49405: one entry per merge rule (the two halves concatenated), in file order,
* 49406 ``<|startoftext|>`` and 49407 ``<|endoftext|>``.

The file has 262,144 merge lines but CLIP only ever used the first 48,894 (49152 − 256 − 2), which is
what fixes the vocabulary size at 49,408.

Text is pre-cleaned like open_clip (``ftfy.fix_text`` then ``html.unescape`` twice) before it reaches
the Hugging Face tokenizer, whose own normaliser only does NFC + whitespace + lower-casing. The project
notes (diffusers-offline.md §2) measured this to be what makes HF ids equal open_clip's ids on
full-width letters, ligatures and double-escaped HTML entities.
"""

from __future__ import annotations

import functools
import gzip
import html
from pathlib import Path
from typing import TYPE_CHECKING

from nodes.shipped import resource_path

if TYPE_CHECKING:  # transformers is heavy; only the functions below import it.
    from transformers import CLIPTokenizer

#: The vendored merge list (``resources/clip``, found through `nodes.shipped` in a checkout or a wheel).
BPE_PATH: Path = resource_path("clip", "bpe_simple_vocab_16e6.txt.gz")

BOS_ID = 49406
"""``<|startoftext|>``: first token of every 77-token CLIP sequence."""
EOS_ID = 49407
"""``<|endoftext|>``: closes the sequence; CLIP-L also pads with it."""
VOCAB_SIZE = 49408
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
_NUM_MERGES = 49152 - 256 - 2  # CLIP's vocabulary budget minus the byte symbols and the two specials


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins for raw bytes, in CLIP's id order.

    Printable Latin-1 bytes map to themselves; the remaining bytes (controls, space, a few others) map to
    code points 256+ so that BPE never has to deal with whitespace or control characters. The order
    (printables first, then the rest by byte value) is what fixes ids 0–255.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    byte_order = list(printable)
    code_points = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            byte_order.append(byte)
            code_points.append(256 + extra)
            extra += 1
    return [chr(c) for c in code_points]


@functools.cache
def load_vocab(bpe_path: Path = BPE_PATH) -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """Return ``(vocab, merges)`` derived from the gzip merge list.

    Cached per process: parsing 48,894 merges takes a noticeable fraction of a second and the result never
    changes. Callers must not mutate the returned dict.
    """
    with gzip.open(bpe_path, "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    # Line 0 is the "#version" header; keep exactly the merges CLIP was trained with.
    merges = tuple(tuple(line.split()) for line in lines[1 : _NUM_MERGES + 1])
    if len(merges) != _NUM_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError(f"{bpe_path} is not a CLIP BPE merge list")
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS_TOKEN, EOS_TOKEN]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE or vocab[BOS_TOKEN] != BOS_ID or vocab[EOS_TOKEN] != EOS_ID:
        raise ValueError(f"{bpe_path} produced an unexpected vocabulary ({len(vocab)} entries)")
    return vocab, merges  # type: ignore[return-value]


def build_clip_tokenizer(pad_token: str = EOS_TOKEN, split_special_tokens: bool = False) -> CLIPTokenizer:
    """A new Hugging Face CLIP tokenizer built from the in-memory vocabulary (no files, no Hub).

    Configured like the published CLIP tokenizers (``model_max_length`` 77). ``pad_token`` exists so
    tests can reproduce diffusers' SD2/SDXL configuration (``"!"``). ``split_special_tokens=True`` makes
    literal ``"<|endoftext|>"`` text in a prompt tokenize as characters, as open_clip does.
    """
    from transformers import CLIPTokenizer

    vocab, merges = load_vocab()
    return CLIPTokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        pad_token=pad_token,
        model_max_length=77,
        split_special_tokens=split_special_tokens,
    )


@functools.cache
def clip_tokenizer() -> CLIPTokenizer:
    """The process-wide tokenizer used by :mod:`nodes.diffusion.text.tokenize`.

    It pads with ``<|endoftext|>`` (49407) like CLIP-L; OpenCLIP's zero padding is applied afterwards by
    :mod:`nodes.diffusion.text.tokenize` rather than by configuring ``"!"`` as pad token, because the latter
    makes the tokenizer turn every ``!`` in a prompt into id 0 (diffusers #4153, transformers #24925).
    Special-token splitting is its default so our calls never toggle backend state.

    Built once per process (about a second). Keep it private: transformers stores padding/truncation
    settings on the shared Rust object, so handing it to code that pads or truncates (a diffusers
    pipeline) would make concurrent use racy — give such code :func:`build_clip_tokenizer` instead.
    """
    return build_clip_tokenizer(split_special_tokens=True)


def clean_text(text: str) -> str:
    """Repair and unescape prompt text the way open_clip does before BPE.

    ``ftfy`` fixes mojibake and folds compatibility characters (full-width letters, ligatures) that CLIP
    never saw in training; HTML entities are unescaped twice because scraped captions were often
    double-escaped (``&amp;amp;``). Whitespace is collapsed; lower-casing is left to the tokenizer.
    """
    import ftfy

    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return " ".join(text.split())
