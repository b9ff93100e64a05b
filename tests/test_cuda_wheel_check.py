"""The CUDA wheel check covers every mmcv op the MMDetection 2.28 zoo names (tests/cuda_wheel_zoo.py), and it
fails, op by op, on a wheel without CUDA kernels: the CPU build ``make install`` cached (the check of a real CUDA
wheel is ``make cuda-wheel``, too slow for the suite)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cuda_wheel_zoo import REPO, uncovered
from standin_image import cached_mmcv_wheel


def test_the_check_covers_every_mmcv_op_the_zoo_names() -> None:
    from mmcv.cnn.bricks import registry

    ops, missing = uncovered([getattr(registry, n) for n in dir(registry) if n.isupper()])
    assert {"RoIAlign", "nms", "DCN", "DCNv2", "MultiScaleDeformableAttention"} <= ops
    assert missing == set()


@pytest.mark.slow
def test_the_check_fails_a_wheel_without_cuda_kernels(tmp_path: Path) -> None:
    wheel = cached_mmcv_wheel("mmcv-full")
    out = tmp_path / "check.json"
    run = subprocess.run([sys.executable, str(REPO / "scripts/check_cuda_wheel.py"), str(wheel), "--arch",
                          "7.5 8.0 9.0+PTX", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stdout + run.stderr
    results = {r["check"].split(" (")[0]: r for r in json.loads(out.read_text())["results"]}
    assert results["device code"]["detail"].startswith("no device code for sm_75, sm_80, sm_90")
    assert results["CUDA entry points"]["detail"].startswith("11 of 11 ops lack theirs: RoIAlign")
    assert "compiled without CUDA" in results["imports with no GPU visible"]["detail"]
    assert results["CPU kernels match this Python's CPU build"]["ok"], results
