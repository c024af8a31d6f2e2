"""ControlNet for the UNet families (SD 1.x, SD 2.x, SDXL): files, the CONTROL_NET value, and the
residuals a sampler adds to the UNet.

A ControlNet is a trainable copy of the UNet's encoder (input blocks and middle block) plus a small
convolutional encoder for the control image (``controlnet_cond_embedding``, LDM ``input_hint_block``)
and one zero-initialised 1×1 convolution per skip connection (``controlnet_down_blocks`` /
``zero_convs``) and for the middle block (``controlnet_mid_block`` / ``middle_block_out``). Its
outputs are added to the UNet's skip connections and middle block; diffusers' ``ControlNetModel``
computes them and its ``UNet2DConditionModel`` takes them as ``down_block_additional_residuals`` /
``mid_block_additional_residual``.

Files come in three layouts, all read here without diffusers' network-bound ``from_single_file``:

* original single files (lllyasviel's ControlNet 1.0/1.1): LDM names, with or without ``control_model.``;
* diffusers-layout single files (``controlnet_cond_embedding.*``, ``down_blocks.*``);
* diffusers folders (``config.json`` + ``diffusion_pytorch_model.safetensors``).

The architecture of a single file is read from its shapes with the UNet reader
(``detect.derive_unet_config(encoder_only=True)``); a diffusers-layout file's names are first mapped
to the LDM names with the same key map the checkpoint writer uses (``ldm_layout``), so one reader and
one key map serve both directions.

ControlNet Union/ProMax (xinsir's ``controlnet-union-sdxl-1.0``, diffusers' ``ControlNetUnionModel``) is the
same network plus a small condition transformer: the control image's features, with a learnt embedding of
the chosen control type (``task_embedding``), and the noisy latent's features go through it
(``transformer_layes``) and a linear (``spatial_ch_projs``) gives a per-channel bias added to the image
features; a one-hot vector of the chosen types is embedded like the size ids (``control_add_embedding``)
and added to the time embedding. Its files are xinsir's diffusers-layout ones; the union part's sizes
are read from those weights (see :func:`union_config`). Which type a union model applies is set by
SetUnionControlNetType (:data:`UNION_TYPE_INDEX`); left on "auto" it runs as ComfyUI runs it, with an
all-zero type vector and the image features added without the transformer's bias.

Applying a ControlNet (ControlNetApply/ControlNetApplyAdvanced) attaches a :class:`ControlHint` to
every conditioning entry under :data:`CONTROL_KEY`. Hints form a chain through ``previous`` (stacking
ControlNets, as ComfyUI does), and the residuals of every hint active at the current σ are summed, as
diffusers' ``MultiControlNetModel`` sums them.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nodes import families
from nodes.diffusion.checkpoint.ldm_layout import _UNET_FIXED, _unet_key
from nodes.diffusion.errors import ModelError

CONTROL_KEY = "control"
"""``CondEntry.extras`` key holding the newest :class:`ControlHint` of an entry (older ones via ``previous``)."""
LDM_PREFIX = "control_model."
TRANSFORMER_FAMILIES = ("flux", "sd3", "z_image")
"""Families whose ControlNets are loaded and run by ``nodes.diffusion.dit.controlnet_files`` / ``.controlnet``."""
_UNION_MARKERS = ("task_embedding", "control_add_embedding", "transformer_layes.", "spatial_ch_projs")
UNION_CLASS = "ControlNetUnionModel"
UNION_HEADS = 8
"""Heads of the union condition transformer: not stored in the weights; xinsir's models (and ComfyUI) use 8."""
UNION_TYPE_INDEX = {
    "openpose": 0,
    "depth": 1,
    "hed/pidi/scribble/ted": 2,
    "canny/lineart/anime_lineart/mlsd": 3,
    "normal": 4,
    "segment": 5,
    "tile": 6,
    "repaint": 7,
}
"""SetUnionControlNetType's names -> the control-type index a union model gets: xinsir's order (diffusers'
``control_mode``), the one ComfyUI passes to every union ControlNet, FLUX.1 ones included."""

