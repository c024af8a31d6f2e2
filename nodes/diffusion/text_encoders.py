"""The CLIP value of the flow-matching families, and building CLIP values from text-encoder files.

``FlowClip`` is what CLIPLoader / DualCLIPLoader / TripleCLIPLoader hand to the CLIP socket for SD3,
FLUX and Z-Image: the loaded encoders (any of CLIP-L, CLIP-G, T5-XXL, Qwen3), the *recipe* that says
how prompts become conditioning (``"sd3"``, ``"flux"``, ``"z_image"``; see :mod:`.text.flow_encode`)
and two reading options (the CLIP layer, the T5 length). It has the duck interface prompt nodes use on
:class:`nodes.diffusion.clip.ClipModel` (``family``, ``encode``, ``with_last_layer``), so plain
CLIPTextEncode works with it, plus ``encode_sd3`` / ``encode_flux`` for the per-encoder prompt nodes.
For the SD families the loaders build the existing ``ClipModel`` (``stable_diffusion`` → SD1,
``sdxl`` → SDXL) from the same files.

**Conditioning** produced here is the usual list of :class:`CondEntry`, float32 on the CPU:

========== =================================== ========================= ===============================
recipe     ``embeds``                          ``pooled``                ``extras``
========== =================================== ========================= ===============================
sd3        ``[1, 77·n + 256, 4096]``            ``[1, 2048]`` (L ‖ G)     ``text_recipe="sd3"``
flux       ``[1, 512, 4096]``                   ``[1, 768]``              ``text_recipe="flux"``,
                                                                         ``guidance`` (CLIPTextEncodeFlux)
z_image    ``[1, n, 2560]``, valid tokens only  ``None``                  ``text_recipe="z_image"``
========== =================================== ========================= ===============================

A transformer takes ``embeds`` as ``encoder_hidden_states`` (FLUX/SD3) or ``cap_feats`` (Z-Image),
``pooled`` as ``pooled_projections``; no recipe needs an attention mask (SD3/FLUX attend to all
positions, as their pipelines do; Z-Image's entries hold only valid tokens — pad and mask, or pass a list
as ``ZImageTransformer2DModel`` accepts, when batching entries of different lengths). The
``text_recipe`` extra lets a sampler refuse conditioning made for another family.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .conditioning import CondEntry, Conditioning
from .text.encoder_files import CLIP_G, CLIP_L, QWEN3, ROLE_NAMES, T5XXL, EncoderInFile
from .text.flow_encode import T5_LENGTH, FlowEncoders, encode_flux, encode_sd3, encode_z_image

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

RECIPES = ("sd3", "flux", "z_image")
TEXT_RECIPE_KEY = "text_recipe"
"""``CondEntry.extras`` key naming the recipe that made the entry."""
GUIDANCE_KEY = "guidance"
"""``CondEntry.extras`` key of FLUX's distilled guidance (CLIPTextEncodeFlux, FluxGuidance)."""

# One lock for the shared tokenizers: transformers keeps padding/truncation state on the Rust object.
_tokenizer_lock = threading.Lock()


@cache
def _t5_tokenizer() -> PreTrainedTokenizerBase:
    from .text.llm_vocab import build_t5_tokenizer

    return build_t5_tokenizer()


@cache
def _qwen3_tokenizer() -> PreTrainedTokenizerBase:
    from .text.llm_vocab import build_qwen3_tokenizer

    return build_qwen3_tokenizer()


