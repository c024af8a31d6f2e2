"""LoRA: small low-rank weight updates, read from a file and hooked onto a model's layers.

A LoRA file holds, for some ``Linear``/``Conv2d`` layers of a UNet and its text encoders, two thin
matrices ``down`` (rank × in) and ``up`` (out × rank) and usually an ``alpha``. Applying it at strength
``s`` means using the weight ``W + s · (alpha / rank) · up @ down`` instead of ``W`` (for a conv layer,
``down`` is a conv kernel of the layer's size and ``up`` a 1×1 conv).

We never write that sum into the weights. :func:`apply_lora` turns each file entry into a
:class:`nodes.diffusion.model.WeightPatch` on the real module and returns *new handles*: a
:class:`~nodes.diffusion.model.DiffusionModel` with extra patches, and a :class:`PatchedClip`. The patches are
forward hooks that exist only while that handle samples or encodes, so the base model, the LoRA'd model
and a second LoRA'd model can all live in one graph on one copy of the weights, and nothing has to be
undone when the graph changes.

File formats read by :func:`load_lora` (``.safetensors`` only; pickles can run code when loaded):

* **kohya / sd-scripts** — ``lora_unet_<path>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``, where
  ``<path>`` is a module path with ``_`` for ``.``, in diffusers naming
  (``lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q``) or original LDM naming
  (``lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q``, ``…_in_layers_2`` for a resnet's
  first conv). Text encoders: ``lora_te_text_model_encoder_layers_0_self_attn_q_proj`` (SD1/SD2), SDXL
  ``lora_te1_…`` (CLIP-L) and ``lora_te2_…`` (OpenCLIP bigG). LoCon-style conv entries are plain
  ``lora_down``/``lora_up`` pairs on conv layers and are supported.
* **diffusers / peft** — ``unet.<module path>.lora_A.weight`` / ``.lora_B.weight``, older
  ``….lora.down.weight`` / ``….lora.up.weight``, ``….lora_linear_layer.down/up.weight`` (text encoder) and
  the attention-processor form ``….attn1.processor.to_q_lora.down.weight``; prefixes ``unet.``,
  ``text_encoder.``, ``text_encoder_2.``; an optional ``<module path>.alpha``. Also LDM paths under
  ``diffusion_model.`` (as ComfyUI saves them).

* **Flow families** (SD3/3.5, FLUX.1, Z-Image): diffusers/peft ``transformer.<module>.lora_A/B`` (and
  ``lora_transformer_<module>``), kohya ``lora_unet_<original module>`` (``double_blocks_0_img_attn_qkv``,
  ``single_blocks_0_linear1``, ``joint_blocks_0_x_block_attn_qkv``) and ComfyUI/BFL
  ``diffusion_model.<original module>``; text encoders ``text_encoder(_2/_3).``, ``lora_te1/2/3_`` and
  ``text_encoders.clip_l/clip_g/t5xxl.transformer.``. Where a key lands, fused original layers included,
  is :mod:`nodes.diffusion.lora_keys_flow`; applying them, :mod:`nodes.diffusion.lora_flow`.

Scale is ``alpha / rank`` when the file gives an alpha, else 1 (peft keeps alpha in a JSON config that
single-file LoRAs do not carry, and diffusers then uses alpha = rank).

* **LyCORIS** (kohya key naming, ``<base>.<role>``): LoCon's Tucker ``lora_mid`` (folded into the down
  kernel, so it stays a low-rank hook); **LoHa** ``hada_w1_a/b``, ``hada_w2_a/b`` (+ Tucker ``hada_t1/t2``),
  ΔW = (w1a·w1b) ⊙ (w2a·w2b) · alpha/rank; **LoKr** ``lokr_w1`` or ``lokr_w1_a/b``, ``lokr_w2`` or
  ``lokr_w2_a/b`` (+ ``lokr_t2``), ΔW = w1 ⊗ w2, times alpha/rank only when a factor is low-rank;
  **full diffs** ``diff`` / ``diff_b``; and **DoRA** (``dora_scale`` next to any of these),
  W' = W + strength · (m · (W + ΔW) / ‖W + ΔW‖ − W) with the norm per output channel (or per input
  channel when ``m`` is shaped that way). LoHa/LoKr/full ΔW are built densely once per applied patch
  (:class:`LycorisLayer`); the weights are still never written.

Not supported (the file is refused with the offending keys named, unless ``strict=False``, which skips
them and lists them in :attr:`LoraFile.ignored`): OFT/BOFT, GLoRA, (IA)³, peft's
``lora_magnitude_vector`` DoRA, norm-layer diffs and embeddings bundled into a LoRA. Keys that name a
layer the model lacks or a layer of another shape are not skipped either: :func:`apply_lora` raises
:class:`LoraMismatchError`, because a LoRA that only partly fits was made for a different model and
would silently do something else than intended.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nodes.diffusion.clip import ClipModel
from nodes.diffusion.conditioning import Conditioning
from nodes.diffusion.errors import CorruptCheckpointError, ModelError, ModelNotFoundError
from nodes.diffusion.model import DiffusionModel, WeightPatch, patches_applied

__all__ = [
    "LoraFile",
    "LoraFormatError",
    "LoraLayer",
    "LoraMismatchError",
    "LycorisLayer",
    "PatchedClip",
    "apply_lora",
    "load_lora",
]

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class LoraFormatError(ModelError):
    """The file is not a LoRA we can read: not safetensors, an unsupported adapter type, or incomplete."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"Cannot use LoRA {self.path.name!r}: {problem}")


