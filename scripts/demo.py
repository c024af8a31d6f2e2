"""The main job on a fresh machine: run the shipped txt2img workflow headless, end to end.

Real Stable Diffusion weights cannot be downloaded here, so this writes a small checkpoint with seeded
random weights in the real single-file layout into a demo home (`.demo/`), then runs
`sdgraph run workflows/txt2img.json` against it exactly as a user would with a real checkpoint. The
picture is noise-like (the weights are random); everything around it — loading, tokenizing, encoding,
sampling, decoding, saving with the workflow embedded — is the real thing.

    .venv/bin/python scripts/demo.py

`--python` runs the demo with another interpreter's installed sdgraph instead (a wheel in another venv:
`tests/test_install.py` does that), from the demo home rather than the checkout, and with the template
that installation ships; `--home` puts the demo home elsewhere.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
HOME = ROOT / ".demo"
DEMO_CKPT = "demo-random-sd15.safetensors"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", help="an interpreter with sdgraph installed (default: this checkout)")
    parser.add_argument("--home", type=Path, default=HOME, help="the demo's SDGRAPH_HOME (default: .demo/)")
    args = parser.parse_args(argv)
    home: Path = args.home.resolve()
    sys.path.insert(0, str(ROOT))
    checkpoints = home / "models" / "checkpoints"
    if not (checkpoints / DEMO_CKPT).exists():
        from tests.support.tiny_sd import make_tiny

        checkpoints.mkdir(parents=True, exist_ok=True)
        make_tiny("sd1", checkpoints, name=DEMO_CKPT.removesuffix(".safetensors"), seed=0)
        print(f"wrote {checkpoints / DEMO_CKPT}", file=sys.stderr)
    env = {**os.environ, "SDGRAPH_HOME": str(home)}
    if args.python is None:
        from nodes.shipped import workflows_dir

        python, cwd, template = sys.executable, ROOT, workflows_dir() / "txt2img.json"
    else:
        # Away from the checkout (`-m` puts the working folder first on sys.path), so the installed
        # packages run, with the template they ship.
        env.pop("PYTHONPATH", None)
        python, cwd = args.python, home
        ask = "from nodes.shipped import workflows_dir; print(workflows_dir() / 'txt2img.json')"
        template = Path(subprocess.check_output([python, "-c", ask], cwd=cwd, env=env, text=True).strip())
    cmd = [
        python,
        "-m",
        "app",
        "run",
        str(template),
        "--model-alias",
        f"v1-5-pruned-emaonly.safetensors={DEMO_CKPT}",
        "--set",
        "EmptyLatentImage.width=256",
        "--set",
        "EmptyLatentImage.height=256",
        "--set",
        "KSampler.steps=10",
        "--output-dir",
        str(home / "output"),
    ]
    print("$ " + " ".join(cmd[2:]), file=sys.stderr)
    return subprocess.call(cmd, cwd=cwd, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
