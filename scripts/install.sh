#!/usr/bin/env bash
# Installs the whole model_hub_mmdet stack for one MMDetection generation (idempotent; safe to re-run).
#
#   bash scripts/install.sh                 # MMDetection 2.28 (mmcv-full 1.7.2) into ./.venv
#   MMDET=3 bash scripts/install.sh         # MMDetection 3.3 (mmcv 2.1.0, mmengine 0.10.7) into ./.venv-mmdet3
#   VENV=/some/where bash scripts/install.sh
#   VENV=none PYTHON=python3 MMDET=2|3 bash scripts/install.sh   # into that Python itself, keeping its torch (images)
#   CUDA=1 bash scripts/install.sh          # mmcv with CUDA ops, also on a machine without a GPU (see below)
#   BUILD_ONLY=1 bash scripts/install.sh    # (or --wheel-only) only build and cache the mmcv wheel with that
#                                           # Python's torch, print its path and stop; installs nothing but
#                                           # missing build tools (WHEEL_OUT=DIR: also copy the wheel there)
#
# CUDA ops (CUDA=1, i.e. FORCE_CUDA=1; without either they are built only when nvcc and a GPU are both there):
#   TORCH_CUDA_ARCH_LIST  GPU architectures to compile for; default: those of the GPUs Determined clusters run
#                         (V100 7.0, A100 8.0, H100 9.0, +PTX for newer ones), raised to the toolkit's oldest
#                         where it has dropped Volta (CUDA 13: 7.5). See docs/cluster.md.
#   CUDA_HOME             the toolkit; default: the one the nvcc on PATH belongs to (wrappers resolved), else
#                         NVIDIA's PyPI toolkit packages pinned to torch's CUDA version, installed once into a
#                         folder beside the wheel cache. A toolkit whose major.minor differs from torch's is refused.
#
# The only slow step is mmcv (mmcv-full 1.7.2 for 2.x, mmcv 2.1.0 for 3.x), which has no wheel on PyPI for current
# torch: it is built from its sdist (patched for torch 2.14's C++20 headers) once, and the wheel is cached under
# $MODEL_HUB_MMDET_WHEEL_CACHE keyed by python, torch version and CPU/CUDA ops, so later installs take seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MMDET="${MMDET:-2}"
PYTHON="${PYTHON:-python3.11}"
TORCH_VERSION="2.14.1"
TORCHVISION_VERSION="0.29.1"
WHEEL_CACHE="${MODEL_HUB_MMDET_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/model_hub_mmdet/wheels}"

# Each step says how long the install has run so far (a cold install spends most of it building mmcv).
STARTED=$SECONDS
step() { printf '\n==> [%dm%02ds] %s\n' $(((SECONDS - STARTED) / 60)) $(((SECONDS - STARTED) % 60)) "$*"; }
die() { printf '\ninstall.sh: error: %s\n' "$*" >&2; exit 1; }

# What differs between the generations; everything below is shared.
case "$MMDET" in
  2)
    VENV="${VENV:-$ROOT/.venv}"
    MMCV_DIST=mmcv-full MMCV_VERSION=1.7.2 OTHER_MMCV_DIST=mmcv
    # mmcv 1.7's Config.pretty_text passes verify=True, which newer yapf rejects.
    GEN_BUILD_REQS=("yapf==0.40.1")
    ;;
  3)
    VENV="${VENV:-$ROOT/.venv-mmdet3}"
    MMCV_DIST=mmcv MMCV_VERSION=2.1.0 OTHER_MMCV_DIST=mmcv-full  # mmdet 3.3 asserts mmcv < 2.2.0
    GEN_BUILD_REQS=()
    ;;
  *) die "MMDET must be 2 or 3, not '$MMDET'" ;;
esac
EXTRAS="mmdet$MMDET,test"
BUILD_ONLY="${BUILD_ONLY:-0}"
for arg in "$@"; do
  case "$arg" in
    --wheel-only | --build-only) BUILD_ONLY=1 ;;
    *) die "unknown argument '$arg' (the only one is --wheel-only; the rest are environment variables)" ;;
  esac
