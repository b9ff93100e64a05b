#!/usr/bin/env bash
# Installs the whole model_hub_mmdet stack into ./.venv (idempotent; safe to re-run).
#
#   bash scripts/install.sh            # runtime + test tools
#   VENV=/some/where bash scripts/install.sh
#   VENV=none PYTHON=python3 bash scripts/install.sh   # into that Python itself, keeping its torch (images)
#
# The only slow step is mmcv-full 1.7.2, which has no wheel on PyPI: it is built from its sdist
# (patched for torch 2.14's C++20 headers) once, and the wheel is cached under
# $MODEL_HUB_MMDET_WHEEL_CACHE keyed by python, torch version and CPU/CUDA ops, so later installs take seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
TORCH_VERSION="2.14.1"
TORCHVISION_VERSION="0.29.1"
MMCV_VERSION="1.7.2"
WHEEL_CACHE="${MODEL_HUB_MMDET_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/model_hub_mmdet/wheels}"

# Each step says how long the install has run so far (a cold install spends most of it building mmcv-full).
STARTED=$SECONDS
step() { printf '\n==> [%dm%02ds] %s\n' $(((SECONDS - STARTED) / 60)) $(((SECONDS - STARTED) % 60)) "$*"; }
# torch 2.14's metadata asks for setuptools>=77 while mmcv's build needs <70; pip reports that mismatch as an
# "ERROR" on every install although nothing is wrong. Drop just those lines, keep pip's exit status.
pip_quiet() {
  "${PIP[@]}" "$@" 2>&1 | { grep -v -e "dependency resolver does not currently take into account" \
    -e "requires setuptools>=" || true; }
  return "${PIPESTATUS[0]}"
}
die() { printf '\ninstall.sh: error: %s\n' "$*" >&2; exit 1; }
trap 'die "step failed at line $LINENO (see the output above)"' ERR

command -v "$PYTHON" >/dev/null || die "$PYTHON not found; set PYTHON=/path/to/python3.11"

if [ "$VENV" = none ]; then
  PY="$(command -v "$PYTHON")"
elif [ -x "$VENV/bin/python" ]; then
  PY="$VENV/bin/python"
else
  step "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
  PY="$VENV/bin/python"
fi
PIP=("$PY" -m pip --disable-pip-version-check)
export PIP_NO_INPUT=1

if [ "$VENV" = none ] && "$PY" -c 'import torch, torchvision' 2>/dev/null; then
  step "keeping this Python's torch $("$PY" -c 'import torch; print(torch.__version__)')"
  TORCH_PINS=()
else
  TORCH_PINS=("torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION")
fi
# Whether every requirement given is installed at a matching version (pip takes ~50 s to say so itself).
satisfied() {
  "$PY" - "$@" <<'EOF' 2>/dev/null
import importlib.metadata as md, sys
from pip._vendor.packaging.requirements import Requirement
for spec in sys.argv[1:]:
    req = Requirement(spec)
    try:
        version = md.version(req.name)
    except md.PackageNotFoundError:
        sys.exit(1)
    if not req.specifier.contains(version, prereleases=True):
        sys.exit(1)
EOF
}
BUILD_REQS=("${TORCH_PINS[@]}" wheel ninja "numpy>=2" "opencv-python-headless>=4.8" "yapf==0.40.1")
if satisfied "${BUILD_REQS[@]}" "setuptools<70"; then
  step "torch, torchvision and build tools already installed"
else
  step "torch, torchvision and build tools"
  "${PIP[@]}" install -q "${BUILD_REQS[@]}"
  # mmcv-full's setup.py imports pkg_resources (gone in setuptools>=70); torch's metadata asks for >=77 but
  # does not need it at run time, so this is installed on its own (pip only notes the mismatch).
  pip_quiet install -q "setuptools<70"
fi

# CUDA ops only where they can run: nvcc on PATH and a visible GPU (FORCE_CUDA=1/0 overrides).
if [ -z "${FORCE_CUDA:-}" ]; then
  if command -v nvcc >/dev/null && "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    FORCE_CUDA=1
  else
    FORCE_CUDA=0
  fi
fi
OPS=cpu; [ "$FORCE_CUDA" = 1 ] && OPS="cuda$("$PY" -c 'import torch; print(torch.version.cuda)')"
TORCH_TAG="$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')"
PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
CACHE_DIR="$WHEEL_CACHE/mmcv_full-$MMCV_VERSION/$PY_TAG-torch$TORCH_TAG-$OPS"