class LoraMismatchError(ModelError):
    """The LoRA was made for a different model: some of its layers are missing or shaped differently."""

    def __init__(self, path: str | Path, family: str, problems: Sequence[str], hint: str = "") -> None:
        self.path = Path(path)
        self.family = family
        self.problems = list(problems)
        msg = f"lora {self.path.name!r} does not fit this {family} model: {'; '.join(self.problems)}."
        if hint:
            msg += f" Its metadata says it was trained for {hint}."
        msg += f" Pick a LoRA made for {family} models."
        super().__init__(msg)


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------

UNET = "unet"
TEXT_ENCODER = "text_encoder"  # SD1/SD2's only encoder, SDXL's CLIP-L
TEXT_ENCODER_2 = "text_encoder_2"  # SDXL's and the refiner's OpenCLIP bigG; SD3's CLIP-G, FLUX's T5
TEXT_ENCODER_3 = "text_encoder_3"  # SD3's T5 (kohya ``lora_te3_``, also FLUX's T5 there)


@dataclass(frozen=True, eq=False)
class LoraLayer:
    """One low-rank update as written in the file, before it is matched to a model.

    ``key`` is the file's name for the layer (e.g. ``lora_unet_…_to_q`` or ``unet.….to_q``), ``target``
    the model part (``"unet"``, ``"text_encoder"``, ``"text_encoder_2"``), ``path`` the module path with
    ``_`` for ``.`` and no ``text_model_`` prefix — the one spelling kohya and diffusers names share.
    """

    key: str
    target: str
    path: str
    down: Tensor
    up: Tensor
    alpha: float | None
    dora_scale: Tensor | None = None  # DoRA's magnitude m

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        """``alpha / rank`` (1 without alpha): how strongly the file means its update at strength 1."""
        return 1.0 if self.alpha is None else self.alpha / self.rank


@dataclass(frozen=True, eq=False)
class LycorisLayer:
    """A LyCORIS update that has no low-rank form: LoHa, LoKr or a full diff, read as its file tensors.

    :meth:`delta` builds the dense ΔW (at strength 1, ``alpha / rank`` included) once, when the LoRA is
    applied to a model; ``tensors`` maps the LyCORIS role (``hada_w1_a``, ``lokr_w2``, ``diff``, …) to
    the tensor.
    """

    key: str
    target: str
    path: str
    kind: str  # "loha" | "lokr" | "full"
    tensors: Mapping[str, Tensor]
    alpha: float | None
    dora_scale: Tensor | None = None

    @property
    def scale(self) -> float:
        """LyCORIS' ``alpha / rank``: LoHa's rank is ``w1_b``'s rows; LoKr scales only when a factor is
        low-rank (rank of the decomposed factor, w2's before w1's, as LyCORIS and ComfyUI read it); a full
        diff is never scaled."""
        t = self.tensors
        if self.alpha is None or self.kind == "full":
            return 1.0
        if self.kind == "loha":
            return self.alpha / int(t["hada_w1_b"].shape[0])
        if "lokr_w2_b" in t:
            return self.alpha / int(t["lokr_w2_b"].shape[0])
        if "lokr_w1_b" in t:
            return self.alpha / int(t["lokr_w1_b"].shape[0])
        return 1.0

    def delta(self) -> Tensor | None:
        """ΔW at strength 1 in float32, in the factors' natural shape (2-D or a 4-D kernel); ``None`` for a
        bias-only diff. The caller reshapes it to the layer's weight."""
        t = {k: v.float() for k, v in self.tensors.items()}
        if self.kind == "full":
            return t.get("diff")
        if self.kind == "loha":
            m1 = _tucker(t.get("hada_t1"), t["hada_w1_a"], t["hada_w1_b"])
            m2 = _tucker(t.get("hada_t2"), t["hada_w2_a"], t["hada_w2_b"])
            return m1 * m2 * self.scale
        w1 = t["lokr_w1"] if "lokr_w1" in t else t["lokr_w1_a"] @ t["lokr_w1_b"]
        w2 = t["lokr_w2"] if "lokr_w2" in t else _tucker(t.get("lokr_t2"), t["lokr_w2_a"], t["lokr_w2_b"])
        if w2.ndim == 4:
            w1 = w1.reshape(*w1.shape[:2], 1, 1)
        return torch.kron(w1.contiguous(), w2.contiguous()) * self.scale

    @property
    def bias(self) -> Tensor | None:
        b = self.tensors.get("diff_b")
        return None if b is None else b.float()


