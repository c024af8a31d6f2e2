"""Loading a flow transformer (SD3/3.5, FLUX.1, Z-Image) for the model manager, and what runs it.

``load_transformer`` is the manager's loader for the ``diffusion_model`` kind: it recognises the
family from the file's tensor names (or a diffusers folder's class), builds the network from the
stored tensors through the family's own loader (``ModelFamily.denoiser_loader``), places it on the
device and sets its storage/compute dtypes (``nodes.diffusion.dit.runtime``). ``model_sampling_for``
is each family's default noise bookkeeping, as ComfyUI sets it when no ModelSampling node is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nodes import families
from nodes.diffusion.dit import autoencoder
from nodes.diffusion.dit.runtime import set_compute_dtype, storage_dtype, stored_dtype
from nodes.diffusion.errors import ModelError, UnknownArchitectureError, UnsupportedFamilyError


@dataclass(frozen=True, eq=False)
class LoadedTransformer:
    """A transformer ready to sample with, and the facts the MODEL value needs about it."""

    network: Any
    family: str
    variant: str  # "flux1_dev" / "flux1_schnell" for FLUX (guidance-distilled or not), else the family
    compute_dtype: torch.dtype
    storage_dtype: torch.dtype
    streamer: Any = None  # a LayerStreamer when the model is larger than the budget (see dit.streaming)

    def nbytes(self) -> int:
        """What the model manager budgets: the weights as stored (streamed: what stays resident)."""
        if self.streamer is not None:
            return int(self.streamer.resident_bytes())
        tensors = [*self.network.parameters(), *self.network.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def to(self, device: str | torch.device) -> LoadedTransformer:
        """Move in place (the manager offloads idle models off a GPU this way)."""
        if self.streamer is not None:  # the blocks stay in the file and follow the streamer's device
            self.streamer.move(device)
            return self
        self.network.to(torch.device(device))
        return self


def transformer_family(path: Path) -> families.ModelFamily:
    """The family of a diffusion-model file or folder; one message naming what it is otherwise."""
    if path.is_dir():
        for family in families.FAMILIES:
            if family.denoiser_loader and _module(family).recognise_folder(path):
                return family
        raise UnknownArchitectureError(path, "the folder is not a diffusers SD3, FLUX.1 or Z-Image transformer")
    from nodes.diffusion.checkpoint.files import read_shapes

    shapes = read_shapes(path)
    family = families.recognise_single_file(shapes)
    if family is None:
        if autoencoder.recognise(shapes):
            raise UnknownArchitectureError(path, "it holds only VAE weights (load it with Load VAE)")
        raise UnknownArchitectureError(path, "it is not a diffusion model sdgraph knows")
    if not family.supported:
        raise UnsupportedFamilyError(path, family.name, family.display_name, family.description)
    return family


def _module(family: families.ModelFamily) -> Any:
    assert family.denoiser_loader is not None
    import importlib

    return importlib.import_module(family.denoiser_loader.partition(":")[0])


def load_transformer(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    weight_dtype: str = "default",
    stream: bool = False,
) -> LoadedTransformer:
    """Build the transformer of ``path`` (its weights stay as stored unless ``weight_dtype`` is fp8),
    computing in ``dtype`` on ``device``. ``stream``: the model is larger than the budget, so its blocks
    stay in the memory-mapped file and are made ready one at a time (``nodes.diffusion.dit.streaming``;
    ``weight_dtype`` fp8 is then not applied: each block is cast from the file to ``dtype``)."""
    path = Path(path)
    family = transformer_family(path)
    if family.denoiser_loader is None:
        raise ModelError(
            f"{path.name} is {family.description}; load it with Load Checkpoint (it is not a transformer model)"
        )
    module = _module(family)
    network = family.resolve(family.denoiser_loader)(path)
    stored = stored_dtype(p.dtype for p in network.parameters())
    storage = storage_dtype(stored, weight_dtype)
    streamer = None
    if stream:
        from nodes.diffusion.dit.streaming import stream_network

        streamer = stream_network(network, path, torch.device(device), dtype)
        storage = stored
    else:
        network.to(torch.device(device))
        set_compute_dtype(network, storage, dtype, getattr(module, "KEEP_IN_COMPUTE", ()))
    variant_of = getattr(module, "variant_of", None)  # FLUX: dev (guidance-distilled) or schnell
    variant = variant_of(network) if variant_of is not None else family.name
    return LoadedTransformer(network, family.name, variant, dtype, storage, streamer)


def load_vae16(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Any:
    """The 16-channel VAE of a file, an all-in-one checkpoint or a diffusers folder, on ``device``.
    The latent normalisation lives with the model (``DiffusionModel.latent_shift``), so which
    family's factors the VAE config carries does not matter here."""
    vae = autoencoder.load(path, "flux", dtype)
    return vae.to(torch.device(device))


def model_sampling_for(family: str, variant: str = "") -> Any:
    """The family's default model sampling (ComfyUI's, used until a ModelSampling* node sets another):
    SD3 a constant shift with timestep σ·1000; Z-Image (AuraFlow rule) a constant shift with timestep σ;
    FLUX.1-dev the exponential shift e^mu at a fixed mu (ModelSamplingFlux computes it from the size),
    FLUX.1-schnell none."""
    from nodes.diffusion.sampling import FlowModelSampling

    sampling = families.get(family).sampling
    if sampling is None or sampling.prediction != "flow":
        raise ValueError(f"{family} is not a flow-matching family")
    if sampling.shift_rule == "sd3":
        return FlowModelSampling(sampling.shift, multiplier=1000.0)
    if sampling.shift_rule == "auraflow":
        return FlowModelSampling(sampling.shift, multiplier=1.0)
    if sampling.shift_rule == "flux":
        if variant == "flux1_schnell":
            return FlowModelSampling(1.0, multiplier=1.0)
        return FlowModelSampling(mu=sampling.shift, multiplier=1.0, num_timesteps=10000)
    return FlowModelSampling(1.0, multiplier=1.0)
