"""What a model family declares: one frozen record per family, pure data plus small key tests.

Nothing here imports torch, diffusers or transformers: the UI, the validators and the node
declarations read these records at import time. Code that builds models names the classes it
builds as strings (``"diffusers.UNet2DConditionModel"``) and imports them itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Shapes = Mapping[str, tuple[int, ...]]

#: What the network predicts: noise (ε), velocity in the VP sense (v), or the rectified-flow velocity.
Prediction = Literal["epsilon", "v_prediction", "flow"]
#: How a flow model's sigmas are shifted, named after the ComfyUI node that sets it:
#: ``"none"``; ``"sd3"`` one constant shift; ``"flux"`` a shift interpolated between ``base_shift``
#: and ``max_shift`` by the image's token count; ``"auraflow"`` a constant shift on timesteps in [0, 1].
ShiftRule = Literal["none", "sd3", "flux", "auraflow"]
#: How a text encoder's weights are named in an original-layout single file.
EncoderLayout = Literal["clip", "openclip", "t5", "qwen3"]


@dataclass(frozen=True)
class LatentFormat:
    """The latent space the family's denoiser works in.

    ``scaling_factor``/``shift_factor`` map VAE latents to the denoiser's: ``(z − shift)·scale``.
    ``rgb_factors`` (one RGB row per channel) and ``rgb_bias`` are the linear latent-to-RGB map
    used for cheap step previews, applied to the denoiser-space latent.
    """

    channels: int
    scaling_factor: float
    shift_factor: float = 0.0
    rgb_factors: tuple[tuple[float, float, float], ...] | None = None
    rgb_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Sampling:
    """The family's model sampling, as data; the math is ``nodes.diffusion.sampling.model_sampling``.

    ``measured``: the checkpoint does not say ε or v; detection measures it from the weights
    (SD2, see ``nodes.diffusion.checkpoint.detect``) and ``prediction`` is only the fallback.
    """

    prediction: Prediction
    shift_rule: ShiftRule = "none"
    shift: float = 1.0
    base_shift: float | None = None
    max_shift: float | None = None
    measured: bool = False


@dataclass(frozen=True)
class TextEncoderSlot:
    """One text encoder the family conditions on, in pipeline order."""

    component: str  # the diffusers component name: "text_encoder", "text_encoder_2", ...
    role: str  # what a person calls it: "CLIP-L", "OpenCLIP-bigG with projection", "T5-XXL"
    prefix: str  # where its weights sit in an original-layout all-in-one single file
    layout: EncoderLayout
    transformers_class: str  # "CLIPTextModel", "CLIPTextModelWithProjection", "T5EncoderModel", ...
    tokenizer: str  # the vocabulary it uses, under resources/: "clip", "t5", "qwen3"
    pad_id: int
    # SD2 files carry one more OpenCLIP block than SD2 conditions on (it uses the penultimate layer).
    drop_last_block: bool = False


@dataclass(frozen=True)
class TextConditioning:
    """How token chunks become conditioning (``nodes.diffusion.text.encode``)."""

    default_layer: int  # the hidden_states index used when no CLIP layer is set
    final_norm: bool  # whether the final layer norm is applied to that hidden state
    pooled_encoder: int | None  # the slot whose pooled output conditions the model, if any


@dataclass(frozen=True)
class LdmUnet:
    """Facts about an original-layout (LDM/SGM) UNet that its shapes do not tell.

    ``signature`` is the full-size model's (cross-attention width, has SDXL size embedding), used
    only to name the family of a UNet-only file without text encoders.
    """

    signature: tuple[int, bool]
    heads: Literal["config", "64_channel"] = "64_channel"  # SD1: the config's head count at every level
    time_ids: int | None = None  # SDXL's size conditioning: 6 ids (base) or 5 (refiner, with aesthetic score)
    upcast_attention_for_v: bool = False  # SD2-768 (v) runs attention in fp32 against fp16 overflow


@dataclass(frozen=True)
class DiffusersFolder:
    """The configs of a diffusers folder that recognising its family needs (read by the registry)."""

    pipeline: str | None  # model_index.json's _class_name
    configs: Mapping[str, Mapping[str, Any]]  # component -> its config.json

    def has(self, component: str) -> bool:
        return component in self.configs

    def config(self, component: str) -> Mapping[str, Any]:
        return self.configs.get(component, {})


@dataclass(frozen=True)
class ModelFamily:
    """Everything sdgraph knows about one model family, in one place.

    A *known-but-unsupported* family (``supported=False``) needs only its names and how to recognise
    it; a checkpoint of it then gets a message naming it instead of "unknown architecture". Turning
    it into a supported family means filling in the rest of its module (see ``nodes.families``).
    """

    name: str  # the id used everywhere in code and saved graphs: "sd1", "flux"
    display_name: str  # "Stable Diffusion 1.x", "FLUX.1"
    description: str  # for messages: "a FLUX.1 (Black Forest Labs Flux) diffusion transformer"
    recognise: Callable[[Shapes], bool]  # a single file, from its tensor names (and shapes if needed)
    supported: bool = False
    diffusers_pipelines: tuple[str, ...] = ()  # model_index.json _class_name values of this family
    recognise_diffusers: Callable[[DiffusersFolder], bool] | None = None  # when the class name is shared
    denoiser_class: str | None = None  # "diffusers.UNet2DConditionModel"
    vae_class: str | None = None
    config_dir: str | None = None  # shipped configs: resources/sd_configs/<config_dir>/<component>/
    components: tuple[str, ...] = ()  # the shipped config folders
    latent: LatentFormat | None = None
    sampling: Sampling | None = None
    text_encoders: tuple[TextEncoderSlot, ...] = ()
    conditioning: TextConditioning | None = None
    ldm_unet: LdmUnet | None = None
    # "module:function" building the detected record from a single file's shapes; resolved lazily so
    # this record stays importable without torch.
    detector: str | None = None
    # "module:function" calling the denoiser on a batch, ``(model, x, t, conds, *, sigma)``
    # (``DiffusionModel.predict``'s contract; ``sigma`` decides which ControlNets are active) for families
    # whose network is not a UNet; None: the UNet call in ``nodes.diffusion.model``.
    predictor: str | None = None
    # "module:function" loading the denoiser from a file or folder (the transformer families).
    denoiser_loader: str | None = None
    # The CLIPLoader ``type`` (ComfyUI's name) that builds this family's text encoders from files.
    clip_type: str | None = None
    notes: tuple[str, ...] = field(default=())

    def text_encoder_names(self) -> list[str]:
        return [slot.component for slot in self.text_encoders]

    def resolve_module(self, ref: str | None) -> str:
        """The module part of a ``"module:attribute"`` reference."""
        if ref is None:
            raise ValueError(f"{self.name} declares no such reference")
        return ref.partition(":")[0]

    def resolve(self, ref: str) -> Any:
        """Import a ``"module:attribute"`` reference declared by this family."""
        module, _, attr = ref.partition(":")
        return getattr(importlib.import_module(module), attr)


# --------------------------------------------------------------------------------------------
# Small key tests the family modules compose their ``recognise`` from
# --------------------------------------------------------------------------------------------


def has_any(shapes: Shapes, keys: Iterable[str]) -> bool:
    return any(k in shapes for k in keys)


def has_prefix(shapes: Shapes, prefixes: Iterable[str]) -> bool:
    """Whether any tensor name starts with one of ``prefixes`` (a full scan; headers are small)."""
    prefixes = tuple(prefixes)
    return any(k.startswith(prefixes) for k in shapes)


def with_prefixes(names: Iterable[str], prefixes: Iterable[str] = ("", "model.diffusion_model.")) -> list[str]:
    """Each name bare and under each prefix: the same network is shipped alone (ComfyUI's
    ``diffusion_models`` files) and inside an all-in-one checkpoint."""
    pre = tuple(prefixes)
    return [p + n for n in names for p in pre]