class FlowClip:
    """Text encoders of a flow-matching family plus how to read them (see the module docstring)."""

    __slots__ = ("_fetch", "_layer_idx", "_recipe", "_roles", "_t5_length")

    def __init__(
        self,
        recipe: str,
        encoders: FlowEncoders | Callable[[], FlowEncoders],
        *,
        layer_idx: int | None = None,
        t5_length: int | None = None,
    ) -> None:
        """``encoders``: the loaded modules, or a function that fetches them. The loaders pass a function
        that asks the model manager, so this value (cached by the graph with the loader's output) does
        not keep gigabytes of T5 or Qwen3 alive: when the model budget needs the room for the diffusion
        model, the manager can really free them, and the next prompt loads them again."""
        present_from = encoders() if callable(encoders) else encoders
        present = {role for role in (CLIP_L, CLIP_G, T5XXL, QWEN3) if getattr(present_from, role) is not None}
        if recipe not in RECIPES:
            raise ValueError(f"unknown text recipe {recipe!r}; expected one of {RECIPES}")
        allowed = {"sd3": {CLIP_L, CLIP_G, T5XXL}, "flux": {CLIP_L, T5XXL}, "z_image": {QWEN3}}[recipe]
        if not present or present - allowed:
            names = ", ".join(ROLE_NAMES[r] for r in sorted(present)) or "none"
            wanted = ", ".join(ROLE_NAMES[r] for r in sorted(allowed))
            raise ValueError(f"{recipe} uses {wanted}; got {names}")
        del present_from
        self._recipe = recipe
        self._fetch: Callable[[], FlowEncoders] = encoders if callable(encoders) else (lambda e=encoders: e)
        self._roles = frozenset(present)
        self._layer_idx = layer_idx
        self._t5_length = T5_LENGTH.get(recipe, 0) if t5_length is None else int(t5_length)

    @property
    def _encoders(self) -> FlowEncoders:
        return self._fetch()

    @property
    def family(self) -> str:
        return self._recipe

    @property
    def encoders(self) -> FlowEncoders:
        return self._encoders

    @property
    def text_encoders(self) -> tuple[Any, ...]:
        """The loaded modules, in the order CLIP-L, CLIP-G, T5-XXL, Qwen3."""
        return tuple(
            m for m in (self._encoders.clip_l, self._encoders.clip_g, self._encoders.t5xxl, self._encoders.qwen3) if m
        )

    @property
    def t5_length(self) -> int:
        return self._t5_length

    @property
    def layer_idx(self) -> int | None:
        return self._layer_idx

    def with_last_layer(self, stop_at_clip_layer: int) -> FlowClip:
        """CLIPSetLastLayer: which ``hidden_states`` the SD3 CLIP parts read (default −2); T5/Qwen3 unaffected."""
        depth = min(
            (int(e.config.num_hidden_layers) for e in (self._encoders.clip_l, self._encoders.clip_g) if e), default=0
        )
        if depth and not -depth <= stop_at_clip_layer <= -1:
            raise ValueError(f"CLIP layer must be between -{depth} and -1, got {stop_at_clip_layer}")
        return FlowClip(self._recipe, self._fetch, layer_idx=stop_at_clip_layer, t5_length=self._t5_length)

    def with_t5_length(self, length: int) -> FlowClip:
        """The same encoders padding T5 to ``length`` tokens (FLUX.1-schnell's pipelines use 256)."""
        return FlowClip(self._recipe, self._fetch, layer_idx=self._layer_idx, t5_length=length)

    def _entry(self, embeds: Any, pooled: Any, extras: Mapping[str, Any] | None) -> Conditioning:
        return [CondEntry(embeds, pooled, {**dict(extras or {}), TEXT_RECIPE_KEY: self._recipe})]

    def encode(self, text: str, extras: Mapping[str, Any] | None = None) -> Conditioning:
        """CLIPTextEncode: the same prompt to every encoder. ``embedding:name`` applies to the CLIP encoders
        and is left out of the T5/Qwen3 text (see :mod:`.text.flow_encode`)."""
        if self._recipe == "sd3":
            return self.encode_sd3(text, text, text, extras=extras)
        if self._recipe == "flux":
            return self.encode_flux(text, text, extras=extras)
        with _tokenizer_lock:
            embeds = encode_z_image(self._encoders, _qwen3_tokenizer(), text)
        return self._entry(embeds, None, extras)

    def encode_sd3(
        self,
        clip_l: str,
        clip_g: str,
        t5xxl: str,
        *,
        empty_padding: str = "empty_prompt",
        extras: Mapping[str, Any] | None = None,
    ) -> Conditioning:
        """CLIPTextEncodeSD3. ``empty_padding="none"``: an empty text switches its encoder off (a CLIP
        gives zeros, T5 is left out of the sequence) instead of encoding the empty prompt."""
        if self._recipe != "sd3":
            raise ValueError(f"this CLIP holds {self._recipe} text encoders, not SD3's")
        off = empty_padding == "none"

        def text(value: str) -> str | None:
            return None if off and not value else value

        from .text.embeddings import PromptEmbeddings

        with _tokenizer_lock:
            embeds, pooled = encode_sd3(
                self._encoders,
                _t5_tokenizer() if self._encoders.t5xxl is not None else None,
                text(clip_l),
                text(clip_g),
                text(t5xxl),
                layer=-2 if self._layer_idx is None else self._layer_idx,
                t5_length=self._t5_length,
                embeddings=PromptEmbeddings,
            )
        return self._entry(embeds, pooled, extras)

    def encode_flux(
        self, clip_l: str, t5xxl: str, *, guidance: float | None = None, extras: Mapping[str, Any] | None = None
    ) -> Conditioning:
        """CLIPTextEncodeFlux: CLIP-L reads ``clip_l`` (pooled), T5 reads ``t5xxl`` (sequence)."""
        if self._recipe != "flux":
            raise ValueError(f"this CLIP holds {self._recipe} text encoders, not FLUX's")
        from .text.embeddings import PromptEmbeddings

        with _tokenizer_lock:
            embeds, pooled = encode_flux(
                self._encoders,
                _t5_tokenizer() if self._encoders.t5xxl is not None else None,
                clip_l,
                t5xxl,
                t5_length=self._t5_length,
                embeddings=PromptEmbeddings,
            )
        merged = dict(extras or {})
        if guidance is not None:
            merged[GUIDANCE_KEY] = float(guidance)
        return self._entry(embeds, pooled, merged)

    def __repr__(self) -> str:
        roles = [ROLE_NAMES[r] for r in (CLIP_L, CLIP_G, T5XXL, QWEN3) if r in self._roles]
        return (
            f"FlowClip({self._recipe!r}, {', '.join(roles)}, layer_idx={self._layer_idx}, t5_length={self._t5_length})"
        )


