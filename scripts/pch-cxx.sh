#!/usr/bin/env bash
# A C++ compiler front for building mmcv-full: its ~73 C++ sources all include <torch/types.h> (through
# pytorch_cpp_helper.hpp), and parsing torch's headers is most of each file's compile time (bench/mmcv_build.py:
# nms.cpp takes 11.5 s, 10 s of it -fsyntax-only). This script precompiles <torch/types.h> once per build, from
# the first source's own command line (so the flags match by construction), and has every compile use it.
# (A precompiled <torch/extension.h>, which adds pybind11 and Python's headers, made compiles slower, not faster.)
#
#   CXX=scripts/pch-cxx.sh MODEL_HUB_MMDET_PCH_DIR=DIR  (set by scripts/install.sh; REAL_CXX: the compiler, c++)
#
# Anything that is not a plain compile of one C++ source (links, probes) goes to the compiler unchanged. If the
# precompiled header cannot be built, or gcc finds it does not fit a source's flags, that source is compiled
# the ordinary way (gcc falls back to the header itself), so the result never depends on this script.
set -euo pipefail

REAL_CXX="${REAL_CXX:-c++}"
PCH_DIR="${MODEL_HUB_MMDET_PCH_DIR:-}"

src="" out="" compile=0
prev=""
for arg in "$@"; do
  case "$prev" in
    -o) out="$arg" ;;
  esac
  case "$arg" in
    -c) compile=1 ;;
    *.cpp | *.cc | *.cxx) src="$arg" ;;
  esac
  prev="$arg"
done

if [ -z "$PCH_DIR" ] || [ "$compile" != 1 ] || [ -z "$src" ] || [ -z "$out" ]; then
  exec "$REAL_CXX" "$@"
fi

header="$PCH_DIR/torch_types.h"
gch="$header.gch"
(
  flock 9
  if [ ! -e "$gch" ] && [ ! -e "$PCH_DIR/failed" ]; then
    printf '#pragma once\n#include <torch/types.h>\n' >"$header"
    # The same flags as this compile, minus what names its input, output and dependency file.
    pch_args=() skip=0
    for arg in "$@"; do
      if [ "$skip" = 1 ]; then skip=0; continue; fi
      case "$arg" in
        -c | -MMD | -MD) ;;
        -o | -MF) skip=1 ;;
        "$src") ;;
        *) pch_args+=("$arg") ;;
      esac
    done
    if "$REAL_CXX" "${pch_args[@]}" -x c++-header "$header" -o "$gch.tmp" 2>"$PCH_DIR/pch.log"; then
      mv "$gch.tmp" "$gch"
    else
      touch "$PCH_DIR/failed"  # compile every source the ordinary way
    fi
  fi
) 9>"$PCH_DIR/.lock"

if [ -e "$gch" ]; then
  exec "$REAL_CXX" -include "$header" -Winvalid-pch "$@"
fi
exec "$REAL_CXX" "$@"
