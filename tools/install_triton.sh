#!/usr/bin/env bash
# Triton Inference Server for the local Triton tests and docs/serving.md. The tritonserver binary and its
# Python backend come with the nvidia-pytriton wheel, whose Python package pins numpy<2, so they get a
# virtual environment of their own, holding what the repository's Python models import: this project
# (editable), torch (the CPU wheel CI installs) and an OpenCV that runs on numpy 1.
# An environment that has them is kept (the project is installed into it again).
#
# Usage: tools/install_triton.sh [VENV]     (default: .cache/venv-triton)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.cache/venv-triton}"

if "$VENV/bin/python" -c "import pytriton, cv2, torch" 2>/dev/null; then
  # the project again, for requirements it gained since the environment was made
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-compile -e .
  echo "Triton environment: already in $VENV"
  exit 0
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
# opencv-python-headless 4.12 and later need numpy 2; pytriton 0.7.0 ships Triton 2.51 and its Python backend.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-compile \
  torch==2.13.0 nvidia-pytriton==0.7.0 'opencv-python-headless>=4.8,<4.12' -e .
echo "Triton environment: $VENV"