done
# CUDA=1|0 (the Makefile's spelling) is FORCE_CUDA=1|0 unless that is set itself.
if [ -n "${CUDA:-}" ] && [ -z "${FORCE_CUDA:-}" ]; then
  case "$CUDA" in 0 | 1) FORCE_CUDA="$CUDA" ;; *) die "CUDA must be 0 or 1, not '$CUDA'" ;; esac
fi

# torch 2.14's metadata asks for setuptools>=77 while mmcv's build needs <70; pip reports that mismatch as an
# "ERROR" on every install although nothing is wrong. Drop just those lines, keep pip's exit status.
pip_quiet() {
  "${PIP[@]}" "$@" 2>&1 | { grep -v -e "dependency resolver does not currently take into account" \
    -e "requires setuptools>=" || true; }
  return "${PIPESTATUS[0]}"
}
trap 'die "step failed at line $LINENO (see the output above)"' ERR

command -v "$PYTHON" >/dev/null || die "$PYTHON not found; set PYTHON=/path/to/python3.11"

# A full disk otherwise fails deep inside pip ("[Errno 28] No space left on device") with a half-installed
# environment: say up front where the space is missing. NEED_GIB: torch's CUDA build with its nvidia-* wheels
# is ~6 GiB installed, and pip unpacks each wheel under TMPDIR first.
NEED_GIB="${MODEL_HUB_MMDET_NEED_GIB:-7}"
free_gib() {  # free_gib PATH: GiB free on PATH's filesystem (PATH's nearest existing ancestor)
  local path="$1"
  while [ ! -e "$path" ]; do path="$(dirname "$path")"; done
  df -Pk "$path" | awk 'NR == 2 { printf "%d", $4 / 1048576 }'
}
check_free_space() {  # check_free_space WHAT PATH
  local free
  free="$(free_gib "$2")"
  [ "$free" -ge "$NEED_GIB" ] || die "only $free GiB free for the $1 ($2); a cold install needs about \
$NEED_GIB GiB there: free some space (e.g. old runs/ or pytest's /tmp/pytest-of-$(id -un)) or point it elsewhere"
}
if [ "$BUILD_ONLY" = 1 ]; then
  step "MMDetection $MMDET.x's $MMCV_DIST $MMCV_VERSION wheel, built with the torch of ${VENV/#none/this Python ($PYTHON)}"
else
  step "MMDetection $MMDET.x stack ($MMCV_DIST $MMCV_VERSION) into ${VENV/#none/this Python ($PYTHON)}"
fi

if [ "$VENV" = none ]; then
  PY="$(command -v "$PYTHON")"
elif [ -x "$VENV/bin/python" ]; then
  PY="$VENV/bin/python"
elif [ "$BUILD_ONLY" = 1 ]; then
  die "BUILD_ONLY=1 builds with an existing Python's torch: $VENV has no bin/python (set VENV=none PYTHON=..., or \
install first)"
else
  step "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
  PY="$VENV/bin/python"
fi
PIP=("$PY" -m pip --disable-pip-version-check)
export PIP_NO_INPUT=1

if [ "$BUILD_ONLY" = 1 ]; then
  "$PY" -c 'import torch' 2>/dev/null || die "BUILD_ONLY=1 builds against the torch of $PY, which has none"
  step "building only, against this Python's torch $("$PY" -c 'import torch; print(torch.__version__)')"
  TORCH_PINS=()
elif [ "$VENV" = none ] && "$PY" -c 'import torch, torchvision' 2>/dev/null; then
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
BUILD_REQS=("${TORCH_PINS[@]}" wheel ninja "numpy>=2" "opencv-python-headless>=4.8" "${GEN_BUILD_REQS[@]}")
[ "$BUILD_ONLY" = 1 ] && BUILD_REQS=(wheel ninja numpy)  # what compiling mmcv needs besides torch
if satisfied "${BUILD_REQS[@]}" "setuptools<70"; then
  step "torch, torchvision and build tools already installed"
elif [ "$BUILD_ONLY" = 1 ]; then
  die "BUILD_ONLY=1 installs nothing, and $PY lacks some of the build tools: $PY -m pip install ${BUILD_REQS[*]} \
'setuptools<70'"
else
  check_free_space "environment (VENV)" "${VENV/#none/$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')}"
  check_free_space "temporary files (TMPDIR)" "${TMPDIR:-/tmp}"
  step "torch, torchvision and build tools"
  "${PIP[@]}" install -q "${BUILD_REQS[@]}"
  # mmcv's setup.py imports pkg_resources (gone in setuptools>=70); torch's metadata asks for >=77 but
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
case "$FORCE_CUDA" in 0 | 1) ;; *) die "FORCE_CUDA must be 0 or 1, not '$FORCE_CUDA'" ;; esac

