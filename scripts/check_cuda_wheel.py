"""Checks an mmcv wheel built with CUDA ops, on any machine (no GPU needed):

1. its compiled extension holds device code (a cubin) for every architecture it was built for, and PTX where
   the list says ``+PTX`` (``cuobjdump --list-elf`` / ``--list-ptx``);
2. the CUDA entry points of the ops detectors use are in it (``nm -D``): RoIAlign, NMS, deformable and modulated
   deformable convolution, multi-scale deformable attention, sigmoid focal loss, and the others the zoo configs
   name (:data:`CUDA_ENTRY_POINTS`);
3. it imports with no GPU visible (installed with ``pip install --target`` into a folder put first on
   PYTHONPATH, beside this Python's torch), and says it was compiled with CUDA;
4. its CPU kernels give the values of this Python's own mmcv (a CPU build of the same version) on random inputs
   (scripts/mmcv_ops_probe.py).

    .venv/bin/python scripts/check_cuda_wheel.py WHEEL [--arch "7.5 8.0 9.0+PTX"] [--json OUT]

Run it with the Python of the wheel's generation (``.venv`` for mmcv-full 1.7, ``.venv-mmdet3`` for mmcv 2.1).
The architectures default to those in the wheel's cache folder name (``...-arch7.5_8.0_9.0+PTX``, written by
scripts/install.sh). Exit status 1 when any check fails; each failure is one line saying what is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROBE = HERE / "mmcv_ops_probe.py"
CPU_REFERENCE_ONLY = {"sigmoid_focal_loss", "ms_deform_attn"}  # mmcv_ops_probe.py's plain-torch stand-ins

# The CUDA entry points (host functions of the .cu files) behind the ops that MMDetection's detectors call: the
# ones the issue names, then every mmcv op the 2.28 and 3.3 zoo configs name that has a CUDA kernel.
CUDA_ENTRY_POINTS: dict[str, tuple[str, ...]] = {
    "RoIAlign": ("ROIAlignForwardCUDAKernelLauncher", "ROIAlignBackwardCUDAKernelLauncher"),
    "nms": ("NMSCUDAKernelLauncher",),
    "DeformConv2d": ("deformable_im2col_cuda", "deformable_col2im_cuda", "deformable_col2im_coord_cuda"),
    "ModulatedDeformConv2d": ("modulated_deformable_im2col_cuda", "modulated_deformable_col2im_cuda",
                              "modulated_deformable_col2im_coord_cuda"),
    "MultiScaleDeformableAttention": ("ms_deform_attn_cuda_forward", "ms_deform_attn_cuda_backward"),
    "sigmoid_focal_loss": ("SigmoidFocalLossForwardCUDAKernelLauncher", "SigmoidFocalLossBackwardCUDAKernelLauncher"),
    "DeformRoIPool": ("DeformRoIPoolForwardCUDAKernelLauncher", "DeformRoIPoolBackwardCUDAKernelLauncher"),
    "CARAFE": ("CARAFEForwardCUDAKernelLauncher", "CARAFEBackwardCUDAKernelLauncher"),
    "MaskedConv2d": ("MaskedIm2colForwardCUDAKernelLauncher", "MaskedCol2imForwardCUDAKernelLauncher"),
    "RoIPool": ("ROIPoolForwardCUDAKernelLauncher", "ROIPoolBackwardCUDAKernelLauncher"),
    "SyncBatchNorm (MMSyncBN)": ("SyncBNForwardMeanCUDAKernelLauncher", "SyncBNForwardVarCUDAKernelLauncher",
                                 "SyncBNForwardOutputCUDAKernelLauncher", "SyncBNBackwardParamCUDAKernelLauncher",
                                 "SyncBNBackwardDataCUDAKernelLauncher"),
}
# The ``type=`` names of mmcv ops that configs use, and the entry above each one runs (tests/test_cuda_wheel_check.py
# and tests/mmdet3/test_cuda_wheel_check.py keep this complete against the installed zoo). sigmoid_focal_loss is
# called by mmdet's FocalLoss on CUDA tensors; SAC (DetectoRS) and RepPoints/VFNet/TOOD heads use DeformConv2d.
ZOO_TYPES = {
    "RoIAlign": "RoIAlign", "nms": "nms", "DCN": "DeformConv2d", "DeformConv2dPack": "DeformConv2d",
    "SAC": "DeformConv2d", "DCNv2": "ModulatedDeformConv2d", "ModulatedDeformConv2dPack": "ModulatedDeformConv2d",
    "MultiScaleDeformableAttention": "MultiScaleDeformableAttention", "DeformRoIPoolPack": "DeformRoIPool",
    "ModulatedDeformRoIPoolPack": "DeformRoIPool", "carafe": "CARAFE", "CARAFEPack": "CARAFE", "RoIPool": "RoIPool",
    "MaskedConv2d": "MaskedConv2d", "MMSyncBN": "SyncBatchNorm (MMSyncBN)",  # (simple_copy_paste configs)
}
# The mmcv op types configs name that run no CUDA kernel of mmcv's: soft-NMS is CPU-only; SimpleRoIAlign is
# grid_sample; the rest are plain torch modules.
NO_CUDA_KERNEL = {"soft_nms", "SimpleRoIAlign", "ContextBlock", "GeneralizedAttention", "ConvWS", "ConvAWS",
                  "NonLocal2d", "CornerPool", "Conv2d"}


@dataclass
class Result:
    check: str
    ok: bool
    detail: str


def architectures(spec: str) -> tuple[list[str], list[str]]:
    """("7.5 8.0 9.0+PTX") -> (cubin architectures ["75", "80", "90"], PTX ones ["90"])."""
    cubins, ptx = [], []
    for item in re.split(r"[\s;_]+", spec.strip()):
        if not item:
            continue
        arch = item.removesuffix("+PTX").replace(".", "")
        cubins.append(arch)
        if item.endswith("+PTX"):
            ptx.append(arch)
    return cubins, ptx


def arch_list_of(wheel: Path) -> str | None:
    """The architecture list in the wheel's cache folder name, if it is in scripts/install.sh's wheel cache."""
    match = re.search(r"-arch([0-9._+PTX]+)$", wheel.resolve().parent.name)
    return match.group(1).replace("_", " ") if match else None


def find_tool(name: str, explicit: str | None = None) -> str | None:
    """A CUDA binutil: given, in $CUDA_HOME/bin, on PATH, in the toolkit of the nvcc on PATH (wrappers seen
    through), or bundled with NVIDIA's PyPI packages or triton in this Python's site-packages."""
    candidates = [explicit] if explicit else []
    if os.environ.get("CUDA_HOME"):
        candidates.append(os.path.join(os.environ["CUDA_HOME"], "bin", name))
    candidates.append(shutil.which(name))
    nvcc = shutil.which("nvcc")
    if nvcc:
        dry = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull], capture_output=True, text=True)
        here = re.search(r"^#\$ _HERE_=(.*)$", dry.stdout + dry.stderr, re.M)
        if here:
            candidates.append(os.path.join(here.group(1).strip(), name))
    for package, sub in (("nvidia", "*/bin"), ("triton", "backends/nvidia/bin")):
        spec = importlib.util.find_spec(package)
        for root in (spec.submodule_search_locations or []) if spec else []:
            candidates += [str(p) for p in sorted(Path(root).glob(f"{sub}/{name}"))]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def check_device_code(so: Path, archs: list[str], ptx: list[str], cuobjdump: str | None) -> list[Result]:
    if cuobjdump is None:
        return [Result("device code", False, "no cuobjdump found: set --cuobjdump, CUDA_HOME, or pip install "
                       "nvidia-cuda-cuobjdump")]
    listed = {}
    for kind in ("elf", "ptx"):
        run = subprocess.run([cuobjdump, f"--list-{kind}", str(so)], capture_output=True, text=True)
        listed[kind] = re.findall(r"\.sm_(\d+)\.(?:cubin|ptx)", run.stdout)
    counts = {arch: listed["elf"].count(arch) for arch in sorted(set(listed["elf"]) | set(archs), key=int)}
    results = []
    missing = [a for a in archs if not counts.get(a)]
    uneven = len({counts[a] for a in archs if counts.get(a)}) > 1
    detail = ", ".join(f"sm_{a}: {n} cubins" for a, n in counts.items())
    if missing:
        detail = f"no device code for sm_{', sm_'.join(missing)} ({detail or 'no cubin at all'})"
    elif uneven:
        detail = f"some sources lack an architecture ({detail})"
    results.append(Result("device code (cuobjdump --list-elf)", not missing and not uneven, detail))
    if ptx:
        missing_ptx = [a for a in ptx if a not in listed["ptx"]]
        results.append(Result("PTX for newer GPUs (cuobjdump --list-ptx)", not missing_ptx,
                              f"PTX for sm_{', sm_'.join(ptx)}: {listed['ptx'].count(ptx[-1])} files"
                              if not missing_ptx else f"no PTX for sm_{', sm_'.join(missing_ptx)}"))
    return results


def check_entry_points(so: Path) -> Result:
    if shutil.which("nm"):
        symbols = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True, text=True).stdout
    else:  # the dynamic string table holds the (mangled) names too
        symbols = so.read_bytes().decode("latin-1")
    missing = {op: [n for n in names if n not in symbols] for op, names in CUDA_ENTRY_POINTS.items()}
    missing = {op: names for op, names in missing.items() if names}
    total = sum(len(names) for names in CUDA_ENTRY_POINTS.values())
    if missing:
        return Result("CUDA entry points (nm -D)", False, f"{len(missing)} of {len(CUDA_ENTRY_POINTS)} ops lack "
                      "theirs: " + "; ".join(f"{op} ({', '.join(names)})"
                                             for op, names in missing.items()))
    return Result("CUDA entry points (nm -D)", True, f"all {total} for the {len(CUDA_ENTRY_POINTS)} ops "
                  + ", ".join(CUDA_ENTRY_POINTS))


IMPORT_SCRIPT = """
import json, sys, warnings, logging
warnings.simplefilter("ignore")
logging.disable(logging.WARNING)
import torch, mmcv, mmcv.ops
print(json.dumps({"file": mmcv.__file__, "version": mmcv.__version__,
                  "cuda": mmcv.ops.get_compiling_cuda_version(), "gpu": torch.cuda.is_available()}))