installed_mmcv_key="$("$PY" - <<'EOF' 2>/dev/null || true
import importlib.metadata as md, pathlib
try:
    dist = md.distribution("mmcv-full")
except md.PackageNotFoundError:
    raise SystemExit
marker = pathlib.Path(dist.locate_file("mmcv/.model_hub_mmdet_build_key"))
print(marker.read_text().strip() if marker.exists() else "")
EOF
)"

if [ "$installed_mmcv_key" = "$CACHE_DIR" ]; then
  step "mmcv-full $MMCV_VERSION already installed for this torch ($OPS)"
else
  wheel="$(ls "$CACHE_DIR"/mmcv_full-*.whl 2>/dev/null | head -n1 || true)"
  if [ -z "$wheel" ]; then
    step "building mmcv-full $MMCV_VERSION from its sdist ($OPS ops; about 3 minutes on 2 cores)"
    work="$(mktemp -d)"
    # --no-build-isolation: pip reads the sdist's metadata by running its setup.py, which needs torch.
    "${PIP[@]}" download -q --no-deps --no-build-isolation --no-binary :all: "mmcv-full==$MMCV_VERSION" -d "$work"
    tar -xzf "$work"/mmcv-full-"$MMCV_VERSION".tar.gz -C "$work"
    src="$work/mmcv-full-$MMCV_VERSION"
    # torch >= 2.13 headers require C++20; mmcv 1.7.2 hard-codes -std=c++14/17.
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$src/setup.py"
    grep -q 'std=c++20' "$src/setup.py" || die "could not patch mmcv-full setup.py for C++20"
    # Two ways to compile the same sources faster (bench/mmcv_build.py measures both, file by file):
    # -g0, no debug information (mmcv's flags come with Python's -g; the wheel shrinks too), and torch's headers
    # precompiled once (scripts/pch-cxx.sh). MODEL_HUB_MMDET_PCH=0 compiles every source the plain way.
    pch=()
    if [ "${MODEL_HUB_MMDET_PCH:-1}" != 0 ]; then
      mkdir -p "$work/pch"
      pch=(CXX="$ROOT/scripts/pch-cxx.sh" REAL_CXX="${CXX:-c++}" MODEL_HUB_MMDET_PCH_DIR="$work/pch")
    fi
    (
      cd "$src"
      env "${pch[@]}" CFLAGS="${CFLAGS:-} -g0" MMCV_WITH_OPS=1 FORCE_CUDA="$FORCE_CUDA" \
        MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$work/dist" .
    )
    if [ -e "$work/pch/failed" ]; then
      printf 'note: torch headers could not be precompiled (compiled the plain way):\n%s\n' "$(head -c 2000 "$work/pch/pch.log")"
    fi
    mkdir -p "$CACHE_DIR"
    built="$(ls "$work"/dist/mmcv_full-*.whl | head -n1)"
    # Atomic publish: a concurrent install never sees a half-copied wheel.
    cp "$built" "$CACHE_DIR/.tmp.$$" && mv "$CACHE_DIR/.tmp.$$" "$CACHE_DIR/$(basename "$built")"
    wheel="$CACHE_DIR/$(basename "$built")"
    rm -rf "$work"
  else
    step "using cached mmcv-full wheel $wheel"
  fi
  "${PIP[@]}" install -q --no-deps --force-reinstall "$wheel"
  pip_quiet install -q addict packaging Pillow pyyaml
  "$PY" - "$CACHE_DIR" <<'EOF'
import pathlib, sys, mmcv
pathlib.Path(mmcv.__file__).with_name(".model_hub_mmdet_build_key").write_text(sys.argv[1])
EOF
fi

step "model_hub_mmdet with mmdet, determined, cloud SDKs and test tools"
pip_quiet install -q -e "$ROOT[test]"

step "checking the stack imports"
"$PY" - <<'EOF'
import model_hub_mmdet  # noqa: F401  (applies compat fixes, registers backends)
import torch, mmcv, mmdet, determined
from mmcv.ops import nms  # noqa: F401  (compiled ops are present)
print(f"torch {torch.__version__}  mmcv-full {mmcv.__version__}  mmdet {mmdet.__version__}  determined {determined.__version__}")
EOF
[ "$VENV" = none ] || step "done: activate with 'source $VENV/bin/activate'"