# The CUDA toolkit nvcc belongs to. A wrapper script on PATH (exec /usr/local/cuda-X/bin/nvcc "$@") is seen
# through by asking nvcc where it runs from (its --dryrun prints _HERE_): torch itself would take the wrapper's
# parent folder for CUDA_HOME.
nvcc_toolkit() {  # nvcc_toolkit NVCC: prints the toolkit folder, or nothing
  local here
  here="$("$1" --dryrun -c -x cu /dev/null 2>&1 | sed -n 's/^#\$ _HERE_=//p' | head -n1)"
  if [ -n "$here" ] && [ -x "$here/nvcc" ]; then
    (cd "$here/.." && pwd)
  elif [ -x "$1" ] && head -c 4 "$(readlink -f "$1")" | grep -q ELF; then
    dirname "$(dirname "$(readlink -f "$1")")"
  fi
}
toolkit_version() {  # toolkit_version DIR: major.minor of the nvcc in DIR/bin
  "$1/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p' | head -n1
}
# NVIDIA's PyPI toolkit (nvcc, its crt headers, nvvm/cicc, CCCL, the runtime), pinned to torch's CUDA
# major.minor (unpinned it resolves to the newest), installed into a folder of its own beside the wheel cache.
pypi_toolkit() {  # pypi_toolkit X.Y: prints the toolkit folder
  local ver="$1" major="${1%%.*}" target
  target="${MODEL_HUB_MMDET_CUDA_TOOLKITS:-$(dirname "$WHEEL_CACHE")/cuda-toolkits}/cuda-$ver"
  if [ ! -x "$target/nvidia/cu$major/bin/nvcc" ]; then
    step "NVIDIA's CUDA $ver toolkit from PyPI into $target" >&2
    rm -rf "$target.tmp"
    "${PIP[@]}" install -q --no-deps --target "$target.tmp" "nvidia-cuda-nvcc==$ver.*" "nvidia-cuda-crt==$ver.*" \
      "nvidia-nvvm==$ver.*" "nvidia-cuda-cccl==$ver.*" "nvidia-cuda-runtime==$ver.*" >&2
    rm -rf "$target" && mv "$target.tmp" "$target"
  fi
  local home="$target/nvidia/cu$major"
  # torch links with -L$CUDA_HOME/lib64 -lcudart; the wheels ship lib/ and only libcudart.so.$major.
  [ -e "$home/lib64" ] || ln -s lib "$home/lib64"
  [ -e "$home/lib/libcudart.so" ] || ln -s "libcudart.so.$major" "$home/lib/libcudart.so"
  echo "$home"
}