"""


def python_env(site: Path | None) -> dict[str, str]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def import_info(site: Path | None) -> dict:
    run = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT], capture_output=True, text=True, env=python_env(site))
    if run.returncode:
        lines = (run.stderr or run.stdout).strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"exit status {run.returncode}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def check_import(site: Path) -> tuple[Result, dict | None]:
    name = "imports with no GPU visible (CUDA_VISIBLE_DEVICES=)"
    try:
        info = import_info(site)
    except RuntimeError as err:
        return Result(name, False, f"import mmcv.ops failed: {err}"), None
    if not info["file"].startswith(str(site)):
        return Result(name, False, f"imported {info['file']}, not the wheel's mmcv"), info
    if not re.match(r"\d+\.\d+", info["cuda"]):
        return Result(name, False, f"mmcv.ops says it was compiled without CUDA ({info['cuda']!r})"), info
    return Result(name, True, f"mmcv {info['version']}, compiled with CUDA {info['cuda']}, GPU visible: "
                  f"{info['gpu']}"), info


def check_cpu_values(site: Path, version: str, workdir: Path) -> Result:
    name = "CPU kernels match this Python's CPU build"
    try:
        reference = import_info(None)
    except RuntimeError as err:
        return Result(name, False, f"this Python has no importable mmcv to compare with: {err}")
    if reference["version"] != version:
        return Result(name, False, f"this Python's mmcv is {reference['version']}, the wheel's {version}: run the "
                      "check with the Python of the wheel's generation")
    outputs = {}
    for label, where in (("reference", None), ("wheel", site)):
        outputs[label] = workdir / f"{label}.pt"
        run = subprocess.run([sys.executable, str(PROBE), "--device", "cpu", "--out", str(outputs[label])],
                             capture_output=True, text=True, env=python_env(where))
        if run.returncode:
            return Result(name, False, f"the ops probe failed with the {label} mmcv: "
                          f"{(run.stderr.strip().splitlines() or ['?'])[-1]}")
    run = subprocess.run([sys.executable, str(PROBE), "--compare", str(outputs["reference"]), str(outputs["wheel"])],
                         capture_output=True, text=True, env=python_env(None))
    rows = [line for line in run.stdout.splitlines() if line[:3] in ("ok ", "BAD")]
    # (The probe computes the ops that have no CPU kernel in plain torch on the CPU: not part of this comparison.)
    rows = [line for line in rows if line[4:].split("/")[0] not in CPU_REFERENCE_ONLY]
    ops = sorted({line[4:].split()[0].split("/")[0] for line in rows})
    bad = [line[4:].split()[0] for line in rows if line.startswith("BAD")]
    if run.returncode or bad or not rows:
        return Result(name, False, f"{len(bad)} of {len(rows)} outputs differ: {', '.join(bad) or run.stderr[-300:]}")
    return Result(name, True, f"{len(rows)} outputs equal within tolerance ({', '.join(ops)}; reference "
                  f"{reference['file'].rsplit('/site-packages/', 1)[-1]} with CUDA {reference['cuda']!r})")


def check_wheel(wheel: Path, arch_spec: str, cuobjdump: str | None = None) -> list[Result]:
    """Every check above on ``wheel``; the first result that fails says what to do."""
    archs, ptx = architectures(arch_spec)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="cuda-wheel-check-") as tmp:
        work = Path(tmp)
        site = work / "site"
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
        version = re.sub(r"^[^-]+-([^-]+)-.*", r"\1", wheel.name)
        run = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                              "--disable-pip-version-check", "--target", str(site), str(wheel)],
                             capture_output=True, text=True)
        if run.returncode:
            return [Result("installs (pip install --target)", False, run.stderr.strip()[-300:])]
        exts = [n for n in names if re.match(r"mmcv/_ext\..*\.so$", n)]
        if not exts:
            return [Result("compiled extension", False, "the wheel has no mmcv/_ext*.so (built without ops?)")]
        so = site / exts[0]
        results.append(Result("compiled extension", True, f"{exts[0]}, {so.stat().st_size / 2**20:.1f} MiB"))
        results += check_device_code(so, archs, ptx, find_tool("cuobjdump", cuobjdump))
        results.append(check_entry_points(so))
        result, _ = check_import(site)
        results.append(result)
        results.append(check_cpu_values(site, version, work))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--arch", help="the TORCH_CUDA_ARCH_LIST it was built with (default: from its cache folder)")
    parser.add_argument("--cuobjdump", help="path of cuobjdump (default: searched; see find_tool)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not args.wheel.is_file():
        parser.error(f"{args.wheel}: no such wheel")
    arch_spec = args.arch or arch_list_of(args.wheel)
    if not arch_spec:
        parser.error(f"{args.wheel} is not in scripts/install.sh's wheel cache: say --arch (its TORCH_CUDA_ARCH_LIST)")
    started = time.time()
    results = check_wheel(args.wheel, arch_spec, args.cuobjdump)
    for r in results:
        print(f"{'PASS' if r.ok else 'FAIL'}  {r.check}: {r.detail}")
    ok = bool(results) and all(r.ok for r in results)
    print(f"{'OK' if ok else 'FAILED'}: {args.wheel.name} ({args.wheel.stat().st_size / 2**20:.1f} MiB, "
          f"architectures {arch_spec}) checked in {time.time() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"wheel": str(args.wheel), "arch": arch_spec, "ok": ok,
                                         "checked": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                         "results": [asdict(r) for r in results]}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
