"""The 16-channel KL autoencoder of SD3/3.5, FLUX.1 and Z-Image, from the files people download.

It is the LDM ``AutoencoderKL`` with 16 latent channels and no quant convolutions. Files:
FLUX's ``ae.safetensors`` (also Z-Image's VAE; ``encoder.*``/``decoder.*`` with no prefix),
``first_stage_model.*`` inside SD3.5 all-in-one checkpoints, ``vae.*`` in some exports, and
diffusers ``vae`` folders.

The architecture is read from the shapes as the SD loader does (widths per level, resnets per
level, latent channels, whether quant convs and mid-block attention exist). What the weights do not
carry is how latents are normalised for the denoiser: ``(z - shift) * scale`` with SD3's
1.5305/0.0609 or FLUX's and Z-Image's 0.3611/0.1159. The weights of those VAEs have identical shapes,
so the caller names the family. Key renaming is diffusers' own LDM VAE converter, which maps by
name and so works at any width.

``nodes/diffusion/checkpoint/detect.py`` derives the same architecture but only knows the SD
families' scaling factors and has no ``shift_factor``; this module is the 16-channel counterpart.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodes.diffusion.dit.assembly import build_model, folder_class, read_folder
from nodes.diffusion.dit.shapes import KeyIndex, Shapes, UnusableWeightsError, find_prefix, need, public_config

if TYPE_CHECKING:
    import torch

NETWORK = "16-channel VAE"
CLASS_NAME = "AutoencoderKL"
LATENT_CHANNELS = 16
VAE_PREFIXES = ("first_stage_model.", "vae.", "")
_PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")


def vae_prefix(shapes: Mapping[str, Any]) -> str | None:
    return find_prefix(shapes, "decoder.conv_in.weight", VAE_PREFIXES)


def recognise(shapes: Shapes) -> bool:
    """A KL VAE (encoder and decoder) whose decoder takes 16 latent channels."""
    prefix = vae_prefix(shapes)
    if prefix is None or prefix + "encoder.conv_in.weight" not in shapes:
        return False
    conv_in = shapes[prefix + "decoder.conv_in.weight"]
    return len(conv_in) == 4 and conv_in[1] == LATENT_CHANNELS


def recognise_folder(path: str | Path) -> bool:
    return folder_class(path, "vae") == CLASS_NAME


def _config_dir(family: str) -> str:
    """The shipped config folder (``resources/dit_configs``) holding a 16-channel family's VAE factors."""
    from nodes import families

    known = [f.name for f in families.FAMILIES if f.latent is not None and f.latent.channels == 16 and f.config_dir]
    if family not in known:
        raise ValueError(f"family must be one of {sorted(known)}, not {family!r}")
    config_dir = families.get(family).config_dir
    assert config_dir is not None
    return config_dir


def config_from_shapes(shapes: Shapes, family: str, *, source: str | Path = "?") -> dict[str, Any]:
    """The ``AutoencoderKL`` config of these tensors, with ``family``'s scaling and shift factors."""
    config_dir = _config_dir(family)
    prefix = vae_prefix(shapes)
    if prefix is None:
        raise UnusableWeightsError(source, NETWORK, "no decoder.conv_in.weight (with or without first_stage_model.)")
    idx = KeyIndex(shapes, prefix)
    cfg = public_config(config_dir, "vae")
    in_channels = need(idx, "encoder.conv_in.weight", source, NETWORK, ndim=4)[1]
    latent = need(idx, "decoder.conv_in.weight", source, NETWORK, ndim=4)[1]
    out_channels = need(idx, "decoder.conv_out.weight", source, NETWORK, ndim=4)[0]
    levels = idx.count("encoder.down.", source, NETWORK)
    if not levels or idx.count("decoder.up.", source, NETWORK) != levels:
        raise UnusableWeightsError(source, NETWORK, "encoder and decoder have different numbers of levels")
    channels = [need(idx, f"encoder.down.{i}.block.0.conv2.weight", source, NETWORK, ndim=4)[0] for i in range(levels)]
    layers = idx.count("encoder.down.0.block.", source, NETWORK)
    if idx.count("decoder.up.0.block.", source, NETWORK) != layers + 1:
        raise UnusableWeightsError(source, NETWORK, f"the decoder does not have {layers + 1} resnets per level")
    groups = int(cfg["norm_num_groups"])
    if any(c % groups for c in channels):
        raise UnusableWeightsError(source, NETWORK, f"channels {channels} do not split into {groups} norm groups")
    cfg.update(
        in_channels=in_channels,
        out_channels=out_channels,
        latent_channels=latent,
        block_out_channels=channels,
        layers_per_block=layers,
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels,
        mid_block_add_attention=idx.has("encoder.mid.attn_1.q.weight"),
        use_quant_conv=idx.has("quant_conv.weight"),
        use_post_quant_conv=idx.has("post_quant_conv.weight"),
    )
    return cfg


def convert_state_dict(
    sd: Mapping[str, torch.Tensor], config: Mapping[str, Any], *, source: str | Path = "?"
) -> dict[str, torch.Tensor]:
    """LDM VAE tensors (any of the prefixes above) -> diffusers ``AutoencoderKL`` names."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    prefix = vae_prefix(sd)
    if prefix is None:
        raise UnusableWeightsError(source, NETWORK, "no decoder.conv_in.weight")
    n = len(prefix)
    # Hand the converter the VAE's tensors only, under a prefix it strips ("vae.").
    own = {"vae." + k[n:]: sd[k] for k in sd if k.startswith(prefix) and k[n:].startswith(_PARTS)}
    try:
        return dict(convert_ldm_vae_checkpoint(own, dict(config)))
    except (KeyError, IndexError, ValueError, RuntimeError) as exc:
        raise UnusableWeightsError(source, NETWORK, f"its tensors could not be renamed ({exc})") from exc


def build(
    config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    dtype: torch.dtype | None = None,
    *,
    source: str | Path = "?",
) -> Any:
    """``AutoencoderKL`` made of ``state_dict`` (diffusers names), stored dtype unless ``dtype``."""
    from diffusers import AutoencoderKL

    return build_model(AutoencoderKL, config, state_dict, dtype=dtype, source=source, network=NETWORK)


def load(path: str | Path, family: str, dtype: torch.dtype | None = None) -> Any:
    """A VAE file, an all-in-one checkpoint's VAE, or a diffusers (``vae``) folder -> the autoencoder.

    A folder's own ``config.json`` keeps its factors; single files get ``family``'s.
    """
    from nodes.diffusion.checkpoint.files import open_state_dict, read_shapes

    path = Path(path)
    if path.is_dir():
        config, state, folder = read_folder(path, "vae", NETWORK)
        return build(config, state, dtype, source=folder)
    config = config_from_shapes(read_shapes(path), family, source=path)
    return build(config, convert_state_dict(open_state_dict(path), config, source=path), dtype, source=path)
