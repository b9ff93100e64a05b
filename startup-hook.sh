#!/usr/bin/env bash
# Determined runs this in every task container before the entrypoint (it is part of the uploaded context).
# It installs model_hub_mmdet and one MMDetection generation into the image's Python, whose torch (CUDA) is kept:
#
#   MODEL_HUB_MMDET_GENERATION=2 (default)  MMDetection 2.28 with mmcv-full 1.7.2
#   MODEL_HUB_MMDET_GENERATION=3            MMDetection 3.3 with mmcv 2.1.0 and mmengine 0.10.7
#
# (set it under `environment:` in the experiment file). Neither mmcv has a PyPI wheel for current torch: bake a
# wheel built with `VENV=none PYTHON=python3 MMDET=<generation> bash scripts/install.sh` into your image, or point
# MMCV_WHEEL (MMCV_FULL_WHEEL still works for generation 2) at one on shared storage; without either, the build
# from source takes minutes per container.
set -euo pipefail
gen="${MODEL_HUB_MMDET_GENERATION:-2}"
case "$gen" in
  2) mmcv_dist=mmcv-full other_dist=mmcv wheel="${MMCV_WHEEL:-${MMCV_FULL_WHEEL:-}}" ;;
  3) mmcv_dist=mmcv other_dist=mmcv-full wheel="${MMCV_WHEEL:-}" ;;
  *) echo "startup-hook.sh: MODEL_HUB_MMDET_GENERATION must be 2 or 3, not '$gen'" >&2; exit 1 ;;
esac

# This generation's mmcv, with its compiled ops, already importable?
if ! python3 - "$mmcv_dist" <<'EOF_PY' 2>/dev/null
import importlib.metadata as md, sys
md.version(sys.argv[1])
import mmcv.ops  # noqa: F401
EOF_PY
then
  if [ -n "$wheel" ]; then
    # Both dists install the package `mmcv`: the other generation's goes first.
    pip uninstall -q -y "$other_dist" 2>/dev/null || true
    pip install --no-deps --force-reinstall "$wheel"
  else
    VENV=none PYTHON=python3 MMDET="$gen" bash scripts/install.sh
  fi
fi

# The package with the generation's extra, keeping the image's torch: pinned as it is, pip cannot replace it.
constraints="$(mktemp)"
python3 -c 'import torch; print(f"torch=={torch.__version__}")' >"$constraints" 2>/dev/null || true
pip install -q -c "$constraints" -e ".[mmdet$gen]"
rm -f "$constraints"
# mmdet's COCO panoptic dataset and metric import panopticapi (PyPI: panopticapi-lite, whose metadata pins numpy<2
# although it runs on numpy 2): installed without its dependencies, as scripts/install.sh does.
python3 -c 'import importlib.metadata as m; m.version("panopticapi-lite")' 2>/dev/null \
  || pip install -q --no-deps "panopticapi-lite==0.2.0"
# mmengine (generation 3) asks for opencv-python, which shares cv2 with opencv-python-headless and needs libGL:
# when both are installed, cv2 is made headless's again.
if pip show -q opencv-python >/dev/null 2>&1 && pip show -q opencv-python-headless >/dev/null 2>&1; then
  pip install -q --no-deps --force-reinstall \
    "opencv-python-headless==$(python3 -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')"
fi
