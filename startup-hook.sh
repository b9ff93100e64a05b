#!/usr/bin/env bash
# Determined runs this in every task container before the entrypoint (it is part of the uploaded context).
# It installs model_hub_mmdet and MMDetection 2.28 into the image's Python, whose torch (CUDA) is kept.
# mmcv-full has no PyPI wheel: bake a wheel built with scripts/install.sh into your image, or point
# MMCV_FULL_WHEEL at one on shared storage; without it the build from source takes ~10 min per container.
set -euo pipefail
if ! python3 -c "import mmcv.ops" 2>/dev/null; then
  if [ -n "${MMCV_FULL_WHEEL:-}" ]; then
    pip install --no-deps "$MMCV_FULL_WHEEL"
  else
    VENV=none PYTHON=python3 bash scripts/install.sh
  fi
fi
pip install -q -e .
