"""The installed model files by kind, each with what it is, read from its header without torch.

The editor's Models panel lists every file in the model folders (checkpoints, diffusion models, text
encoders, VAE, LoRA) with its size and family, and turns a dropped file into its loader node. What a
file is comes from its safetensors header alone (8-byte little-endian length, then JSON naming every
tensor and its shape), so probing a 20 GB FLUX file costs one small read and no tensor is loaded:

* checkpoints and diffusion models: the family registry's single-file test (`nodes.families`);
* text encoders: the encoder marker keys of `nodes.diffusion.text.encoder_files` (CLIP-L/-G, T5-XXL,
  Qwen3), which also says which `CLIPLoader` type suits the file;
* VAE: the latent channels, from the decoder's first convolution (4: SD 1.x/2.x/SDXL; 16: FLUX.1,
  SD3, Z-Image);
* LoRA: just "LoRA" (which model a LoRA fits is not in its header in any reliable way);
* upscale models: "upscale model", or what else the file is when it is a checkpoint put in the wrong
  folder (spandrel, which names the architecture, needs torch and the tensors, so the panel does not run it).

Torch-free on purpose (the UI imports this module, and the UI never imports torch). Probing is the one
slow part on a cold disk, so `ProbeCache` keeps results by (path, mtime, size): a file replaced on disk
is probed again, an unchanged one never is. It is thread-safe, so the panel can probe off the UI thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nodes.diffusion.checkpoint.files import read_safetensors_header
from nodes.diffusion.errors import ModelError
from nodes.diffusion.model_paths import KINDS, ModelFolders
from nodes.diffusion.text.encoder_files import CLIP_G, QWEN3, ROLE_NAMES, T5XXL, identify_encoders
from nodes.families import read_diffusers_folder, recognise_diffusers_folder, recognise_single_file

# The order and names the panel shows; `KINDS` is the folder names.
KIND_ORDER = ("checkpoints", "diffusion_models", "text_encoders", "vae", "loras", "controlnet", "upscale_models")
KIND_TITLES = {
    "checkpoints": "Checkpoints",
    "diffusion_models": "Diffusion models",
    "text_encoders": "Text encoders",
    "vae": "VAE",
    "loras": "LoRA",
    "controlnet": "ControlNet",
    "upscale_models": "Upscale models",
}
# The node that loads a file of each kind, and the input that names the file.
LOADERS = {
    "checkpoints": ("CheckpointLoaderSimple", "ckpt_name"),
    "diffusion_models": ("UNETLoader", "unet_name"),
    "text_encoders": ("CLIPLoader", "clip_name"),
    "vae": ("VAELoader", "vae_name"),
    "loras": ("LoraLoader", "lora_name"),
    "controlnet": ("ControlNetLoader", "control_net_name"),
    "upscale_models": ("UpscaleModelLoader", "model_name"),
}
_VAE_MARK = "decoder.conv_in.weight"
_LATENT_FAMILIES = {4: "SD 1.x/2.x, SDXL", 16: "FLUX.1, SD3, Z-Image"}
# Embeddings are used by name inside prompts (`embedding:name`), with no loader node to drop.
assert set(KIND_ORDER) == set(KINDS) - {"embeddings"}


@dataclass(frozen=True)
class ModelFile:
    """One installed model: its kind, its name in workflows, where it is, and what identifies this copy."""

    kind: str
    name: str
    path: Path
    format: str  # "safetensors", "pickle" or "diffusers"
    size: int  # bytes (a diffusers folder: all its files)
    mtime_ns: int

    @property
    def key(self) -> tuple[str, int, int]:
        """Changes when the file is replaced on disk; what probes are cached by."""
        return (str(self.path), self.mtime_ns, self.size)


@dataclass(frozen=True)
class Probe:
    """What a file is: `family` for the list ("FLUX.1", "CLIP-L", "16-channel VAE …", "LoRA", "unknown"),
    `detail` for a tooltip (why it is unknown), and the CLIPLoader `type` for a text encoder."""

    family: str
    detail: str = ""
    clip_type: str | None = None


def _folder_size(folder: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += (Path(dirpath) / name).stat().st_size
            except OSError:
                continue
    return total


def list_files(folders: ModelFolders, kinds: Iterable[str] = KIND_ORDER) -> dict[str, list[ModelFile]]:
    """Every installed model by kind, named as workflows name them; unreadable entries are left out."""
    found: dict[str, list[ModelFile]] = {}
    for kind in kinds:
        files = []
        try:
            entries = folders.entries(kind)
        except OSError:
            entries = []
        for entry in entries:
            try:
                st = entry.path.stat()
            except OSError:
                continue
            size = _folder_size(entry.path) if entry.format == "diffusers" else st.st_size
            files.append(ModelFile(kind, entry.name, entry.path, entry.format, size, st.st_mtime_ns))
        found[kind] = files
    return found


def clip_type_for(roles: Iterable[str], name: str = "") -> str:
    """The `CLIPLoader` type that runs a text-encoder file holding these encoders alone."""
    roles = set(roles)
    if QWEN3 in roles:
        return "lumina2"  # Z-Image's Qwen3 goes through CLIPLoader as ComfyUI's "lumina2"
    if T5XXL in roles or CLIP_G in roles or (roles == {"clip"} and "clip_g" in name.lower()):
        return "sd3"
    return "stable_diffusion"


def _text_encoder(file: ModelFile, shapes: dict[str, tuple[int, ...]]) -> Probe:
    try:
        encoders = identify_encoders(shapes, file.path)
    except ModelError as exc:
        return Probe("not a text encoder", str(exc))
    names = []
    for enc in encoders:
        if enc.role == "clip":  # a CLIP of an unusual width: its name may still say which
            lowered = file.name.lower()
            names.append("CLIP-G" if "clip_g" in lowered else "CLIP-L" if "clip_l" in lowered else "CLIP")
        else:
            names.append(ROLE_NAMES[enc.role])
    roles = [e.role for e in encoders]
    widths = ", ".join(f"{n} {e.width} wide" for n, e in zip(names, encoders, strict=True))
    return Probe(" + ".join(names), widths, clip_type_for(roles, file.name))


def _vae(shapes: dict[str, tuple[int, ...]]) -> Probe:
    conv = next((shape for key, shape in shapes.items() if key.endswith(_VAE_MARK)), None)
    if conv is None or len(conv) != 4:
        return Probe("unknown", "no decoder.conv_in.weight: not a VAE in the LDM layout")
    channels = conv[1]
    fits = _LATENT_FAMILIES.get(channels)
    return Probe(f"{channels}-channel VAE", f"latents with {channels} channels" + (f" ({fits})" if fits else ""))


def _controlnet(file: ModelFile) -> Probe:
    """The family a ControlNet is for, read from its shapes (or its folder's config) without loading it."""
    import json

    from nodes.diffusion.controlnet import derive_controlnet_config, family_of_config
    from nodes.diffusion.dit import controlnet_files
    from nodes.families import get

    try:
        if file.format == "diffusers":
            flow = controlnet_files.folder_family(file.path)
            config = json.loads((file.path / "config.json").read_text(encoding="utf-8"))
            family = flow or family_of_config(config)
        else:
            shapes = read_safetensors_header(file.path).shapes()
            flow = controlnet_files.recognise(shapes, file.path)
            family = flow or derive_controlnet_config(shapes, file.path)[0]
    except (ModelError, OSError, ValueError) as exc:
        return Probe("unknown", str(exc))
    return Probe(f"{get(family).display_name} ControlNet")


def _upscale_model(file: ModelFile) -> Probe:
    """Upscale models are named by UpscaleModelLoader when loaded; here only a misplaced checkpoint is told."""
    if file.format == "pickle":
        return Probe("upscale model", "a .pth file: read with a weights-only load when used")
    try:
        shapes = read_safetensors_header(file.path).shapes()
    except ModelError as exc:
        return Probe("unreadable", str(exc))
    family = recognise_single_file(shapes)
    if family is not None:
        return Probe("not an upscale model", f"a {family.display_name} model: it goes in models/checkpoints")
    return Probe("upscale model")


def probe(file: ModelFile) -> Probe:
    """Read what `file` is from its header (or a diffusers folder's configs); never raises."""
    if file.kind == "upscale_models":
        return _upscale_model(file)
    if file.format == "pickle":
        return Probe("not read (pickle)", "pickle files are not opened; convert it to .safetensors")
    if file.kind == "loras":
        return Probe("LoRA")
    if file.kind == "controlnet":
        return _controlnet(file)
    if file.format == "diffusers":
        folder_family = recognise_diffusers_folder(read_diffusers_folder(file.path))
        return Probe(folder_family.display_name if folder_family else "unknown", "diffusers folder")
    try:
        shapes = read_safetensors_header(file.path).shapes()
    except ModelError as exc:
        return Probe("unreadable", str(exc))
    if file.kind == "text_encoders":
        return _text_encoder(file, shapes)
    if file.kind == "vae":
        return _vae(shapes)
    family = recognise_single_file(shapes)
    if family is None:
        return Probe("unknown", "no known family's keys in the file")
    return Probe(
        family.display_name, "" if family.supported else "sdgraph recognises this family but cannot run it yet"
    )


class ProbeCache:
    """Probes by (path, mtime, size); safe to use from a worker thread and the UI thread at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._probes: dict[tuple[str, int, int], Probe] = {}

    def get(self, file: ModelFile) -> Probe | None:
        """The cached probe, or None when this copy of the file was never probed."""
        with self._lock:
            return self._probes.get(file.key)

    def probe(self, file: ModelFile) -> Probe:
        """The cached probe, or a fresh one (read outside the lock: headers of two files read in parallel)."""
        cached = self.get(file)
        if cached is not None:
            return cached
        result = probe(file)
        with self._lock:
            self._probes[file.key] = result
        return result


def loader_for(file: ModelFile, found: Probe | None = None) -> tuple[str, dict[str, str]]:
    """The node type that loads `file` and its values (the file chosen; a text encoder's type too)."""
    node_type, input_id = LOADERS[file.kind]
    values = {input_id: file.name}
    if file.kind == "text_encoders":
        values["type"] = (found.clip_type if found is not None else None) or clip_type_for((), file.name)
    return node_type, values


__all__ = [
    "KIND_ORDER",
    "KIND_TITLES",
    "LOADERS",
    "ModelFile",
    "Probe",
    "ProbeCache",
    "clip_type_for",
    "list_files",
    "loader_for",
    "probe",
]
