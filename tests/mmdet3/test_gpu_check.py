"""bench/gpu_check.py, the one command for a GPU machine, proven here with ``--cpu`` (MMDetection 3.x): RTMDet-tiny
trains beside mmengine's own ``Runner``, both validate, and mmdet's ``init_detector`` loads the export.
(The CUDA parts, the mmcv build and the CUDA-against-CPU op comparison, need a GPU.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

_spec = importlib.util.spec_from_file_location("gpu_check_checks", Path(__file__).resolve().parents[1]
                                               / "test_gpu_check.py")
assert _spec is not None and _spec.loader is not None
checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(checks)


def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    table = checks.run_on_cpu("rtmdet_tiny", tmp_path, monkeypatch, capsys)
    assert "| rtmdet_tiny | fp32 (CPU) |" in table and "not run (no GPU)" in table
