#!/usr/bin/env bash
# Install spandrel (upscale models: ESRGAN, SwinIR, HAT, DAT, …) into sdgraph's venv without ever
# replacing torch.
#
# Why not a plain "pip install spandrel": spandrel requires torchvision, and PyPI's torchvision wheels are
# CUDA builds pinned to one torch release. With a CPU torch, pip either installs a torchvision that fails
# to import ("operator torchvision::nms does not exist", and transformers then fails to import as well) or,
# for a newer torchvision, swaps torch for a multi-GB CUDA build. The upscalers need no torchvision
# (nodes/diffusion/spandrel_import.py), so:
#   * CPU build of torch: spandrel without its dependencies, plus einops. No torchvision.
#   * CUDA/ROCm build: the [upscale] extra with torch pinned to the installed version, so pip picks the
#     torchvision built for it; if that torchvision does not import (a torch from another index), it is
#     removed again and the CPU route is used.
# Usage: scripts/install_upscale.sh [python]   (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
SPANDREL='spandrel>=0.4.2,<0.5'

torch_version=$("$PY" -c 'import torch; print(torch.__version__)')
build=$("$PY" -c 'import torch; print("cuda" if torch.version.cuda else "rocm" if torch.version.hip else "cpu")')
build=${SDGRAPH_TORCH_BUILD:-$build}  # "cuda" forces the GPU route (how its fallback was checked on a CPU torch)
had_torchvision=$("$PY" -c 'import importlib.util as u; print(int(u.find_spec("torchvision") is not None))')

no_deps_install() {
    # pip notes that spandrel "requires torchvision, which is not installed": expected, and harmless.
    "$PY" -m pip install -q --no-deps "$SPANDREL"
    # spandrel's own dependencies except torchvision, torch pinned so nothing can move it.
    "$PY" -m pip install -q "einops>=0.7" safetensors numpy typing_extensions "torch==$torch_version"
}

if [ "$build" = cpu ]; then
    no_deps_install
else
    # torch pinned in the same request: pip may not replace it, only match torchvision to it.
    if "$PY" -m pip install -q -e ".[upscale]" "torch==$torch_version"; then
        if ! "$PY" -c 'import torchvision' 2>/dev/null; then
            echo "torchvision does not load next to torch $torch_version; using spandrel without it" >&2
            [ "$had_torchvision" = 1 ] || "$PY" -m pip uninstall -q -y torchvision
            no_deps_install
        fi
    else
        echo "no torchvision matches torch $torch_version here; using spandrel without it" >&2
        no_deps_install
    fi
fi

after=$("$PY" -c 'import torch; print(torch.__version__)')
if [ "$after" != "$torch_version" ]; then
    echo "torch changed from $torch_version to $after: this must not happen" >&2
    exit 1
fi
"$PY" -c 'from nodes.diffusion.spandrel_import import import_spandrel; print("spandrel", import_spandrel().__version__, "ready")'
