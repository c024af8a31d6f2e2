"""Damaged files and pickle checkpoints: each gives one clear error naming the file."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch

from nodes.diffusion.checkpoint.files import read_safetensors_header
from nodes.diffusion.checkpoint.ldm_layout import checkpoint_to_ldm
from nodes.diffusion.checkpoint.load import load_checkpoint, load_vae
from nodes.diffusion.errors import CorruptCheckpointError, ModelError, PickleRefusedError
from tests.support.tiny_sd import build_tiny_models


@pytest.fixture
def copy_of(tmp_path: Path, tiny_sd1_file: Path) -> Path:
    return Path(shutil.copy(tiny_sd1_file, tmp_path / "model.safetensors"))


def test_truncated_file(copy_of: Path) -> None:
    size = copy_of.stat().st_size
    with copy_of.open("r+b") as f:
        f.truncate(size - 1000)
    with pytest.raises(CorruptCheckpointError, match="truncated") as info:
        load_checkpoint(copy_of)
    assert str(copy_of) in str(info.value)
    assert "download it again" in str(info.value)


def test_truncated_inside_the_header(copy_of: Path) -> None:
    with copy_of.open("r+b") as f:
        f.truncate(100)
    with pytest.raises(CorruptCheckpointError, match="header claims"):
        load_checkpoint(copy_of)


def test_flipped_header_bytes(copy_of: Path) -> None:
    with copy_of.open("r+b") as f:
        f.seek(8)
        f.write(b"\xff\xfe\x00")
    with pytest.raises(CorruptCheckpointError, match="not valid JSON"):
        load_checkpoint(copy_of)


def test_header_length_garbage(copy_of: Path) -> None:
    with copy_of.open("r+b") as f:
        f.write(struct.pack("<Q", 2**62))
    with pytest.raises(CorruptCheckpointError, match="header claims"):
        load_vae(copy_of)


def test_wrong_byte_range_in_header(copy_of: Path) -> None:
    """A header edited so one tensor's range does not match its shape (bit flip in a digit)."""
    data = copy_of.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    key = (
        "model.diffusion_model.conv_in.weight"
        if "model.diffusion_model.conv_in.weight" in header
        else next(k for k in header if k != "__metadata__")
    )
    start, end = header[key]["data_offsets"]
    header[key]["data_offsets"] = [start, end + 4]
    raw = json.dumps(header).encode()
    raw += b" " * (n - len(raw)) if len(raw) <= n else b""
    copy_of.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])
    with pytest.raises(CorruptCheckpointError, match="should take"):
        read_safetensors_header(copy_of)


def test_not_a_model_at_all(tmp_path: Path) -> None:
    path = tmp_path / "notes.safetensors"
    path.write_text("hello, this is text")
    with pytest.raises(CorruptCheckpointError, match=str(path)):
        load_checkpoint(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    with pytest.raises(CorruptCheckpointError, match="only 0 bytes"):
        load_checkpoint(path)


def test_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def _write_ckpt(path: Path) -> Path:
    ref = build_tiny_models("sd1")
    state = checkpoint_to_ldm("sd1", unet=ref.unet, vae=ref.vae, text_encoders=ref.text_encoders)
    torch.save({"state_dict": state, "global_step": 1}, path)
    return path


def test_pickle_is_refused_by_default(tmp_path: Path) -> None:
    path = _write_ckpt(tmp_path / "old.ckpt")
    with pytest.raises(PickleRefusedError, match="Refusing to unpickle") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    with pytest.raises(PickleRefusedError):
        load_vae(path)


def test_pickle_loads_with_weights_only_when_allowed(tmp_path: Path) -> None:
    path = _write_ckpt(tmp_path / "old.ckpt")
    ck = load_checkpoint(path, allow_pickle=True)
    ref = build_tiny_models("sd1")
    for key, value in ref.unet.state_dict().items():
        assert torch.equal(ck.unet.state_dict()[key], value), key


def test_pickle_with_arbitrary_objects_is_rejected_even_when_allowed(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": Payload()}, path)
    with pytest.raises(ModelError, match="objects other than weights") as info:
        load_checkpoint(path, allow_pickle=True)
    assert not isinstance(info.value, CorruptCheckpointError)


def test_diffusers_folder_with_only_bin_weights_is_refused(tmp_path: Path, tiny_sd1_folder: Path) -> None:
    folder = Path(shutil.copytree(tiny_sd1_folder, tmp_path / "pipe"))
    st = folder / "vae" / "diffusion_pytorch_model.safetensors"
    from safetensors.torch import load_file

    torch.save(load_file(st), folder / "vae" / "diffusion_pytorch_model.bin")
    st.unlink()
    with pytest.raises(PickleRefusedError, match=r"diffusion_pytorch_model\.bin"):
        load_checkpoint(folder)
    assert load_checkpoint(folder, allow_pickle=True).vae is not None


def test_corrupt_weights_in_a_diffusers_folder(tmp_path: Path, tiny_sd1_folder: Path) -> None:
    folder = Path(shutil.copytree(tiny_sd1_folder, tmp_path / "pipe"))
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    with weights.open("r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    with pytest.raises(CorruptCheckpointError, match="unet"):
        load_checkpoint(folder)


@pytest.mark.parametrize("target", [torch.float32, torch.bfloat16, torch.float16])
def test_every_tensor_read_keeps_its_own_values(tmp_path: Path, target: torch.dtype) -> None:
    """Cast tensors share one staging buffer while they are read: none may still point into it (a
    same-dtype read that did was overwritten by the next one and broke exact-mode images)."""
    from safetensors.torch import save_file

    from nodes.diffusion.checkpoint.files import open_state_dict

    g = torch.Generator().manual_seed(0)
    f16, f32, b16 = torch.float16, torch.float32, torch.bfloat16
    sizes = [(700, f16), (50, f32), (900, b16), (20, f16), (600, f32)]  # some reads cast, some do not
    stored = {f"t{i}": torch.randn(n, 3, generator=g).to(dtype) for i, (n, dtype) in enumerate(sizes)}
    save_file(stored, tmp_path / "m.safetensors")
    state = open_state_dict(tmp_path / "m.safetensors").with_dtype(target)
    got = {k: state[k] for k in stored}  # all held at once, as a converter holds them
    for k, original in stored.items():
        assert got[k].dtype == target
        assert torch.equal(got[k], original.to(target)), k