# --------------------------------------------------------------------------------------------
# Which encoders each loader type takes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipType:
    """One ``type`` choice of the CLIP loaders: the encoders it accepts and what it builds."""

    allowed: frozenset[str]
    required: frozenset[str]
    builds: str  # "sd1", "sdxl" (ClipModel) or a FlowClip recipe


CLIP_TYPES: dict[str, ClipType] = {
    "stable_diffusion": ClipType(frozenset({CLIP_L}), frozenset({CLIP_L}), "sd1"),
    "sdxl": ClipType(frozenset({CLIP_L, CLIP_G}), frozenset({CLIP_L, CLIP_G}), "sdxl"),
    "sd3": ClipType(frozenset({CLIP_L, CLIP_G, T5XXL}), frozenset(), "sd3"),
    "flux": ClipType(frozenset({CLIP_L, T5XXL}), frozenset(), "flux"),
    "lumina2": ClipType(frozenset({QWEN3}), frozenset({QWEN3}), "z_image"),
}
"""Supported ``type`` values. ``lumina2`` is ComfyUI's name for the Lumina-2 family, whose Z-Image
member uses Qwen3-4B (Lumina Image 2.0 itself uses Gemma 2, which sdgraph does not run)."""

KNOWN_UNSUPPORTED_TYPES = (
    "stable_cascade",
    "stable_audio",
    "mochi",
    "ltxv",
    "pixart",
    "cosmos",
    "wan",
    "hidream",
    "chroma",
    "ace",
    "omnigen2",
    "qwen_image",
    "hunyuan_image",
    "hunyuan_video",
    "flux2",
    "ovis",
    "kandinsky5",
)
"""ComfyUI ``type`` values of families sdgraph does not have yet: offered so workflows import, refused by name."""


class ClipFileError(ValueError):
    """A file does not fit the loader slot it was put in; ``input_id`` names the slot."""

    def __init__(self, input_id: str, message: str) -> None:
        super().__init__(message)
        self.input_id = input_id