def _tucker(core: Tensor | None, a: Tensor, b: Tensor) -> Tensor:
    """``a @ b``, or with a Tucker core (LyCORIS' CP form for convs) the kernel
    ``ΔW[o, i, k, l] = Σ_{p,q} core[p, q, k, l] · a[p, o] · b[q, i]`` — LyCORIS stores both factors as
    (rank, dim) when a core is present."""
    if core is None:
        return a.flatten(1) @ b.flatten(1)
    return torch.einsum("pqkl,po,qi->oikl", core, a.flatten(1), b.flatten(1))


AnyLayer = LoraLayer | LycorisLayer

# LyCORIS roles: every tensor a LoHa / LoKr / full-diff entry may carry, and which ones each needs.
_LYCORIS_ROLES = (
    "hada_w1_a",
    "hada_w1_b",
    "hada_w2_a",
    "hada_w2_b",
    "hada_t1",
    "hada_t2",
    "lokr_w1",
    "lokr_w1_a",
    "lokr_w1_b",
    "lokr_w2",
    "lokr_w2_a",
    "lokr_w2_b",
    "lokr_t2",
    "diff",
    "diff_b",
)


def _lycoris_kind(roles: set[str]) -> str | None:
    """The LyCORIS kind a complete set of roles makes, ``None`` if it is incomplete or mixed."""
    if roles <= {"diff", "diff_b"} and roles:
        return "full"
    if all(r.startswith("hada_") for r in roles):
        need = {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"}
        tucker = roles & {"hada_t1", "hada_t2"}
        return "loha" if need <= roles and tucker in (set(), {"hada_t1", "hada_t2"}) else None
    if all(r.startswith("lokr_") for r in roles):
        w1 = ("lokr_w1" in roles) != ({"lokr_w1_a", "lokr_w1_b"} <= roles)
        w2 = ("lokr_w2" in roles) != ({"lokr_w2_a", "lokr_w2_b"} <= roles)
        return "lokr" if w1 and w2 and ("lokr_t2" not in roles or "lokr_w2_a" in roles) else None
    return None


@dataclass(frozen=True, eq=False)
class LoraFile:
    """The readable contents of one LoRA file; matched against a model only by :func:`apply_lora`."""

    path: Path
    layers: tuple[AnyLayer, ...]
    format: str  # "kohya", "diffusers" or "kohya+diffusers"
    metadata: Mapping[str, str] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()  # keys skipped with strict=False

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def trained_for(self) -> str:
        """What the training tool wrote as the base model ("" if nothing), for error messages."""
        md = self.metadata
        for key in ("modelspec.architecture", "ss_base_model_version", "ss_sd_model_name"):
            if md.get(key):
                return md[key]
        if md.get("ss_v2") == "True":
            return "sd_v2"
        return ""

    def targets(self) -> set[str]:
        return {layer.target for layer in self.layers}


# (prefix, target, the rest is a dotted module path)
_PREFIXES: tuple[tuple[str, str, bool], ...] = (
    ("lora_unet_", UNET, False),
    ("lora_te1_", TEXT_ENCODER, False),
    ("lora_te2_", TEXT_ENCODER_2, False),
    ("lora_te3_", TEXT_ENCODER_3, False),
    ("lora_te_", TEXT_ENCODER, False),
    ("lora_transformer_", UNET, False),  # diffusers names of a flow transformer, kohya-spelled
    ("unet.", UNET, True),
    ("transformer.", UNET, True),  # diffusers / peft, flow families
    ("text_encoder.", TEXT_ENCODER, True),
    ("text_encoder_2.", TEXT_ENCODER_2, True),
    ("text_encoder_3.", TEXT_ENCODER_3, True),
    ("text_encoders.clip_l.transformer.", TEXT_ENCODER, True),  # ComfyUI's names in flow LoRAs
    ("text_encoders.clip_g.transformer.", TEXT_ENCODER_2, True),
    ("text_encoders.t5xxl.transformer.", TEXT_ENCODER_3, True),
    ("text_encoders.qwen3_4b.transformer.", TEXT_ENCODER, True),  # Z-Image's only encoder
    ("model.diffusion_model.", UNET, True),
    ("diffusion_model.", UNET, True),
)
_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".lora_down.weight", "down"),
    (".lora_up.weight", "up"),
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora.down.weight", "down"),
    (".lora.up.weight", "up"),
    (".lora_linear_layer.down.weight", "down"),
    (".lora_linear_layer.up.weight", "up"),
    (".lora_mid.weight", "mid"),
    (".dora_scale", "dora_scale"),
    *((f".{role}", role) for role in _LYCORIS_ROLES),
)
_PROCESSOR = re.compile(r"(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight")
# Markers of adapter types we do not implement, for a message that says what the file is.
_UNSUPPORTED_KINDS: tuple[tuple[str, str], ...] = (
    ("oft_", "OFT"),
    ("boft_", "BOFT"),
    (".on_input", "(IA)³"),
    ("lora_magnitude_vector", "peft DoRA (lora_magnitude_vector)"),
    (".w_norm", "norm-layer diff"),
    (".b_norm", "norm-layer diff"),
    (".a1.weight", "GLoRA"),
    (".a2.weight", "GLoRA"),
    (".b1.weight", "GLoRA"),
    ("lora_embedding_", "embedding LoRA"),
)


