"""Model folders: listing, extra roots (ComfyUI yaml, A1111), resolving names safely."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nodes.diffusion import model_paths
from nodes.diffusion.errors import ModelNotFoundError, UnsafePathError
from nodes.diffusion.model_paths import ModelFolders, read_comfyui_extra_paths, sdgraph_home


def _touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "home"
    monkeypatch.setenv("SDGRAPH_HOME", str(root))
    ck = root / "models" / "checkpoints"
    _touch(ck / "sd15.safetensors")
    _touch(ck / "xl" / "juggernaut.safetensors")
    _touch(ck / "old" / "classic.ckpt")
    _touch(ck / "notes.txt")
    _touch(ck / ".hidden.safetensors")
    _touch(ck / "sd15.safetensors.sdgraph.json")
    _touch(ck / "pipe" / "model_index.json", b"{}")
    _touch(ck / "pipe" / "unet" / "diffusion_pytorch_model.safetensors")
    _touch(root / "models" / "vae" / "vae-ft-mse.safetensors")
    _touch(root / "models" / "loras" / "style" / "ink.safetensors")
    return root


def test_home_comes_from_the_environment(home: Path) -> None:
    assert sdgraph_home() == home


def test_listing(home: Path) -> None:
    folders = ModelFolders.default()
    assert folders.list_models("checkpoints") == [
        "old/classic.ckpt",
        "pipe",
        "sd15.safetensors",
        "xl/juggernaut.safetensors",
    ]
    entries = {e.name: e for e in folders.entries("checkpoints")}
    assert entries["old/classic.ckpt"].needs_pickle
    assert entries["pipe"].format == "diffusers"
    assert not entries["sd15.safetensors"].needs_pickle
    assert model_paths.list_models("vae") == ["vae-ft-mse.safetensors"]
    assert model_paths.list_models("loras") == ["style/ink.safetensors"]


def test_resolve(home: Path) -> None:
    ck = home / "models" / "checkpoints"
    assert model_paths.resolve("checkpoints", "xl/juggernaut.safetensors") == ck / "xl" / "juggernaut.safetensors"
    assert model_paths.resolve("checkpoints", "xl\\juggernaut.safetensors") == ck / "xl" / "juggernaut.safetensors"
    assert model_paths.resolve("checkpoints", "pipe") == ck / "pipe"


def test_missing_model_lists_closest_matches_first(home: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        model_paths.resolve("checkpoints", "sd15.safetensor")
    err = info.value
    assert err.available[0] == "sd15.safetensors"
    assert set(err.available) == set(ModelFolders.default().list_models("checkpoints"))
    assert "Closest matches: 'sd15.safetensors'" in str(err)
    with pytest.raises(ModelNotFoundError) as info:
        model_paths.resolve("checkpoints", "juggernaut.safetensors")
    assert info.value.available[0] == "xl/juggernaut.safetensors"


def test_empty_folder_says_where_to_put_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SDGRAPH_HOME", str(tmp_path / "empty"))
    with pytest.raises(ModelNotFoundError, match="models/vae folder"):
        model_paths.resolve("vae", "x.safetensors")


@pytest.mark.parametrize(
    "name", ["../vae/vae-ft-mse.safetensors", "xl/../../vae/vae-ft-mse.safetensors", "..\\secret.safetensors"]
)
def test_dot_dot_is_refused(home: Path, name: str) -> None:
    with pytest.raises(UnsafePathError, match=r"'\.\.'"):
        model_paths.resolve("checkpoints", name)


def test_absolute_paths_are_refused(home: Path) -> None:
    target = home / "models" / "checkpoints" / "sd15.safetensors"
    for name in [str(target), "C:\\models\\x.safetensors", "\\\\server\\share\\x.safetensors"]:
        with pytest.raises(UnsafePathError, match="absolute"):
            model_paths.resolve("checkpoints", name)


def test_symlinked_files_and_folders_are_listed_and_resolved(home: Path, tmp_path: Path) -> None:
    """A shared model store linked into the model folder, as people share one between ComfyUI, A1111 and
    sdgraph: a linked file, a linked folder of files and a linked diffusers folder are all offered and
    load by name; the target may live anywhere, since only the user can make a link there."""
    store = tmp_path / "store"
    outside = _touch(store / "stolen.safetensors")
    _touch(store / "more" / "deep.safetensors")
    _touch(tmp_path / "pipes" / "shared_pipe" / "model_index.json", b"{}")
    ck = home / "models" / "checkpoints"
    os.symlink(outside, ck / "link.safetensors")
    os.symlink(store, ck / "linkdir")
    os.symlink(tmp_path / "pipes" / "shared_pipe", ck / "shared_pipe")
    os.symlink(ck / "sd15.safetensors", ck / "inside_link.safetensors")
    os.symlink(tmp_path / "gone.safetensors", ck / "dangling.safetensors")
    os.symlink(ck, ck / "xl" / "loop")  # a link back up the tree must not recurse forever
    folders = ModelFolders.default()
    entries = {e.name: e for e in folders.entries("checkpoints")}
    assert set(entries) == {
        "old/classic.ckpt",
        "pipe",
        "sd15.safetensors",
        "xl/juggernaut.safetensors",
        "link.safetensors",
        "linkdir/stolen.safetensors",
        "linkdir/more/deep.safetensors",
        "shared_pipe",
        "inside_link.safetensors",
    }
    assert entries["shared_pipe"].format == "diffusers"
    assert model_paths.resolve("checkpoints", "link.safetensors") == ck / "link.safetensors"
    assert model_paths.resolve("checkpoints", "link.safetensors").read_bytes() == b"x"
    assert model_paths.resolve("checkpoints", "linkdir/more/deep.safetensors") == ck / "linkdir/more/deep.safetensors"
    assert model_paths.resolve("checkpoints", "shared_pipe") == ck / "shared_pipe"
    assert model_paths.resolve("checkpoints", "inside_link.safetensors").name == "inside_link.safetensors"
    with pytest.raises(ModelNotFoundError):
        model_paths.resolve("checkpoints", "dangling.safetensors")


@pytest.mark.parametrize(
    "name",
    ["linkdir/../../secret.safetensors", "../store/stolen.safetensors", "linkdir/..", "linkdir\\..\\x.safetensors"],
)
def test_links_do_not_let_names_climb_with_dot_dot(home: Path, tmp_path: Path, name: str) -> None:
    """Following the user's links does not open the way up: a name from a workflow still walks only down."""
    _touch(tmp_path / "store" / "stolen.safetensors")
    _touch(tmp_path / "secret.safetensors")
    os.symlink(tmp_path / "store", home / "models" / "checkpoints" / "linkdir")
    with pytest.raises(UnsafePathError, match=r"'\.\.'"):
        model_paths.resolve("checkpoints", name)


