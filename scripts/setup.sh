#!/usr/bin/env bash
# Creates .venv with the CPU build of PyTorch and this project (with test extras). Safe to re-run: once
# installed, it does nothing until pyproject.toml, this script or the checkout's folder changes. pip speaks
# only of errors (-qq): a pip.conf naming index folders that lack a package warns once per package.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
stamp=.venv/.installed-from
wanted="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1) $PWD"
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  echo "Setting up .venv (the first time only: ~2 min, 2.7 GB with CPU PyTorch)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --quiet --upgrade pip
# The CPU wheel (no multi-GB CUDA build). Where pip would fetch a CUDA build, point TORCH_SPEC or
# pip's index at PyTorch's CPU wheels first; any torch >= 2.4 already installed is kept.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install --quiet --quiet "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install --quiet --quiet -e ".[dev]"
echo "$wanted" > "$stamp"
