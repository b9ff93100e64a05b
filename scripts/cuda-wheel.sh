#!/usr/bin/env bash
# `make cuda-wheel MMDET=2|3`: builds one generation's mmcv wheel with CUDA ops (or takes it from the wheel cache)
# with that generation's environment's torch, installing nothing, then checks it (scripts/check_cuda_wheel.py):
# device code for each architecture, the detectors' CUDA entry points, an import with no GPU, CPU values equal to
# the environment's CPU build. Slow the first time (CUDA kernels: about 40 CPU-seconds per .cu file and
# architecture), so not part of `make test`.
#
#   MMDET=3 VENV=.venv-mmdet3 bash scripts/cuda-wheel.sh   # TORCH_CUDA_ARCH_LIST, CUDA_HOME, MAX_JOBS pass through
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MMDET="${MMDET:-2}"
case "$MMDET" in
  2) VENV="${VENV:-$ROOT/.venv}" ;;
  3) VENV="${VENV:-$ROOT/.venv-mmdet3}" ;;
  *) echo "cuda-wheel.sh: MMDET must be 2 or 3, not '$MMDET'" >&2; exit 1 ;;
esac
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
started=$SECONDS
MMDET="$MMDET" VENV="$VENV" BUILD_ONLY=1 CUDA=1 bash "$ROOT/scripts/install.sh" 2>&1 | tee "$log"
wheel="$(sed -n 's/^==> \[[^]]*\] done: //p' "$log" | tail -n1)"
[ -f "$wheel" ] || { echo "cuda-wheel.sh: scripts/install.sh named no wheel" >&2; exit 1; }
printf '\n==> [%ds] checking %s\n' $((SECONDS - started)) "$wheel"
"$VENV/bin/python" "$ROOT/scripts/check_cuda_wheel.py" "$wheel" ${CUDA_WHEEL_JSON:+--json "$CUDA_WHEEL_JSON"}