Shapes = Mapping[str, tuple[int, ...]]


class ControlNetFileError(ModelError):
    """A file in models/controlnet that cannot be used as a ControlNet (the message says why)."""


# --------------------------------------------------------------------------------------------
# Key layouts
# --------------------------------------------------------------------------------------------


def controlnet_key_to_ldm(key: str, layers_per_block: int, hint_blocks: int) -> str:
    """A diffusers ``ControlNetModel`` weight name -> its name in the original layout (no prefix)."""
    module, _, param = key.rpartition(".")
    if module == "controlnet_cond_embedding.conv_in":
        return f"input_hint_block.0.{param}"
    if module == "controlnet_cond_embedding.conv_out":
        return f"input_hint_block.{2 * (hint_blocks + 1)}.{param}"
    if m := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)", module):
        return f"input_hint_block.{2 * (int(m[1]) + 1)}.{param}"
    if m := re.fullmatch(r"controlnet_down_blocks\.(\d+)", module):
        return f"zero_convs.{m[1]}.0.{param}"
    if module == "controlnet_mid_block":
        return f"middle_block_out.0.{param}"
    if module in _UNET_FIXED or key.startswith(("down_blocks.", "mid_block.")):
        return _unet_key(key, layers_per_block, [])
    raise ValueError(f"ControlNet weight {key!r} has no place in the original layout")