def test_absolute_names_are_refused_even_to_a_linked_store(home: Path, tmp_path: Path) -> None:
    target = _touch(tmp_path / "store" / "stolen.safetensors")
    os.symlink(tmp_path / "store", home / "models" / "checkpoints" / "linkdir")
    for name in [str(target), str(home / "models" / "checkpoints" / "linkdir" / "stolen.safetensors")]:
        with pytest.raises(UnsafePathError, match="absolute"):
            model_paths.resolve("checkpoints", name)


def test_a_linked_checkpoint_file_and_diffusers_folder_load(
    tmp_path: Path, monkeypatch, tiny_sd1_file: Path, tiny_sd1_folder: Path
) -> None:
    """End to end: Load Checkpoint offers and loads a linked single file and a linked diffusers folder."""
    from graph_engine import Executor, Graph
    from nodes import builtin_registry
    from nodes.folders import list_models

    monkeypatch.setenv("SDGRAPH_HOME", str(tmp_path / "home"))
    ck = tmp_path / "home" / "models" / "checkpoints"
    ck.mkdir(parents=True)
    os.symlink(tiny_sd1_file, ck / "linked.safetensors")
    os.symlink(tiny_sd1_folder, ck / "linked_pipe")
    assert list_models("checkpoints") == ["linked.safetensors", "linked_pipe"]
    for name in ("linked.safetensors", "linked_pipe"):
        g = Graph()
        loader = g.add_node("CheckpointLoaderSimple", {"ckpt_name": name}).id
        result = Executor(builtin_registry()).run(g, targets=[loader])
        assert result.status == "done", result.error
        model, clip, vae = result.outputs[loader]
        assert model.family == "sd1" and clip is not None and vae is not None


