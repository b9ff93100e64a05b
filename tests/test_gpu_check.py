"""bench/gpu_check.py, the one command for a GPU machine, proven here with ``--cpu`` (MMDetection 2.x): Faster
R-CNN trains beside mmdet's own ``train_detector``, both validate, and mmdet's ``init_detector`` loads the export.
(The CUDA parts, the mmcv build and the CUDA-against-CPU op comparison, need a GPU.)"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    out = tmp_path / "report.json"
    rc = gpu_check().main(["--cpu", "--iters", "2", "--size", "64", "--batch", "2", "--models", "faster_rcnn",
                           "--work", str(tmp_path / "work"), "--json", str(out)])
    table = capsys.readouterr().out
    assert rc == 0, table
    report = json.loads(out.read_text())
    (row,) = report["models"]
    assert row["model"] == "faster_rcnn" and row["export"].startswith("ok")
    for side in ("ours", "runner"):
        assert math.isfinite(row[side]["first_loss"]) and row[side]["s_per_iter"] > 0, row
    assert row["ours"]["metric"] is not None and row["runner"]["validated"], row
    assert "| faster_rcnn | fp32 (CPU) |" in table and "not run (no GPU)" in table
