"""From the CLIP loader nodes' inputs (file names, ``type``, ``device``) to a CLIP socket value.

Each file is identified from its keys (header only) before anything is loaded, so a file in the wrong
slot — a T5 where a CLIP belongs, a diffusion model in the text-encoder folder, a Gemma or UMT5 encoder
of a family sdgraph does not run yet — fails at once with one message naming the node and the input.
Encoders then load through the process's model manager: loaded once per (file, encoder, device, dtype),
counted against the model budget and dropped least-recently-used when room is needed, like checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graph_engine import ExecutionContext, InputError
from nodes.diffusion.errors import ModelError
from nodes.diffusion.runtime import apply_memory_settings, device_for, dtypes_for, make_vram_room, manager
from nodes.diffusion.text.encoder_files import EncoderInFile, read_encoders, stored_dtype
from nodes.diffusion.text_encoders import (
    CLIP_TYPES,
    KNOWN_UNSUPPORTED_TYPES,
    ClipFileError,
    assign_roles,
    build_clip_value,
    encoder_dtype,
)
from nodes.folders import model_folders

KIND = "text_encoders"


def load_clip(
    ctx: ExecutionContext, node: str, clip_type: str, files: Sequence[tuple[str, str]], device: str = "default"
) -> Any:
    """``files``: (input id, model name) per slot, e.g. ``[("clip_name1", "t5xxl_fp16.safetensors"), ...]``."""
    if clip_type not in CLIP_TYPES:
        family = "a family sdgraph does not have yet" if clip_type in KNOWN_UNSUPPORTED_TYPES else "unknown"
        supported = ", ".join(repr(t) for t in CLIP_TYPES)
        raise InputError("type", f"{node}: type {clip_type!r} is {family}; supported are {supported}.")
    found: list[tuple[str, str, EncoderInFile]] = []
    paths = {}
    for input_id, name in files:
        try:
            path = model_folders().resolve(KIND, name)
            encoders = read_encoders(path)
        except ModelError as exc:
            raise InputError(input_id, f"{node}: {exc}") from None
        if len(encoders) > 1 and len(files) > 1:
            raise InputError(
                input_id,
                f"{node}: {name} holds {len(encoders)} text encoders; give it alone to a CLIPLoader with type 'sd3'.",
            )
        paths[input_id] = path
        found.extend((input_id, name, enc) for enc in encoders)
    try:
        roles = assign_roles(clip_type, node, found)
    except ClipFileError as exc:
        raise InputError(exc.input_id, str(exc)) from None

    target = device_for(ctx.device) if device != "cpu" else device_for("cpu")
    _, _, run_dtype = dtypes_for(target, ctx.settings)
    apply_memory_settings(ctx.settings)
    requests: list[tuple[str, dict[str, Any]]] = []
    modules: dict[str, Any] = {}
    for input_id, enc in roles:
        path = paths[input_id]
        dtype = encoder_dtype(enc.role, stored_dtype(path, enc.prefix), run_dtype)
        make_vram_room(target, path.stat().st_size)
        request = dict(path=path, prefix=enc.prefix, role=enc.role, device=target, dtype=dtype)
        try:
            modules[enc.role] = manager().text_encoder(**request)
        except ModelError as exc:
            raise InputError(input_id, f"{node}: {exc}") from None
        requests.append((enc.role, request))
    return build_clip_value(clip_type, modules, fetch=lambda: fetch_encoders(requests))


def fetch_encoders(requests: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The encoders of these manager requests: the cached ones, or loaded again if the budget freed them."""
    return {role: manager().text_encoder(**request) for role, request in requests}
