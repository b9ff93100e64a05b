"""bench/gpu_check.py, the one command for a GPU machine, proven here with ``--cpu`` (MMDetection 3.x): RTMDet-tiny
trains beside mmengine's own ``Runner``, both validate, and mmdet's ``init_detector`` loads the export.
(The CUDA parts, the mmcv build and the CUDA-against-CPU op comparison, need a GPU.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

_spec = importlib.util.spec_from_file_location("gpu_check_checks", Path(__file__).resolve().parents[1]
                                               / "test_gpu_check.py")
assert _spec is not None and _spec.loader is not None
checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(checks)


def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    table = checks.run_on_cpu("rtmdet_tiny", tmp_path, monkeypatch, capsys)
    assert "| rtmdet_tiny | fp32 (CPU) |" in table and "not run (no GPU)" in table


def test_a_device_machine_installs_the_stack_from_the_slim_wheelhouse(tmp_path: Path) -> None:
    """What a device call carries: a stand-in of the device image (torch plus the packages its image lists, this
    environment's versions), the wheelhouse ``prepare`` leaves after :func:`slim_wheelhouse`, pip offline. The
    stack goes in with nothing resolved and gpu_check trains, validates and exports: nothing needed was left out."""
    import shutil
    import subprocess
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    import standin_image as standin

    gc = checks.gpu_check()
    present = gc.present_on_device()
    image = tuple(sorted(set(standin.IMAGE_DISTS) | (present & set(standin._installed()))))
    bin_dir = standin.make_image(tmp_path, image)
    mmcv = standin.cached_mmcv_wheel("mmcv")  # stands in for the CUDA build gpu_check makes on the device
    # the startup-hook test's wheelhouse (the same key: repacked once per set of versions)
    full = standin.wheelhouse(["mmdet3", "test"], mmcv.parents[3] / "standin-wheelhouse", ["panopticapi-lite", "ninja"])
    slim = tmp_path / "wheelhouse"
    shutil.copytree(full, slim, ignore=shutil.ignore_patterns("pins.txt"))
    dropped = gc.slim_wheelhouse(slim, present)
    assert "matplotlib" in {gc.project(name) for name in dropped} and not (set(map(gc.project, dropped))
                                                                       & gc.PINNED_FOR_THE_BUILD)
    context = standin.context_copy(tmp_path / "context")
    env = standin.hook_env(bin_dir, slim, [], XDG_DATA_HOME=str(tmp_path / "xdg"))
    pip = [str(bin_dir / "python3"), "-m", "pip", "install", "-q", "--no-deps"]
    subprocess.run([*pip, str(mmcv)], env=env, check=True, capture_output=True)
    run = subprocess.run([str(bin_dir / "python3"), str(context / "bench" / "gpu_check.py"), "--cpu", "--generation",
                          "3", "--wheelhouse", str(slim), "--iters", "2", "--size", "64", "--batch", "2", "--models",
                          "rtmdet_tiny", "--work", str(tmp_path / "work"), "--json", str(tmp_path / "report.json")],
                         cwd=context, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["stack"] == "installed now" and report["models"][0]["export"].startswith("ok"), report
    assert not standin.torch_is_untouched(bin_dir, tmp_path)
