"""Two local processes (torchrun + gloo on CPU) train and evaluate one experiment through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import free_port, tiny_experiment

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def test_two_processes_train_and_evaluate_each_image_once(shapes_dir: Path, det_local: Path) -> None:
    exp = tiny_experiment(shapes_dir, global_batch_size=4, max_batches=2)
    exp["resources"] = {"slots_per_trial": 2}
    (det_local / "work" / "exp.yaml").write_text(yaml.safe_dump(exp))
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        INTER_TRAIN_PROCESS_COMM_PORT_1=str(free_port()),
        INTER_TRAIN_PROCESS_COMM_PORT_2=str(free_port()),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "model_hub_mmdet.tools.cli", "train", "exp.yaml", "--local", "--nproc", "2",
         "--out", "out"],
        cwd=det_local / "work",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((det_local / "work" / "out" / "metrics.json").read_text())
    (val,) = metrics["validations"]
    # The evaluation reducer raises if an image is missing or predicted twice, so a metric proves the cover.
    assert 0.0 <= val["bbox_mAP"] <= 1.0
    assert metrics["training"][-1]["batches"] == 2
    assert "final validation: bbox_mAP=" in proc.stdout
    assert (det_local / "work" / "out" / "model.pth").is_file()
