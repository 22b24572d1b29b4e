#!/usr/bin/env bash
# Creates .venv with the CPU build of PyTorch and this project (with test extras). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# The CPU wheel (no multi-GB CUDA build). Where pip would fetch a CUDA build, point TORCH_SPEC or
# pip's index at PyTorch's CPU wheels first; any torch >= 2.4 already installed is kept.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install --quiet -e ".[dev]"
