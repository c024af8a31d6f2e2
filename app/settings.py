"""User settings and folders, shared by the window and the headless runner.

Everything lives under one home folder: the platform's user data folder, or `SDGRAPH_HOME` when set
(tests always set it, so they never touch a real user's files). Settings are a small JSON file there;
unknown keys are kept so a newer version's settings survive an older one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from graph_engine.serialization import atomic_write


def home_dir() -> Path:
    env = os.environ.get("SDGRAPH_HOME")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("sdgraph", appauthor=False))


@dataclass
class Settings:
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "exact"  # exact | fast
    theme: str = "dark"  # dark | light
    compile: bool = False  # torch.compile the UNet (CPU: inductor freezing), once per image size
    output_dir: str = ""  # empty: <home>/output
    cache_budget_mb: int = 2048
    model_budget_mb: int = 0  # 0: decided from the machine's memory
    vram_budget_mb: int = 0  # GPU: idle models move to the CPU beyond this; 0: whatever the card has
    png_compress_level: int = 4  # Save Image's zlib level: 0 (fastest, biggest) .. 9 (slowest); ComfyUI uses 4
    upscale_tile_size: int = 0  # Upscale Image (using Model): tile pixels; 0: whole image, tiles on out-of-memory
    extra_model_roots: list[str] = field(default_factory=list)
    comfyui_extra_model_paths: str = ""  # a ComfyUI extra_model_paths.yaml to read
    a1111_install: str = ""  # an AUTOMATIC1111/Forge folder whose models/ to use
    recent_files: list[str] = field(default_factory=list)
    # Node titles as ComfyUI shows them ("CLIP Text Encode (Prompt)") or sdgraph's ("Encode Prompt");
    # search finds either way. See ui.node_titles.
    node_titles: str = "comfyui"  # comfyui | sdgraph
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir) if self.output_dir else home_dir() / "output"

    def apply_model_folders(self) -> None:
        """Tell the nodes where models live beyond `<home>/models` (extra roots, ComfyUI, A1111)."""
        from nodes.folders import configure

        configure(self.extra_model_roots, self.comfyui_extra_model_paths, self.a1111_install)

    @classmethod
    def path(cls) -> Path:
        return home_dir() / "settings.json"

    @classmethod
    def load(cls) -> Settings:
        """Read the settings; a missing or unreadable file gives the defaults rather than an error."""
        try:
            data = json.loads(cls.path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        known = {f.name for f in fields(cls)} - {"extra"}
        settings = cls()
        for key, value in data.items():
            if key in known and isinstance(value, type(getattr(settings, key))):
                setattr(settings, key, value)
            elif key not in known:
                settings.extra[key] = value
        return settings

    def save(self) -> None:
        data = asdict(self)
        extra = data.pop("extra")
        data.update(extra)
        path = self.path()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(data, indent=2))

    def add_recent(self, path: Path | str, limit: int = 10) -> None:
        p = str(Path(path).resolve())
        self.recent_files = [p, *[r for r in self.recent_files if r != p][: limit - 1]]