def test_extra_root_and_priority(home: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    _touch(extra / "checkpoints" / "sd15.safetensors")
    _touch(extra / "checkpoints" / "other.safetensors")
    folders = ModelFolders.default()
    folders.add_root(extra)
    assert "other.safetensors" in folders.list_models("checkpoints")
    assert folders.resolve("checkpoints", "sd15.safetensors") == home / "models" / "checkpoints" / "sd15.safetensors"
    assert folders.resolve("checkpoints", "other.safetensors") == extra / "checkpoints" / "other.safetensors"


def test_comfyui_extra_model_paths_yaml(home: Path, tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI"
    _touch(comfy / "models" / "checkpoints" / "comfy_model.safetensors")
    _touch(comfy / "models" / "loras" / "a.safetensors")
    _touch(comfy / "more_loras" / "b.safetensors")
    yaml_file = tmp_path / "extra_model_paths.yaml"
    yaml_file.write_text(
        f"""
comfyui:
    base_path: {comfy}
    checkpoints: models/checkpoints/
    vae: models/vae/
    loras: |
        models/loras/
        more_loras/
    upscale_models: models/upscale_models/
    clip_vision: models/clip_vision/
relative:
    base_path: ComfyUI
    checkpoints: models/checkpoints
"""
    )
    pairs = read_comfyui_extra_paths(yaml_file)
    assert ("checkpoints", comfy / "models/checkpoints/") in pairs
    assert ("loras", comfy / "more_loras") in pairs
    assert ("checkpoints", tmp_path / "ComfyUI" / "models/checkpoints") in pairs
    assert ("upscale_models", comfy / "models/upscale_models/") in pairs
    assert not any(kind == "clip_vision" for kind, _ in pairs)
    folders = ModelFolders.default()
    folders.add_comfyui_yaml(yaml_file)
    assert "comfy_model.safetensors" in folders.list_models("checkpoints")
    assert folders.list_models("loras") == ["a.safetensors", "b.safetensors", "style/ink.safetensors"]


def test_a1111_install(home: Path, tmp_path: Path) -> None:
    webui = tmp_path / "stable-diffusion-webui"
    _touch(webui / "models" / "Stable-diffusion" / "v1-5-pruned.safetensors")
    _touch(webui / "models" / "VAE" / "kl-f8.safetensors")
    _touch(webui / "models" / "Lora" / "detail.safetensors")
    _touch(webui / "models" / "ESRGAN" / "4x-UltraSharp.pth")
    folders = ModelFolders.default()
    folders.add_a1111(webui)
    assert folders.list_models("upscale_models") == ["4x-UltraSharp.pth"]
    assert "v1-5-pruned.safetensors" in folders.list_models("checkpoints")
    assert "kl-f8.safetensors" in folders.list_models("vae")
    assert "detail.safetensors" in folders.list_models("loras")
    with pytest.raises(Exception, match="AUTOMATIC1111"):
        folders.add_a1111(tmp_path / "nothing")


def test_unknown_kind(home: Path) -> None:
    with pytest.raises(ValueError, match="unknown model kind"):
        model_paths.list_models("clip_vision")  # not a kind sdgraph reads (yet)


def test_embeddings_folder_under_home_a1111_and_comfyui_yaml(home: Path, tmp_path: Path) -> None:
    """Textual inversions live in models/embeddings: ComfyUI yaml `embeddings`, A1111 <install>/embeddings."""
    _touch(home / "models" / "embeddings" / "mine.safetensors")
    webui = tmp_path / "webui"
    _touch(webui / "models" / "Stable-diffusion" / "x.safetensors")
    _touch(webui / "embeddings" / "a1111_emb.pt")
    comfy = tmp_path / "ComfyUI"
    _touch(comfy / "models" / "embeddings" / "comfy_emb.safetensors")
    yaml_file = tmp_path / "extra_model_paths.yaml"
    yaml_file.write_text(f"comfyui:\n    base_path: {comfy}\n    embeddings: models/embeddings/\n")
    folders = ModelFolders.default()
    folders.add_a1111(webui)
    folders.add_comfyui_yaml(yaml_file)
    assert folders.list_models("embeddings") == ["a1111_emb.pt", "comfy_emb.safetensors", "mine.safetensors"]
