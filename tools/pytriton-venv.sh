#!/usr/bin/env bash
# A virtual environment with PyTriton's real Triton server (Python backend), for tools/pytriton_server.py and
# the server tests in tests/test_triton.py (skipped without it). Its own environment: nvidia-pytriton 0.7 pins
# numpy<2. About 480 MB and 3 minutes on the project's 2-core machines (measured 2026-11-25).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-triton
.venv-triton/bin/python -m pip install -q --upgrade pip
.venv-triton/bin/python -m pip install -q "nvidia-pytriton==0.7.0" onnxruntime
echo "ready: .venv-triton/bin/python tools/pytriton_server.py c3d=export/triton/c3d"