def assign_roles(
    clip_type: str, node: str, found: list[tuple[str, str, EncoderInFile]]
) -> list[tuple[str, EncoderInFile]]:
    """Decide each CLIP's role and check the set fits ``clip_type``; ``found`` holds (input id, file name, encoder).

    Undecided CLIPs (widths other than 768/1280) become CLIP-L when the type takes only one CLIP; of two,
    the wider is CLIP-G. Raises :class:`ClipFileError` naming the input whose file does not belong.
    """
    spec = CLIP_TYPES[clip_type]
    undecided = [i for i, (_, _, e) in enumerate(found) if e.role == "clip"]
    result = [(input_id, enc) for input_id, _, enc in found]
    if undecided:
        clips = [i for i, (_, _, e) in enumerate(found) if e.role in ("clip", CLIP_L, CLIP_G)]
        taken = {found[i][2].role for i in clips} - {"clip"}
        if len(clips) == 1 or CLIP_G not in spec.allowed:
            roles = {i: CLIP_L for i in undecided}
        elif len(undecided) == 1:
            roles = {undecided[0]: CLIP_G if CLIP_L in taken else CLIP_L}
        else:
            ordered = sorted(undecided, key=lambda i: found[i][2].width)
            roles = {i: CLIP_L for i in ordered[:-1]} | {ordered[-1]: CLIP_G}
        for i, role in roles.items():
            result[i] = (found[i][0], found[i][2].with_role(role))
    seen: dict[str, str] = {}
    for (input_id, enc), (_, file_name, _) in zip(result, found, strict=True):
        if enc.role not in spec.allowed:
            wanted = " and ".join(ROLE_NAMES[r] for r in sorted(spec.allowed))
            raise ClipFileError(
                input_id,
                f"{file_name} is a {enc.name} text encoder, but {node} with type {clip_type!r} takes {wanted} files.",
            )
        if enc.role in seen:
            raise ClipFileError(
                input_id,
                f"{file_name} is a second {enc.name} text encoder ({seen[enc.role]} already holds one); "
                f"{node} with type {clip_type!r} needs one of each.",
            )
        seen[enc.role] = input_id
    missing = spec.required - set(seen)
    if missing:
        last = found[-1][0] if found else "clip_name"
        names = " and ".join(ROLE_NAMES[r] for r in sorted(missing))
        raise ClipFileError(last, f"{node} with type {clip_type!r} also needs a {names} file.")
    return result


def build_clip_value(
    clip_type: str, modules: Mapping[str, Any], fetch: Callable[[], Mapping[str, Any]] | None = None
) -> Any:
    """The CLIP socket value for loaded encoders by role: a ``ClipModel`` (SD1/SDXL) or a ``FlowClip``.

    ``fetch`` (the same modules, asked for again each time) makes a ``FlowClip`` that does not hold
    them itself, so the model manager can free them (see ``FlowClip``)."""
    spec = CLIP_TYPES[clip_type]
    if spec.builds in ("sd1", "sdxl"):
        from .clip import ClipModel

        clip_l = modules[CLIP_L]
        tower = getattr(clip_l, "text_model", clip_l)  # SD1/SDXL read CLIP-L unprojected, as a CLIPTextModel
        encoders = [tower] if spec.builds == "sd1" else [tower, modules[CLIP_G]]
        return ClipModel(spec.builds, encoders)

    def encoders(found: Mapping[str, Any]) -> FlowEncoders:
        return FlowEncoders(**{role: found.get(role) for role in (CLIP_L, CLIP_G, T5XXL, QWEN3)})

    if fetch is not None:
        return FlowClip(spec.builds, lambda: encoders(fetch()))
    return FlowClip(spec.builds, encoders(modules))


def encoder_dtype(role: str, stored: Any, run_dtype: Any) -> Any:
    """Precision to load an encoder in: CLIPs (small) in the run's text dtype; T5/Qwen3 (billions of
    parameters) in their stored half precision, or the run's dtype when they are stored in fp32."""
    import torch

    if role in (CLIP_L, CLIP_G) or stored == torch.float32:
        return run_dtype
    return stored


def describe_file(path: Path) -> str:
    return path.name