def _diffusers_layout_numbers(keys: Sequence[str]) -> tuple[int, int]:
    """(layers_per_block, number of cond-embedding blocks) of diffusers-layout ControlNet weights."""
    resnets = {int(m[1]) for k in keys if (m := re.match(r"down_blocks\.0\.resnets\.(\d+)\.", k))}
    hint = {int(m[1]) for k in keys if (m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.", k))}
    return len(resnets), len(hint)


def controlnet_to_ldm(state_dict: Mapping[str, Tensor], *, prefix: str = LDM_PREFIX) -> dict[str, Tensor]:
    """diffusers ``ControlNetModel`` weights -> the original single-file layout (lllyasviel's names)."""
    lpb, hint = _diffusers_layout_numbers(list(state_dict))
    return {prefix + controlnet_key_to_ldm(k, lpb, hint): v for k, v in state_dict.items()}


def _layout(shapes: Shapes, path: Path) -> str:
    """``"ldm"`` (with the prefix found) or ``"diffusers"``; anything else is refused with a reason."""
    keys = list(shapes)
    if "controlnet_cond_embedding.conv_in.weight" in shapes:
        return "diffusers"
    if is_union(shapes):
        raise ControlNetFileError(
            f"{path.name} is a ControlNet Union/ProMax but not in diffusers' layout (no controlnet_cond_embedding "
            "weights); sdgraph reads xinsir's diffusers-layout files and folders"
        )
    for prefix in (LDM_PREFIX, ""):
        if prefix + "input_hint_block.0.weight" in shapes and prefix + "zero_convs.0.0.weight" in shapes:
            return prefix
    if any(k.startswith("model.diffusion_model.") for k in keys):
        raise ControlNetFileError(f"{path.name} is a whole checkpoint, not a ControlNet; put it in models/checkpoints")
    if any("lora" in k.lower() for k in keys):
        raise ControlNetFileError(f"{path.name} is a LoRA, not a ControlNet; put it in models/loras")
    tops = sorted({k.split(".")[0] for k in keys})[:6]
    raise ControlNetFileError(
        f"{path.name} is not a ControlNet sdgraph knows (no input_hint_block/zero_convs, controlnet_cond_embedding "
        f"or controlnet_blocks weights; top-level names are {tops})"
    )


def _ldm_shapes(shapes: Shapes, path: Path) -> tuple[dict[str, tuple[int, ...]], str]:
    """The shapes under original-layout names without prefix, and the layout they came in."""
    layout = _layout(shapes, path)
    if layout == "diffusers":
        lpb, hint = _diffusers_layout_numbers(list(shapes))
        out: dict[str, tuple[int, ...]] = {}
        for k, v in shapes.items():
            try:
                out[controlnet_key_to_ldm(k, lpb, hint)] = v
            except ValueError:
                continue  # a weight sdgraph does not use; the load step reports missing ones
        return out, layout
    return {k[len(layout) :]: v for k, v in shapes.items() if k.startswith(layout)}, layout


def is_union(shapes: Shapes) -> bool:
    """Whether these weights are a ControlNet Union/ProMax (the condition transformer's names)."""
    return any(marker in k for k in shapes for marker in _UNION_MARKERS)


# --------------------------------------------------------------------------------------------
# Architecture from shapes
# --------------------------------------------------------------------------------------------


def _controlnet_params(union: bool = False) -> set[str]:
    import diffusers

    cls = diffusers.ControlNetUnionModel if union else diffusers.ControlNetModel
    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def union_config(shapes: Shapes, path: Path, heads: int = UNION_HEADS) -> dict[str, Any]:
    """The ``ControlNetUnionModel`` settings of a union ControlNet's weights: the number of control types
    and the transformer's width from ``task_embedding``, its depth from ``transformer_layes``, the type
    embedding's width from ``control_add_embedding`` (it is also the size ids' width); ``heads`` is not
    in the weights."""
    need = ("task_embedding", "spatial_ch_projs.weight", "control_add_embedding.linear_1.weight")
    missing = [k for k in need if k not in shapes]
    if missing:
        raise ControlNetFileError(
            f"{path.name} is a ControlNet Union/ProMax without its {', '.join(missing)} weights (an incomplete file)"
        )
    types, width = shapes["task_embedding"]
    layers = {int(m[1]) for k in shapes if (m := re.match(r"transformer_layes\.(\d+)\.", k))}
    type_width, rest = divmod(int(shapes["control_add_embedding.linear_1.weight"][1]), int(types))
    if rest or width % heads:
        raise ControlNetFileError(f"{path.name}: its ControlNet Union weights do not fit together")
    return {
        "num_control_type": int(types),
        "num_trans_channel": int(width),
        "num_trans_head": heads,
        "num_trans_layer": len(layers),
        "num_proj_channel": int(shapes["spatial_ch_projs.weight"][0]),
        "addition_time_embed_dim": type_width,
    }


def family_of_config(config: Mapping[str, Any]) -> str:
    """The UNet family a ControlNet belongs to, from its conditioning width and size embedding: the
    family whose UNet has exactly these, else (a width no released model has) SDXL for a ControlNet
    with the size embedding and SD 1.x without. Whether it fits a model is decided by :func:`misfit`
    on the real widths, not by this name."""
    context = config.get("cross_attention_dim")
    size_embedding = config.get("addition_embed_type") == "text_time"
    found = families.recognise_unet_signature(int(context) if context else None, size_embedding)
    if found is not None:
        return found.name
    return "sdxl" if size_embedding else "sd1"


def derive_controlnet_config(shapes: Shapes, path: Path) -> tuple[str, dict[str, Any], str]:
    """(family, ``ControlNetModel`` config, layout) of a single file, from its tensor shapes."""
    from nodes.diffusion.checkpoint.detect import base_config, derive_unet_config

    ldm, layout = _ldm_shapes(shapes, path)
    context = next((s[1] for k, s in ldm.items() if k.endswith(".attn2.to_k.weight")), None)
    family = family_of_config(
        {"cross_attention_dim": context, "addition_embed_type": "text_time" if "label_emb.0.0.weight" in ldm else None}
    )
    pooled = None
    if "label_emb.0.0.weight" in ldm:
        # The file does not say how wide the pooled text vector is (the size-id embedding has no weights):
        # take the family's; when that does not fit, the width is matched to the UNet's when sampling.
        pooled = int(base_config(family, "text_encoder_2").get("projection_dim", 1280))
        ids = families.get(family).ldm_unet.time_ids  # type: ignore[union-attr]
        proj_in = ldm["label_emb.0.0.weight"][1]
        if proj_in <= pooled or (proj_in - pooled) % int(ids or 1):
            pooled = None
    try:
        unet_cfg = derive_unet_config(ldm, family, path, pooled_dim=pooled, prefix="", encoder_only=True)
    except (KeyError, ModelError) as exc:
        raise ControlNetFileError(f"{path.name}: its ControlNet architecture could not be read ({exc})") from None
    union = is_union(shapes)
    allowed = _controlnet_params(union)
    config = {k: v for k, v in unet_cfg.items() if k in allowed}
    if union:
        config.update(union_config(shapes, path))
    config["conditioning_channels"] = ldm["input_hint_block.0.weight"][1]
    hint = sorted(
        int(k.split(".")[1]) for k, s in ldm.items() if k.startswith("input_hint_block.") and k.endswith(".weight")
    )
    outs = [ldm[f"input_hint_block.{i}.weight"][0] for i in hint]
    # conv_in, then pairs (c_k -> c_k, c_k -> c_{k+1} stride 2), then conv_out to the UNet's width.
    config["conditioning_embedding_out_channels"] = [outs[0], *outs[2:-1:2]]
    return family, config, layout


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _flow_family(path: Path) -> str | None:
    """``"flux"``/``"sd3"`` for a transformer ControlNet (``nodes.diffusion.dit.controlnet_files``), None for
    any other file; a transformer ControlNet sdgraph cannot run is refused there with its reason."""
    from nodes.diffusion.checkpoint.files import read_safetensors_header
    from nodes.diffusion.dit import controlnet_files

    if path.is_dir():
        return controlnet_files.folder_family(path)
    if path.suffix.lower() not in (".safetensors", ".sft"):
        return None
    return controlnet_files.recognise(read_safetensors_header(path).shapes(), path)


@dataclass
class LoadedControlNet:
    """What the model manager caches for one ControlNet file."""

    family: str
    model: Any  # diffusers ControlNetModel

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [*self.model.parameters(), *self.model.buffers()])


def load_controlnet(
    path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> LoadedControlNet:
    """Build a ``ControlNetModel`` (``ControlNetUnionModel`` for a union file) from a single file or a
    diffusers folder (see the module docstring)."""
    from diffusers import ControlNetModel, ControlNetUnionModel

    from nodes.diffusion.checkpoint.files import open_state_dict, read_safetensors_header
    from nodes.diffusion.checkpoint.load import _build

    path, device = Path(path), torch.device(device)
    flow = _flow_family(path)
    if flow is not None:
        from nodes.diffusion.dit import controlnet_files

        return LoadedControlNet(flow, controlnet_files.load(path, flow, device=device, dtype=dtype))
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise ControlNetFileError(f"{path.name} has no config.json: not a diffusers ControlNet folder")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        name = str(config.get("_class_name") or "ControlNetModel")
        weights = path / "diffusion_pytorch_model.safetensors"
        stored = read_safetensors_header(weights).shapes() if weights.is_file() else {}
        union = is_union(stored)
        # The weights tell a union model whatever its config calls it (ControlNetModel in xinsir's folder).
        if name not in ("ControlNetModel", UNION_CLASS) and not (union and name.startswith("ControlNet")):
            raise ControlNetFileError(
                f"{path.name} is a diffusers {name}, not a ControlNetModel; sdgraph runs ControlNetModel, "
                "ControlNetUnionModel, FluxControlNetModel, SD3ControlNetModel and ZImageControlNetModel folders"
            )
        if not weights.is_file():
            raise ControlNetFileError(f"{path.name} has no diffusion_pytorch_model.safetensors")
        family = family_of_config(config)
        state = open_state_dict(weights)
        _layout(stored, path)
        if union:
            config = {**config, **union_config(stored, path, int(config.get("num_trans_head") or UNION_HEADS))}
        sd = {k: state.with_dtype(dtype)[k] for k in state}
        allowed = _controlnet_params(union)
        cls = ControlNetUnionModel if union else ControlNetModel
        model = _build(cls, {k: v for k, v in config.items() if k in allowed}, sd, path, "controlnet", device)
        return LoadedControlNet(family, model)
    shapes = read_safetensors_header(path).shapes() if path.suffix.lower() in (".safetensors", ".sft") else None
    if shapes is None:
        raise ControlNetFileError(f"{path.name}: only .safetensors ControlNets are loaded (nothing is unpickled)")
    family, config, layout = derive_controlnet_config(shapes, path)
    state = open_state_dict(path).with_dtype(dtype)
    if layout == "diffusers":
        sd = {k: state[k] for k in state}
        if is_union(shapes):
            return LoadedControlNet(family, _build(ControlNetUnionModel, config, sd, path, "controlnet", device))
    else:
        lpb = int(config["layers_per_block"])
        hint = len(config["conditioning_embedding_out_channels"]) * 2 - 2
        with torch.device("meta"):
            names = list(ControlNetModel.from_config(config).state_dict())  # type: ignore[no-untyped-call]
        sd = {}
        for name in names:
            source = layout + controlnet_key_to_ldm(name, lpb, hint)
            if source in state:
                sd[name] = state[source]
    return LoadedControlNet(family, _build(ControlNetModel, config, sd, path, "controlnet", device))


# --------------------------------------------------------------------------------------------
# Values on wires and in conditioning
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ControlNet:
    """The CONTROL_NET socket's value: a loaded network (shared, never copied) and its file name."""

    model: Any
    family: str
    source: str = ""
    union_type: str | None = None

    @property
    def display_family(self) -> str:
        return families.get(self.family).display_name

    @property
    def is_transformer(self) -> bool:
        """A ControlNet for a flow transformer (FLUX.1, SD3, Z-Image): it takes the control image VAE-encoded."""
        return self.family in TRANSFORMER_FAMILIES

    @property
    def union_types(self) -> int | None:
        """How many control types this union ControlNet knows (SDXL ``num_control_type``, FLUX.1
        ``num_mode``), or None for a single-type ControlNet."""
        config = getattr(self.model, "config", None)
        if config is None:
            return None
        count = config.get("num_control_type") if "num_trans_channel" in config else config.get("num_mode")
        return None if count is None else int(count)

    @property
    def union_index(self) -> int | None:
        """The control-type index SetUnionControlNetType chose (None: "auto", or never set)."""
        return None if self.union_type is None else UNION_TYPE_INDEX[self.union_type]

    def union_problem(self) -> str | None:
        """Why the chosen union type cannot be applied by this model (a type it was not trained with)."""
        index, count = self.union_index, self.union_types
        if index is None or count is None or index < count:
            return None
        name = f"the ControlNet Union {self.source}" if self.source else "the ControlNet Union"
        return (
            f"{name} knows {count} control types (indices 0–{count - 1}) but {self.union_type!r} is type {index}; "
            "choose another type or auto"
        )

    def misfit(self, model: Any) -> str | None:
        """Why this ControlNet cannot steer ``model`` (a DiffusionModel), or None when it can: it must be
        a copy of that kind of UNet — the same text-conditioning width and the same size embedding — or,
        for a transformer, of that family's transformer (``nodes.diffusion.dit.controlnet.misfit``)."""
        if self.is_transformer or model.is_transformer:
            from nodes.diffusion.dit.controlnet import misfit

            return misfit(self, model)
        name = f"the ControlNet {self.source}" if self.source else "the ControlNet"
        theirs = (
            families.get(model.family).display_name
            if model.family in families.names(only_supported=False)
            else model.family
        )
        mine = self.model.config
        unet = getattr(model.unet, "config", None)
        if model.is_transformer or unet is None or "cross_attention_dim" not in unet:
            return (
                f"{name} is for {self.display_family} but the model is {theirs}, which these ControlNets cannot steer"
            )
        same = int(mine.cross_attention_dim) == int(unet.cross_attention_dim) and (
            mine.addition_embed_type == "text_time"
        ) == (unet.get("addition_embed_type") == "text_time")
        if same:
            return None
        return (
            f"{name} is for {self.display_family} (text width {mine.cross_attention_dim}) but the model is {theirs} "
            f"(text width {unet.cross_attention_dim}); load a ControlNet made for this model's family"
        )


@dataclass(frozen=True, eq=False)
class ControlHint:
    """One applied ControlNet: its image ([B, H, W, C] in 0..1, CPU), strength and part of the run, and
    the hint applied before it (or None)."""

    control_net: ControlNet
    image: Tensor
    strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0
    previous: ControlHint | None = None
    # The VAE that encodes the image for a transformer ControlNet (Apply ControlNet's ``vae`` input), and
    # the encoded image per size it was sampled at (encoded once per run, not once per step).
    vae: Any = None
    encoded: dict[Any, Tensor] = field(default_factory=dict, repr=False)

    def chain(self) -> list[ControlHint]:
        """This hint and every earlier one, oldest first."""
        out: list[ControlHint] = []
        hint: ControlHint | None = self
        while hint is not None:
            out.append(hint)
            hint = hint.previous
        return out[::-1]


def apply_control(
    conditionings: Sequence[Sequence[Any]],
    control_net: ControlNet,
    image: Tensor,
    strength: float,
    start_percent: float = 0.0,
    end_percent: float = 1.0,
    vae: Any = None,
) -> list[list[Any]]:
    """New conditioning lists whose entries carry this ControlNet on top of what they had.

    Entries that shared a previous control share the new one too (so a positive and a negative with
    the same history run the ControlNet once, batched)."""
    from nodes.diffusion.conditioning import CondEntry

    made: dict[int, ControlHint] = {}
    result: list[list[Any]] = []
    for cond in conditionings:
        out = []
        for entry in cond:
            previous = entry.extras.get(CONTROL_KEY)
            key = id(previous)
            if key not in made:
                made[key] = ControlHint(
                    control_net, image, float(strength), start_percent, end_percent, previous, vae=vae
                )
            out.append(CondEntry(entry.embeds, entry.pooled, {**entry.extras, CONTROL_KEY: made[key]}))
        result.append(out)
    return result


def check_family(model: Any, entries: Sequence[Any]) -> str | None:
    """A message when a ControlNet in ``entries`` cannot steer ``model`` (see :meth:`ControlNet.misfit`)."""
    for entry in entries:
        hint = entry.extras.get(CONTROL_KEY)
        for h in hint.chain() if hint is not None else []:
            problem: str | None = h.control_net.misfit(model)
            if problem is not None:
                return problem
    return None


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


def _active(hint: ControlHint, sigma: float | None, model_sampling: Any) -> bool:
    if sigma is None:
        return True
    hi = float(model_sampling.percent_to_sigma(hint.start_percent))
    lo = float(model_sampling.percent_to_sigma(hint.end_percent))
    return lo <= sigma <= hi


def active_hints(conds: Sequence[Any], sigma: float | None, model_sampling: Any) -> list[tuple[ControlHint, list[int]]]:
    """Every distinct hint of ``conds`` active at ``sigma``, oldest first, with the indices of the entries
    carrying it: each runs once on those entries' rows (rows without it get nothing from it)."""
    rows_of: dict[int, tuple[ControlHint, list[int]]] = {}
    for i, entry in enumerate(conds):
        hint = entry.extras.get(CONTROL_KEY)
        for h in hint.chain() if hint is not None else []:
            if _active(h, sigma, model_sampling):
                rows_of.setdefault(id(h), (h, []))[1].append(i)
    return list(rows_of.values())


def batch_rows(blocks: Sequence[int], per: int) -> Tensor:
    """The batch rows of the conditioning entries ``blocks`` when each entry has ``per`` rows."""
    return torch.cat([torch.arange(b * per, (b + 1) * per) for b in blocks])


def control_image(image: Tensor, height: int, width: int, batch: int) -> Tensor:
    """The control image as a ControlNet takes it: [batch, 3, H, W] in 0..1 at the pixel size being
    sampled (resized with a centre crop, as ComfyUI does, when the image has another size)."""
    from nodes.diffusion.resize import resize_image

    img = image.float()
    if img.shape[1] != height or img.shape[2] != width:
        img = resize_image(img, width, height, "nearest-exact", "center")
    x = img[..., :3].permute(0, 3, 1, 2)
    if x.shape[0] != batch:
        x = x.repeat((batch + x.shape[0] - 1) // x.shape[0], 1, 1, 1)[:batch]
    return x


def control_residuals(
    model: Any,
    conds: Sequence[Any],
    per: int,
    x: Tensor,
    t: Tensor,
    context: Tensor,
    added: Mapping[str, Tensor] | None,
    image_hw: tuple[int, int],
    sigma: float | None,
) -> dict[str, Any]:
    """The UNet keyword arguments adding every active ControlNet's residuals (empty when none is active).

    ``conds`` has one entry per block of ``per`` rows of the batch ``x``. Each distinct hint runs once
    on the rows of the entries that carry it; rows without it get nothing from it (zeros)."""
    active = active_hints(conds, sigma, model.model_sampling)
    if not active:
        return {}
    down: list[Tensor] | None = None
    mid: Tensor | None = None
    h_px, w_px = image_hw
    for hint, blocks in active:
        rows = batch_rows(blocks, per).to(x.device)
        net = hint.control_net.model
        if next(net.parameters()).device != x.device:
            net.to(x.device)
        _match_size_embedding(net, model.unet)
        cond_img = control_image(hint.image, h_px, w_px, per).repeat(len(blocks), 1, 1, 1).to(x.device, x.dtype)
        kwargs: dict[str, Any] = {"controlnet_cond": cond_img}
        if added is not None:
            kwargs["added_cond_kwargs"] = {k: v[rows] for k, v in added.items()}
        plain = nullcontext()
        if hint.control_net.union_types is not None:
            kwargs, plain = _union_inputs(hint.control_net, cond_img, kwargs)
        with plain:
            d, m = net(
                x[rows],
                t[rows],
                encoder_hidden_states=context[rows],
                conditioning_scale=hint.strength,
                return_dict=False,
                **kwargs,
            )
        if down is None or mid is None:
            down = [torch.zeros((x.shape[0], *r.shape[1:]), device=x.device, dtype=r.dtype) for r in d]
            mid = torch.zeros((x.shape[0], *m.shape[1:]), device=x.device, dtype=m.dtype)
        for acc, r in zip(down, d, strict=True):
            acc[rows] += r
        mid[rows] += m
    return {"down_block_additional_residuals": tuple(down or ()), "mid_block_additional_residual": mid}


def _union_inputs(control_net: ControlNet, image: Tensor, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """A ``ControlNetUnionModel``'s inputs for one control image, as diffusers'
    ``StableDiffusionXLControlNetUnionPipeline`` passes them for ``control_mode=index``: a one-hot type
    vector per row, the image in a list, its type index. With no type ("auto") ComfyUI runs the union
    model with an all-zero type vector and adds the image features without the condition transformer's
    bias; the second value is the context that makes diffusers' forward do that (:func:`_without_type_bias`)."""
    problem = control_net.union_problem()
    if problem is not None:
        raise ModelError(problem)
    index, count = control_net.union_index, int(control_net.union_types or 0)
    types = image.new_zeros((image.shape[0], count))
    if index is not None:
        types[:, index] = 1
    out = {**kwargs, "controlnet_cond": [image], "control_type": types, "control_type_idx": [index or 0]}
    return out, nullcontext() if index is not None else _without_type_bias(control_net.model)


@contextmanager
def _without_type_bias(net: Any) -> Iterator[None]:
    """Within it, the union model's condition transformer adds nothing to the image features (its
    ``spatial_ch_projs`` gives zeros), so the features enter as a single-type ControlNet's do."""
    handle = net.spatial_ch_projs.register_forward_hook(lambda _module, _args, out: torch.zeros_like(out))
    try:
        yield
    finally:
        handle.remove()


def _match_size_embedding(net: Any, unet: Any) -> None:
    """An SDXL ControlNet embeds the size ids as its UNet does; a file does not store that width (the
    embedding has no weights), so a ControlNet read with the family default takes its UNet's."""
    mine, theirs = getattr(net, "add_time_proj", None), getattr(unet, "add_time_proj", None)
    if mine is None or theirs is None or mine.num_channels == theirs.num_channels:
        return
    net.add_time_proj = theirs
    net.register_to_config(addition_time_embed_dim=unet.config.addition_time_embed_dim)