OPS=cpu
if [ "$FORCE_CUDA" = 1 ]; then
  TORCH_CUDA="$("$PY" -c 'import torch; print(torch.version.cuda or "")')"
  [ -n "$TORCH_CUDA" ] || die "CUDA ops need a CUDA build of torch; $PY has torch \
$("$PY" -c 'import torch; print(torch.__version__)') (CPU only): install a CUDA torch or build with CUDA=0"
  TORCH_CUDA="$(echo "$TORCH_CUDA" | cut -d. -f1-2)"
  if [ -n "${CUDA_HOME:-}" ]; then
    cuda_from="CUDA_HOME"
  elif command -v nvcc >/dev/null && CUDA_HOME="$(nvcc_toolkit "$(command -v nvcc)")" && [ -n "$CUDA_HOME" ]; then
    cuda_from="the nvcc on PATH ($(command -v nvcc))"
  else
    CUDA_HOME="$(pypi_toolkit "$TORCH_CUDA")"
    cuda_from="NVIDIA's PyPI packages"
  fi
  [ -x "$CUDA_HOME/bin/nvcc" ] || die "no nvcc in $CUDA_HOME/bin (the CUDA toolkit from $cuda_from): set CUDA_HOME \
to a CUDA $TORCH_CUDA toolkit"
  CUDA_VERSION="$(toolkit_version "$CUDA_HOME")"
  [ "$CUDA_VERSION" = "$TORCH_CUDA" ] || die "the CUDA toolkit in $CUDA_HOME (from $cuda_from) is CUDA \
$CUDA_VERSION but torch was built with CUDA $TORCH_CUDA: set CUDA_HOME to a CUDA $TORCH_CUDA toolkit (or unset \
it and take nvcc off PATH to use NVIDIA's PyPI packages nvidia-cuda-nvcc==$TORCH_CUDA.*)"
  if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
    # The GPUs of Determined clusters: V100 (7.0), A100 (8.0), H100 (9.0); SASS for X.0 also runs on X.y
    # (T4 7.5, A10 8.6, L4/L40 8.9), and 9.0's PTX lets newer GPUs (B200 10.0) compile it when loaded. A toolkit
    # that has dropped an architecture (CUDA 13 has no Volta: its oldest is 7.5, as for torch's own cu13
    # wheels) gets its oldest one instead.
    oldest="$("$CUDA_HOME/bin/nvcc" --list-gpu-arch 2>/dev/null | sed -n 's/^compute_\([0-9]*\)\([0-9]\)$/\1.\2/p' \
      | sort -t. -k1,1n -k2,2n | head -n1)"
    TORCH_CUDA_ARCH_LIST="7.0 8.0 9.0+PTX"
    if [ -n "$oldest" ] && awk -v o="$oldest" 'BEGIN { exit !(o > 7.0) }'; then
      TORCH_CUDA_ARCH_LIST="$oldest 8.0 9.0+PTX"
    fi
  fi
  export CUDA_HOME TORCH_CUDA_ARCH_LIST PATH="$CUDA_HOME/bin:$PATH"
  # torch's ATen/cuda headers include cuBLAS', cuSPARSE's, cuSOLVER's...: a pip-installed torch has those in its
  # nvidia-* wheels, not in the toolkit. gcc (also under nvcc) reads CPATH after the -I folders, so the toolkit's
  # own headers still come first.
  nvidia_include="$("$PY" - <<'EOF'
import importlib.util, pathlib
spec = importlib.util.find_spec("nvidia")
roots = list(spec.submodule_search_locations or []) if spec else []
print(":".join(str(p) for root in roots for p in sorted(pathlib.Path(root).glob("*/include"))))
EOF
)"
  [ -z "$nvidia_include" ] || export CPATH="${CPATH:+$CPATH:}$nvidia_include"
  # The cache key names the CUDA version and the architectures: a wheel for other GPUs is never reused.
  OPS="cuda$CUDA_VERSION-arch$(echo "$TORCH_CUDA_ARCH_LIST" | tr -s ' ;' '__')"
  step "CUDA ops: CUDA $CUDA_VERSION toolkit $CUDA_HOME (from $cuda_from), architectures $TORCH_CUDA_ARCH_LIST"
fi
TORCH_TAG="$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')"
PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"

