#!/usr/bin/env bash
# Create .venv with everything sdgraph needs (CPU torch unless one is already installed there).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: a bare "torch" requirement would pull a multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[sd,gui,server,dev,cluster]"
# Upscale models (spandrel) without ever replacing torch: no torchvision next to a CPU torch, the matched
# one next to a CUDA torch (see the script for why a plain "pip install spandrel" is not used).
./scripts/install_upscale.sh .venv/bin/python
# The window (not the headless runner) needs three X11 libraries that PySide6 does not ship. On a bare
# Debian/Ubuntu:  sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1
# This only prints that hint when they are missing; it never fails the setup.
.venv/bin/python -m app.qt_libs || true
