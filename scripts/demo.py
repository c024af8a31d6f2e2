"""The main job on a fresh machine: run the shipped txt2img workflow headless, end to end.

Real Stable Diffusion weights cannot be downloaded here, so this writes a small checkpoint with seeded
random weights in the real single-file layout into a demo home (`.demo/`), then runs
`sdgraph run workflows/txt2img.json` against it exactly as a user would with a real checkpoint. The
picture is noise-like (the weights are random); everything around it — loading, tokenizing, encoding,
sampling, decoding, saving with the workflow embedded — is the real thing.

    .venv/bin/python scripts/demo.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
HOME = ROOT / ".demo"
DEMO_CKPT = "demo-random-sd15.safetensors"


def main() -> int:
    sys.path.insert(0, str(ROOT))
    checkpoints = HOME / "models" / "checkpoints"
    if not (checkpoints / DEMO_CKPT).exists():
        from tests.support.tiny_sd import make_tiny

        checkpoints.mkdir(parents=True, exist_ok=True)
        make_tiny("sd1", checkpoints, name=DEMO_CKPT.removesuffix(".safetensors"), seed=0)
        print(f"wrote {checkpoints / DEMO_CKPT}", file=sys.stderr)
    env = {**os.environ, "SDGRAPH_HOME": str(HOME)}
    cmd = [
        sys.executable,
        "-m",
        "app",
        "run",
        str(ROOT / "workflows" / "txt2img.json"),
        "--model-alias",
        f"v1-5-pruned-emaonly.safetensors={DEMO_CKPT}",
        "--set",
        "EmptyLatentImage.width=256",
        "--set",
        "EmptyLatentImage.height=256",
        "--set",
        "KSampler.steps=10",
        "--output-dir",
        str(HOME / "output"),
    ]
    print("$ " + " ".join(cmd[2:]), file=sys.stderr)
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