# build_mmcv_wheel DIST VERSION CACHE_DIR: builds DIST==VERSION (mmcv-full or mmcv) from its sdist with compiled
# ops and publishes the wheel into CACHE_DIR; sets BUILT_WHEEL to its path.
build_mmcv_wheel() {
  local dist="$1" version="$2" cache_dir="$3" work src built
  if [ "$FORCE_CUDA" = 1 ]; then
    # A CUDA build takes hours of CPU on a small machine: it builds in a folder kept beside the cache (one per
    # key, locked), so a build that was stopped resumes where it stopped (pip builds in the source tree and torch's
    # ninja build skips the objects already compiled). The folder goes once the wheel is published.
    work="$cache_dir.build"
    mkdir -p "$work"
    exec 8>"$work.lock"
    flock -n 8 || die "another build of this wheel is running in $work; wait for it (or stop it)"
    if [ -d "$work/$dist-$version" ]; then step "resuming the build kept in $work"; fi
  else
    work="$(mktemp -d)"
  fi
  src="$work/$dist-$version"
  if [ ! -e "$src/setup.py" ]; then
    # --no-build-isolation: pip reads the sdist's metadata by running its setup.py, which needs torch.
    "${PIP[@]}" download -q --no-deps --no-build-isolation --no-binary :all: "$dist==$version" -d "$work"
    tar -xzf "$work/$dist-$version.tar.gz" -C "$work"
  fi
  # torch >= 2.13 headers require C++20; mmcv 1.7 and 2.1 hard-code -std=c++14/17.
  sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$src/setup.py"
  grep -q 'std=c++20' "$src/setup.py" || die "could not patch $dist setup.py for C++20"
  # Two ways to compile the same sources faster (bench/mmcv_build.py measures both, file by file):
  # -g0, no debug information (mmcv's flags come with Python's -g; the wheel shrinks too), and torch's headers
  # precompiled once (scripts/pch-cxx.sh). MODEL_HUB_MMDET_PCH=0 compiles every source the plain way.
  local pch=()
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
    printf 'note: torch headers could not be precompiled (compiled the plain way):\n%s\n' \
      "$(head -c 2000 "$work/pch/pch.log")"
  fi
  mkdir -p "$cache_dir"
  built="$(ls "$work"/dist/"${dist//-/_}"-*.whl | head -n1)"
  # Atomic publish: a concurrent install never sees a half-copied wheel.
  cp "$built" "$cache_dir/.tmp.$$" && mv "$cache_dir/.tmp.$$" "$cache_dir/$(basename "$built")"
  rm -rf "$work"
  if [ "$FORCE_CUDA" = 1 ]; then rm -f "$work.lock"; fi
  BUILT_WHEEL="$cache_dir/$(basename "$built")"
}

# The build key of the installed mmcv: which cache directory (python, torch, ops) its wheel came from.
installed_build_key() {
  "$PY" - "$1" <<'EOF' 2>/dev/null || true
import importlib.metadata as md, pathlib, sys
try:
    dist = md.distribution(sys.argv[1])
except md.PackageNotFoundError:
    raise SystemExit
marker = pathlib.Path(dist.locate_file("mmcv/.model_hub_mmdet_build_key"))
print(marker.read_text().strip() if marker.exists() else "")
EOF
}

CACHE_DIR="$WHEEL_CACHE/${MMCV_DIST//-/_}-$MMCV_VERSION/$PY_TAG-torch$TORCH_TAG-$OPS"

# build_cached: sets wheel to the cached wheel of this key, building it first if there is none.
build_cached() {
  wheel="$(ls "$CACHE_DIR/${MMCV_DIST//-/_}"-*.whl 2>/dev/null | head -n1 || true)"
  if [ -z "$wheel" ]; then
    if [ "$FORCE_CUDA" = 1 ]; then
      step "building $MMCV_DIST $MMCV_VERSION from its sdist ($OPS ops; CUDA kernels take about 40 CPU-seconds \
per .cu file and architecture, an hour or more on 2 cores)"
    else
      step "building $MMCV_DIST $MMCV_VERSION from its sdist ($OPS ops; about 3-4 minutes on 2 cores)"
    fi
    build_started=$SECONDS
    build_mmcv_wheel "$MMCV_DIST" "$MMCV_VERSION" "$CACHE_DIR"
    wheel="$BUILT_WHEEL"
    step "built $wheel in $((SECONDS - build_started)) s ($(du -k "$wheel" | cut -f1) KiB)"
  else
    step "using cached $MMCV_DIST wheel $wheel"
  fi
}

if [ "$BUILD_ONLY" = 1 ]; then
  build_cached
  if [ -n "${WHEEL_OUT:-}" ]; then
    mkdir -p "$WHEEL_OUT" && cp "$wheel" "$WHEEL_OUT/" && wheel="$WHEEL_OUT/$(basename "$wheel")"
  fi
  step "done: $wheel"
  exit 0
fi
# mmcv-full and mmcv both install the package `mmcv`: the other generation's goes first (a Python reused for
# both generations, VENV=none), and ours is then reinstalled whatever its marker says.
installed_key="$(installed_build_key "$MMCV_DIST")"
if satisfied "$OTHER_MMCV_DIST"; then
  step "removing $OTHER_MMCV_DIST (the other MMDetection generation's mmcv)"
  pip_quiet uninstall -q -y "$OTHER_MMCV_DIST"
  installed_key=""
fi

if [ "$installed_key" = "$CACHE_DIR" ]; then
  step "$MMCV_DIST $MMCV_VERSION already installed for this torch ($OPS)"
else
  build_cached
  "${PIP[@]}" install -q --no-deps --force-reinstall "$wheel"
  pip_quiet install -q addict packaging Pillow pyyaml
  # (Not through `import mmcv`: mmcv 2.x imports mmengine, which comes with the package's extra below.)
  "$PY" - "$MMCV_DIST" "$CACHE_DIR" <<'EOF'
import importlib.metadata as md, pathlib, sys
pathlib.Path(md.distribution(sys.argv[1]).locate_file("mmcv/.model_hub_mmdet_build_key")).write_text(sys.argv[2])
EOF
fi

# The package with the generation's extra. Skipped (pip alone takes ~20 s to find nothing to do) when it is
# installed editable from this tree, setup.py and pyproject.toml are unchanged since and every requirement of
# the package and its extras is met.
PKG_KEY="$ROOT [$EXTRAS] $(cat "$ROOT/setup.py" "$ROOT/pyproject.toml" | cksum)"
package_current() {
  "$PY" - "$PKG_KEY" "$EXTRAS" <<'EOF' 2>/dev/null
import importlib.metadata as md, pathlib, sys
from pip._vendor.packaging.requirements import Requirement
dist = md.distribution("model_hub_mmdet")
marker = pathlib.Path(dist._path) / "model_hub_mmdet_install_key"
if not marker.exists() or marker.read_text() != sys.argv[1]:
    sys.exit(1)
extras = [""] + sys.argv[2].split(",")
for spec in dist.requires or []:
    req = Requirement(spec)
    if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras):
        continue
    if not req.specifier.contains(md.version(req.name), prereleases=True):
        sys.exit(1)
EOF
}
if package_current; then
  step "model_hub_mmdet[$EXTRAS] already installed"
else
  step "model_hub_mmdet[$EXTRAS]: mmdet $MMDET.x, determined, cloud SDKs and test tools"
  pip_quiet install -q -e "$ROOT[$EXTRAS]"
  # mmengine's wheel asks for opencv-python, which shares the cv2 package with opencv-python-headless and needs
  # libGL: when pip has added it, cv2 is made headless's again (pip sees both requirements met).
  if satisfied opencv-python opencv-python-headless; then
    headless="opencv-python-headless==$("$PY" -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')"
    pip_quiet install -q --no-deps --force-reinstall "$headless"
  fi
  "$PY" - "$PKG_KEY" <<'EOF'
import importlib.metadata as md, pathlib, sys
pathlib.Path(md.distribution("model_hub_mmdet")._path, "model_hub_mmdet_install_key").write_text(sys.argv[1])
EOF
fi

# mmdet's COCO panoptic dataset and metric import panopticapi, which is on PyPI as panopticapi-lite; its metadata
# pins numpy<2, which would downgrade numpy although the code runs on numpy 2 (tests/test_metric_names.py holds
# its PQ against a hand computation), so it is installed without its dependencies (the rest are ours already).
if ! satisfied "panopticapi-lite==0.2.0"; then
  step "panopticapi-lite (COCO panoptic datasets and metrics)"
  pip_quiet install -q --no-deps "panopticapi-lite==0.2.0"
fi

step "checking the stack imports"
"$PY" - "$MMDET" "$MMCV_DIST" <<'EOF'
import logging, sys, warnings
warnings.simplefilter("ignore")  # mmcv-full's notice about mmcv 2.0; checked here is that it all imports
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime is found" on CPUs
import determined, mmcv, mmdet, torch
from mmcv.ops import nms  # noqa: F401  (compiled ops are present)
versions = [f"torch {torch.__version__}", f"{sys.argv[2]} {mmcv.__version__}"]
if sys.argv[1] == "3":
    import mmengine
    versions.append(f"mmengine {mmengine.__version__}")
versions += [f"mmdet {mmdet.__version__}", f"determined {determined.__version__}"]
assert mmdet.__version__.startswith(sys.argv[1] + "."), f"mmdet {mmdet.__version__} is not MMDetection {sys.argv[1]}.x"
print("  ".join(versions))
EOF
[ "$VENV" = none ] || step "done: activate with 'source $VENV/bin/activate'"
