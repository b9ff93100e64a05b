"""Compile time of mmcv-full's C++ sources, file by file, with the flags scripts/install.sh uses and without.

    .venv/bin/python bench/mmcv_build.py [--files 6] [--rounds 1]

Downloads the mmcv-full sdist (as install.sh does), patches it for C++20, and compiles a sample of its
``mmcv/ops/csrc/pytorch`` sources one at a time (one core; nothing else should run) with the command line
torch's ``BuildExtension`` writes into its build.ninja, three ways, alternating file by file:

* ``plain``: that command as it is (Python's CFLAGS, which include ``-g``): what a bare ``pip wheel`` compiles;
* ``-g0``: the same without debug information;
* ``-g0 + pch``: the same through ``scripts/pch-cxx.sh``, which precompiles ``<torch/types.h>`` once per build
  (timed apart: a build pays it once, before its first source).

It prints seconds per file and a whole-build estimate for the sdist's number of sources on this machine's cores.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine_line, markdown_table, write_results  # noqa: E402

MMCV = "1.7.2"
VARIANTS = ("plain", "-g0", "-g0 + pch")


def sdist(work: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-build-isolation",
                    "--no-binary", ":all:", f"mmcv-full=={MMCV}", "-d", str(work)], check=True)
    with tarfile.open(work / f"mmcv-full-{MMCV}.tar.gz") as tar:
        tar.extractall(work, filter="data")
    return work / f"mmcv-full-{MMCV}"


def command(src_root: Path, source: str, obj: Path, extra: list[str]) -> list[str]:
    """The compile line torch's BuildExtension writes for mmcv's CPU sources (see its build.ninja)."""
    from torch.utils.cpp_extension import include_paths

    cflags = sysconfig.get_config_var("CFLAGS").split()
    includes = [str(src_root / "mmcv/ops/csrc/common"), *include_paths(),
                str(Path(sys.prefix) / "include"), sysconfig.get_paths()["include"]]
    return ["c++", "-MMD", "-MF", f"{obj}.d", *cflags, *extra, "-fPIC", *(f"-I{i}" for i in includes),
            "-c", source, "-o", str(obj), "-std=c++20", "-DTORCH_API_INCLUDE_EXTENSION_H",
            "-DTORCH_EXTENSION_NAME=_ext"]


def timed(cmd: list[str], env: dict | None = None) -> float:
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or "invalid-pch" in proc.stderr or "not using" in proc.stderr:
        raise SystemExit(f"{' '.join(cmd[:3])}...: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6, help="sources to compile (spread over the sorted list)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mmcv-build-") as tmp:
        work = Path(tmp)
        src_root = sdist(work)
        setup = src_root / "setup.py"
        setup.write_text(setup.read_text().replace("-std=c++14", "-std=c++20").replace("-std=c++17", "-std=c++20"))
        sources = sorted(glob.glob(str(src_root / "mmcv/ops/csrc/pytorch/*.cpp"))
                         + glob.glob(str(src_root / "mmcv/ops/csrc/pytorch/cpu/*.cpp")))
        step = max(1, len(sources) // args.files)
        sample = sources[::step][: args.files]
        seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
        pch_seconds = []
        wrapper = str(REPO / "scripts/pch-cxx.sh")
        for round_ in range(args.rounds):
            pch_dir = work / f"pch-{round_}"
            pch_dir.mkdir()
            env = dict(os.environ, REAL_CXX="c++", MODEL_HUB_MMDET_PCH_DIR=str(pch_dir))
            # The precompiled header alone: the wrapper builds it before the first source it compiles.
            first = [wrapper, *command(src_root, sample[0], work / "first.o", ["-g0"])[1:]]
            pch_seconds.append(timed(first, env) - timed(first, env))
            for i, source in enumerate(sample):
                order = VARIANTS if (i + round_) % 2 == 0 else tuple(reversed(VARIANTS))
                for variant in order:
                    extra = [] if variant == "plain" else ["-g0"]
                    cmd = command(src_root, source, work / f"{i}.o", extra)
                    if variant.endswith("pch"):
                        cmd = [wrapper, *cmd[1:]]  # the wrapper stands for the compiler
                    seconds[variant].append(timed(cmd, env))
                    print(f"  {Path(source).name} {variant}: {seconds[variant][-1]:.1f} s", file=sys.stderr)
    n_sources, cores = len(sources) + 1, os.cpu_count() or 1  # + pybind.cpp
    plain = statistics.fmean(seconds["plain"])
    rows = []
    for variant in VARIANTS:
        per_file = statistics.fmean(seconds[variant])
        build = n_sources * per_file / cores + (statistics.fmean(pch_seconds) if variant.endswith("pch") else 0)
        rows.append([variant, f"{per_file:.1f}", f"{plain / per_file:.2f}x", f"{build / 60:.1f}"])
    print(f"\n{len(sample)} of {len(sources)} sources, {args.rounds} round(s); precompiling torch's headers: "
          f"{statistics.fmean(pch_seconds):.1f} s; {machine_line()}\n")
    print(markdown_table(["flags", "s per source (mean)", "speed vs plain",
                          f"estimate for {n_sources} sources on {cores} cores, min"], rows))
    write_results("mmcv_build", {"seconds": seconds, "pch_seconds": pch_seconds, "sample": sample}, args.json)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
