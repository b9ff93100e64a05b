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


def run_on_cpu(model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> str:
    """``gpu_check --cpu`` on one model (tests/mmdet3 uses it too): both sides train, validate and export; returns
    the printed table."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    out = tmp_path / "report.json"
    rc = gpu_check().main(["--cpu", "--iters", "2", "--size", "64", "--batch", "2", "--models", model,
                           "--work", str(tmp_path / "work"), "--json", str(out)])
    table = capsys.readouterr().out
    assert rc == 0, table
    report = json.loads(out.read_text())
    (row,) = report["models"]
    assert row["model"] == model and row["export"].startswith("ok")
    for side in ("ours", "runner"):
        assert math.isfinite(row[side]["first_loss"]) and row[side]["s_per_iter"] > 0, row
    assert row["ours"]["metric"] is not None and row["runner"]["validated"], row
    return table


def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    table = run_on_cpu("faster_rcnn", tmp_path, monkeypatch, capsys)
    assert "| faster_rcnn | fp32 (CPU) |" in table and "not run (no GPU)" in table