def load_lora(path: str | Path, *, strict: bool = True) -> LoraFile:
    """Read a LoRA ``.safetensors`` file in kohya or diffusers/peft naming.

    Only safetensors: the other LoRA containers are pickles, which can run code when loaded. Keys we do
    not understand raise :class:`LoraFormatError` naming them (a LoHa or DoRA applied as if it were a
    plain LoRA would look plausible and be wrong); ``strict=False`` skips them instead, listing them in
    :attr:`LoraFile.ignored`, as long as something usable is left.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        why = (
            "pickle files (.ckpt/.pt/.pth/.bin) can run code when loaded"
            if path.suffix.lower() in (".ckpt", ".pt", ".pth", ".bin", ".pkl")
            else f"{path.suffix or 'files without an extension'} is not a LoRA format"
        )
        raise LoraFormatError(path, f"only .safetensors LoRA files are read; {why}. Convert it to .safetensors.")
    if not path.is_file():
        raise ModelNotFoundError("loras", path.name, reason=f"{path} does not exist")
    tensors, metadata = _read_safetensors(path)

    parts: dict[str, dict[str, tuple[str, Tensor]]] = {}  # base → role → (file key, tensor)
    alphas: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, tensor in tensors.items():
        if key.endswith(".alpha"):
            alphas[key.removesuffix(".alpha")] = tensor
            continue
        base_role = _split_key(key)
        if base_role is None:
            unknown.append(key)
            continue
        base, role = base_role
        parts.setdefault(base, {})[role] = (key, tensor)

    layers: list[AnyLayer] = []
    formats: set[str] = set()
    incomplete: list[str] = []
    for base, pair in parts.items():
        target_path = _split_base(base)
        if target_path is None:
            unknown.extend(key for key, _ in pair.values())
            continue
        target, module_path, fmt = target_path
        roles = set(pair) - {"dora_scale"}
        dora = pair["dora_scale"][1] if "dora_scale" in pair else None
        if roles <= {"down", "up", "mid"}:
            if not {"down", "up"} <= roles:
                incomplete.append(base)
                continue
            down, up = pair["down"][1], pair["up"][1]
            if down.ndim not in (2, 4) or up.ndim not in (2, 4) or up.shape[1] != down.shape[0]:
                raise LoraFormatError(
                    path,
                    f"{base}: down {tuple(down.shape)} and up {tuple(up.shape)} are not a low-rank pair "
                    "(up's second dimension must equal down's first)",
                )
            if "mid" in pair:
                down = _tucker_down(path, base, pair["mid"][1], down)
            alpha = alphas.pop(base, None)
            formats.add(fmt)
            layers.append(
                LoraLayer(
                    base, target, module_path, down, up, None if alpha is None else float(alpha.float().item()), dora
                )
            )
            continue
        kind = _lycoris_kind(roles)
        if kind is None:
            incomplete.append(base)
            continue
        alpha = alphas.pop(base, None)
        formats.add(fmt)
        tensors = {role: tensor for role, (_, tensor) in pair.items() if role != "dora_scale"}
        a = None if alpha is None else float(alpha.float().item())
        layers.append(LycorisLayer(base, target, module_path, kind, tensors, a, dora))
    if incomplete:
        raise LoraFormatError(
            path,
            f"{len(incomplete)} layer(s) are incomplete: only one of their two matrices, or a LoHa/LoKr "
            f"without all its factors (first: {incomplete[0]}: {', '.join(sorted(parts[incomplete[0]]))})",
        )
    unknown.extend(f"{base}.alpha" for base in alphas)  # an alpha without its layer
    if unknown and (strict or not layers):
        raise LoraFormatError(path, _describe_unknown(unknown, bool(layers)))
    if not layers:
        raise LoraFormatError(path, "the file contains no LoRA layers")
    return LoraFile(
        path=path,
        layers=tuple(layers),
        format="+".join(sorted(formats)),
        metadata=metadata,
        ignored=tuple(sorted(unknown)),
    )


def _tucker_down(path: Path, base: str, mid: Tensor, down: Tensor) -> Tensor:
    """LoCon's Tucker form (``lora_mid``, a rank×rank kernel between two 1×1 convs) folded into the down
    kernel: ``down'[i, c, k, l] = Σ_j mid[i, j, k, l] · down[j, c]`` — still rank × in × kh × kw, so the
    patch stays a cheap low-rank hook (the layer's stride and padding apply to it)."""
    if mid.ndim != 4 or mid.shape[1] != down.shape[0] or (down.ndim == 4 and tuple(down.shape[2:]) != (1, 1)):
        raise LoraFormatError(
            path, f"{base}: lora_mid {tuple(mid.shape)} does not fit lora_down {tuple(down.shape)} (LoCon Tucker form)"
        )
    return torch.einsum("ijkl,jc->ickl", mid.float(), down.flatten(1).float()).to(down.dtype)


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a mapping
    except Exception as exc:  # SafetensorError, OSError, … : all mean "not a readable file"
        raise CorruptCheckpointError(path, f"not a readable safetensors file ({exc})") from exc
    return tensors, metadata


def _split_key(key: str) -> tuple[str, str] | None:
    """``…to_q.lora_down.weight`` → (``…to_q``, ``"down"``); ``None`` for keys that are not LoRA matrices."""
    for suffix, role in _SUFFIXES:
        if key.endswith(suffix):
            return key.removesuffix(suffix), role
    if m := _PROCESSOR.fullmatch(key):
        module = f"{m[1]}.{m[2]}" + (".0" if m[2] == "to_out" else "")
        return module, m[3]
    return None


def _split_base(base: str) -> tuple[str, str, str] | None:
    """A layer's key without suffix → (target, module path in ``_`` spelling, format), ``None`` if unknown."""
    for prefix, target, dotted in _PREFIXES:
        if base.startswith(prefix):
            rest = base.removeprefix(prefix)
            if dotted:
                rest = rest.replace(".", "_")
            if target != UNET:
                rest = rest.removeprefix("text_model_")
            return target, rest, "diffusers" if dotted else "kohya"
    return None


def _describe_unknown(keys: Sequence[str], has_layers: bool) -> str:
    kinds = sorted({kind for key in keys for marker, kind in _UNSUPPORTED_KINDS if marker in key})
    shown = ", ".join(repr(k) for k in keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
    msg = f"{len(keys)} key(s) are not plain LoRA weights: {shown}"
    if kinds:
        msg += f". They look like {' / '.join(kinds)}, which is not supported"
        msg += " (LoRA, LoCon, LoHa, LoKr, DoRA and full diffs for SD1/SD2/SDXL, SD3, FLUX.1 and Z-Image are)"
    if has_layers:
        msg += ". Load it with strict=False to use only its plain LoRA layers"
    return msg


# --------------------------------------------------------------------------------------------
# Matching to a model and applying
# --------------------------------------------------------------------------------------------

_PatchableModule = torch.nn.Linear | torch.nn.Conv2d


class PatchedClip(ClipModel):
    """A :class:`ClipModel` whose text encoders carry LoRA patches while it encodes.

    It is a ``ClipModel`` (same family, encoders, layer setting, tokenizer) so every node that takes a
    CLIP takes it; the patches are hooked in only inside :meth:`encode`, so the unpatched handle it was
    made from keeps encoding as before. ``with_last_layer`` keeps the patches; applying another LoRA adds
    to them.
    """

    __slots__ = ("_patches",)

    def __init__(self, base: ClipModel, patches: Iterable[WeightPatch]) -> None:
        super().__init__(base.family, base.text_encoders, base.layer_idx)
        inherited = base.patches if isinstance(base, PatchedClip) else ()
        self._patches: tuple[WeightPatch, ...] = (*inherited, *patches)

    @property
    def patches(self) -> tuple[WeightPatch, ...]:
        return self._patches

    def with_last_layer(self, stop_at_clip_layer: int) -> PatchedClip:
        return PatchedClip(ClipModel.with_last_layer(self, stop_at_clip_layer), self._patches)

    def encode(self, text: str, extras: Mapping[str, Any] | None = None) -> Conditioning:
        with patches_applied(self._patches):
            return super().encode(text, extras)

    def __repr__(self) -> str:
        return (
            f"PatchedClip({self.family!r}, {len(self.text_encoders)} encoder(s), layer_idx={self.layer_idx}, "
            f"{len(self._patches)} patch(es))"
        )


def apply_lora(
    model: DiffusionModel,
    clip: Any,
    lora: LoraFile,
    strength_model: float,
    strength_clip: float,
) -> tuple[DiffusionModel, Any]:
    """LoraLoader: new MODEL and CLIP handles carrying ``lora`` at the given strengths.

    ``clip`` is a :class:`ClipModel` (SD families), a ``FlowClip`` (SD3, FLUX, Z-Image) or ``None``
    (model-only LoRA loading; the file's text-encoder layers are then not used). A strength of 0 returns
    that input itself (nothing is checked or hooked). Every layer of the parts being patched must exist
    in the model with the LoRA's shapes, else :class:`LoraMismatchError` lists what did not fit — a LoRA
    for SDXL on an SD1 model, or for SD1 on FLUX, fails here instead of producing noise.
    """
    from nodes.diffusion.text_encoders import FlowClip

    model_layers = [ly for ly in lora.layers if ly.target == UNET] if strength_model else []
    clip_layers = [ly for ly in lora.layers if ly.target != UNET] if strength_clip and clip is not None else []
    if clip is None and strength_model and not model_layers:
        raise LoraMismatchError(
            lora.path,
            model.family,
            ["it only changes the text encoders, and no CLIP was given (use the LoRA loader with a CLIP input)"],
        )

    problems: list[str] = []
    model_patches: list[WeightPatch] = []
    if model_layers:
        if model.is_transformer:
            from nodes.diffusion.lora_flow import transformer_patches

            model_patches, found = transformer_patches(model.unet, model_layers, float(strength_model))
            problems += _problems("transformer", model_layers, found)
        else:
            model_patches, found = _patches_for(model_layers, _unet_modules(model.unet), float(strength_model))
            problems += _problems("UNet", model_layers, found)
    new_clip = clip
    if clip_layers and isinstance(clip, FlowClip):
        from nodes.diffusion.lora_flow import apply_to_flow_clip

        new_clip, clip_problems = apply_to_flow_clip(clip, clip_layers, float(strength_clip), lora.name)
        problems += clip_problems
    elif clip_layers:
        clip_patches, clip_problems = _clip_patches(clip, clip_layers, float(strength_clip))
        problems += clip_problems
        new_clip = PatchedClip(clip, clip_patches) if clip_patches else clip
    if problems:
        family = model.family if model_layers or clip is None else clip.family
        raise LoraMismatchError(lora.path, family, problems, lora.trained_for)

    new_model = model.with_patches(model_patches) if model_patches else model
    return new_model, new_clip


def _clip_patches(clip: ClipModel, layers: Sequence[AnyLayer], strength: float) -> tuple[list[WeightPatch], list[str]]:
    """The hooks for an SD-family CLIP's encoders, and what did not fit."""
    slots = _encoder_slots(clip.family)
    patches: list[WeightPatch] = []
    problems: list[str] = []
    for target in (TEXT_ENCODER, TEXT_ENCODER_2, TEXT_ENCODER_3):
        group = [ly for ly in layers if ly.target == target]
        label = "text encoder" if target == TEXT_ENCODER else f"text encoder {target[-1]}"
        if not group:
            continue
        if target not in slots:
            problems.append(f"its {len(group)} {label} layers have no {label} in a {clip.family} CLIP")
            continue
        found_patches, found = _patches_for(group, _text_modules(clip.text_encoders[slots.index(target)]), strength)
        patches += found_patches
        problems += _problems(label, group, found)
    return patches, problems


def _encoder_slots(family: str) -> list[str]:
    from nodes.diffusion.checkpoint.detect import expected_text_encoders

    return expected_text_encoders(family)


def _unet_modules(unet: torch.nn.Module) -> dict[str, tuple[str, _PatchableModule]]:
    """Every Linear/Conv2d of the UNet under its diffusers *and* its LDM name, ``_``-spelled.

    kohya files use either naming (and sd-scripts' SDXL files the LDM one); the LDM names come from the
    same layout table the checkpoint writer uses, so both spellings resolve to the one real module.
    """
    from nodes.diffusion.checkpoint.ldm_layout import unet_to_ldm
    from nodes.families.ldm import UNET_PREFIX

    config = getattr(unet, "config", None)
    table: dict[str, tuple[str, _PatchableModule]] = {}
    for name, module in unet.named_modules():
        if not isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
            continue
        table[name.replace(".", "_")] = (name, module)
        if config is None:
            continue
        try:
            # Only the key is renamed: a meta tensor, so a prepacked layer's weight is not unpacked for it.
            shape, dtype, _ = _weight_meta(module)
            (ldm_key,) = unet_to_ldm({f"{name}.weight": torch.empty(shape, dtype=dtype, device="meta")}, config)
        except (ValueError, KeyError):
            continue  # a layer the LDM layout has no name for: reachable by its diffusers name only
        ldm_name = ldm_key.removeprefix(UNET_PREFIX).removesuffix(".weight")
        table.setdefault(ldm_name.replace(".", "_"), (name, module))
    return table


def _text_modules(encoder: torch.nn.Module) -> dict[str, tuple[str, _PatchableModule]]:
    """Linear layers of a transformers CLIP text model, ``_``-spelled without the ``text_model.`` prefix.

    transformers 5 dropped the ``text_model`` level from ``CLIPTextModel`` but kept it in
    ``CLIPTextModelWithProjection``; LoRA files always include it. Stripping it on both sides makes either
    encoder class match either spelling.
    """
    table: dict[str, tuple[str, _PatchableModule]] = {}
    for name, module in encoder.named_modules():
        if isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
            table[name.removeprefix("text_model.").replace(".", "_")] = (name, module)
    return table


@dataclass
class _Found:
    missing: list[AnyLayer] = field(default_factory=list)
    misfit: list[str] = field(default_factory=list)


def _patches_for(
    layers: Sequence[AnyLayer], modules: Mapping[str, tuple[str, _PatchableModule]], strength: float
) -> tuple[list[WeightPatch], _Found]:
    patches: list[WeightPatch] = []
    found = _Found()
    for layer in layers:
        entry = modules.get(layer.path)
        if entry is None:
            found.missing.append(layer)
            continue
        name, module = entry
        patch = _patch(module, layer, strength)
        if patch is None:
            found.misfit.append(f"{name}: LoRA {_lora_shape(layer)}, layer {_module_shape(module)}")
            continue
        patches.append(patch)
    return patches, found


def _patch(module: _PatchableModule, layer: AnyLayer, strength: float) -> WeightPatch | None:
    """The hook for one file entry on its module, ``None`` if the shapes do not fit.

    Low-rank entries stay two thin tensors; LoHa/LoKr/full entries get their dense ΔW built here, once,
    in the weight's shape (the weight itself is not copied). With a DoRA magnitude the strength moves
    from the update to the DoRA blend (ΔW is used at strength 1 inside the norm, as LyCORIS defines it).
    """
    shape, dtype, device = _weight_meta(module)
    store = dtype if dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64) else torch.float32
    down = up = delta = bias = None
    if isinstance(layer, LoraLayer):
        fitted = _fit(module, layer.down, layer.up)
        if fitted is None:
            return None
        down, up = (t.to(device) for t in fitted)
        dense = (
            (up.flatten(1).float() @ down.flatten(1).float()) * layer.scale if layer.dora_scale is not None else None
        )
    else:
        raw = layer.delta()
        if raw is not None:
            if raw.shape[0] != shape[0] or raw.numel() != shape.numel():
                return None
            delta = raw.reshape(shape).to(device=device, dtype=store)
        if layer.bias is not None:
            if module.bias is None or layer.bias.numel() != module.bias.numel():
                return None
            bias = layer.bias.flatten().to(device=device, dtype=store)
        dense = None if delta is None else delta.float()
    file_scale = layer.scale if isinstance(layer, LoraLayer) else 1.0
    if layer.dora_scale is None:
        return WeightPatch(module, down, up, file_scale * strength, delta=delta, delta_bias=bias)
    g = _dora_factor(module.weight, dense, layer.dora_scale)
    if g is None:
        return None
    return WeightPatch(
        module, down, up, file_scale, delta=delta, delta_bias=bias, dora=g.to(device), dora_strength=strength
    )


def _weight_meta(module: torch.nn.Module) -> tuple[torch.Size, torch.dtype, torch.device]:
    """Shape, dtype and device of a layer's weight without reading it: a GGUF or fp8 layer's ``weight`` is
    dequantized on each access (:class:`nodes.diffusion.stored_linear.StoredWeightLinear`), a prepacked
    layer's is unpacked on each access (`nodes.diffusion.prepack`)."""
    from nodes.diffusion import prepack
    from nodes.diffusion.stored_linear import StoredWeightLinear

    if isinstance(module, StoredWeightLinear) or prepack.is_packed(module):
        return module.weight_meta()  # type: ignore[operator]
    weight = module.weight
    assert isinstance(weight, Tensor)
    return weight.shape, weight.dtype, weight.device


def _dora_factor(weight: Tensor, dense: Tensor | None, magnitude: Tensor) -> Tensor | None:
    """DoRA's ``m / ‖W + ΔW‖``: the norm over everything but the output channel when ``m`` has one entry
    per output channel (LyCORIS' default ``wd_on_out`` and peft's only form), else over everything but
    the input channel; shaped to broadcast against the weight. ``None`` if ``m`` fits neither axis."""
    w = weight.detach().float()
    if dense is not None:
        w = w + dense.reshape(w.shape)
    m = magnitude.float().to(w.device)
    out_ch, in_ch = w.shape[0], w.shape[1]
    eps = torch.finfo(torch.float32).eps
    if m.numel() == out_ch and m.shape[0] == out_ch:
        norm = w.reshape(out_ch, -1).norm(dim=1)
        factor: Tensor = (m.flatten() / (norm + eps)).reshape(out_ch, *([1] * (w.ndim - 1)))
        return factor
    if m.numel() == in_ch:
        norm = w.transpose(0, 1).reshape(in_ch, -1).norm(dim=1)
        factor = (m.flatten() / (norm + eps)).reshape(1, in_ch, *([1] * (w.ndim - 2)))
        return factor
    return None


def _problems(label: str, layers: Sequence[AnyLayer], found: _Found) -> list[str]:
    out = []
    n = len(layers)
    if found.missing:
        msg = f"{len(found.missing)} of {n} {label} layers are not in the model (first: {found.missing[0].key})"
        if 2 * len(found.missing) > n and label in ("UNet", "transformer"):  # mostly foreign: say whose
            from nodes.diffusion.lora_keys_flow import lora_kind_guess

            kind = lora_kind_guess([ly.path for ly in layers])
            msg += f"; the file's layers are those of {kind}" if kind else ""
        out.append(msg)
    if found.misfit:
        out.append(f"{len(found.misfit)} of {n} {label} layers have other shapes (first: {found.misfit[0]})")
    return out


def _fit(module: _PatchableModule, down: Tensor, up: Tensor) -> tuple[Tensor, Tensor] | None:
    """The pair reshaped for the module's hook (2-D for Linear, 4-D for Conv2d), or ``None`` if it does not fit.

    A 1×1 conv and a Linear are the same map, and files disagree about which they store (SD1's
    ``proj_in`` is a 1×1 conv, SD2/SDXL's a Linear), so 1×1 kernels are converted either way. A conv
    LoRA's down kernel must match the layer's kernel because the hook runs it with the layer's stride and
    padding.
    """
    if isinstance(module, torch.nn.Conv2d):
        if down.ndim == 2:
            down = down[:, :, None, None]
        if up.ndim == 2:
            up = up[:, :, None, None]
        ok = (
            module.groups == 1
            and tuple(module.dilation) == (1, 1)
            and down.shape[1] == module.in_channels
            and tuple(down.shape[2:]) == tuple(module.kernel_size)
            and up.shape[0] == module.out_channels
            and tuple(up.shape[2:]) == (1, 1)
        )
        return (down, up) if ok else None
    if down.ndim == 4:
        if tuple(down.shape[2:]) != (1, 1):
            return None
        down = down.flatten(1)
    if up.ndim == 4:
        if tuple(up.shape[2:]) != (1, 1):
            return None
        up = up.flatten(1)
    ok = down.shape[1] == module.in_features and up.shape[0] == module.out_features
    return (down, up) if ok else None


def _lora_shape(layer: AnyLayer) -> str:
    if isinstance(layer, LycorisLayer):
        delta = layer.delta()
        return f"{layer.kind} ΔW {tuple(delta.shape) if delta is not None else 'bias only'}"
    kernel = f" {layer.down.shape[2]}×{layer.down.shape[3]}" if layer.down.ndim == 4 else ""
    return f"{layer.down.shape[1]}→{layer.rank}→{layer.up.shape[0]}{kernel}"


def _module_shape(module: _PatchableModule) -> str:
    if isinstance(module, torch.nn.Conv2d):
        kh, kw = module.kernel_size
        return f"Conv2d {module.in_channels}→{module.out_channels} {kh}×{kw}"
    return f"Linear {module.in_features}→{module.out_features}"
