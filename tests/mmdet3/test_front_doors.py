"""Every front door with the 3.x generation: Determined's own CLI, ``python -m model_hub_mmdet.run``, two local
processes, print-config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mm3_helpers import experiment

pytestmark = pytest.mark.slow


def _write(path: Path, conf: dict) -> Path:
    path.write_text(yaml.safe_dump(conf))
    return path


def test_det_experiment_create_local_test(shapes_dir: Path, det_local: Path) -> None:
    """Determined's CLI as a user runs it, with a hyperparameter search space and the model_hub_mmdet:MMDetTrial
    entrypoint."""
    context = det_local / "context"
    context.mkdir()
    conf = experiment(shapes_dir, "rtmdet")
    conf["hyperparameters"]["override_mmdet_config"]["optim_wrapper.optimizer.lr"] = {
        "type": "log", "minval": -3, "maxval": -2}
    path = _write(context / "exp.yaml", conf)
    det = Path(sys.executable).with_name("det")
    proc = subprocess.run([str(det), "experiment", "create", "--local", "--test", str(path), str(context)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "DET_MASTER": "http://127.0.0.1:9"})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "The test experiment passed." in output and "Traceback" not in output


@pytest.mark.parametrize("door", ["run", "train --nproc 2"])
def test_run_module_and_two_processes(door: str, shapes_dir: Path, det_local: Path) -> None:
    conf = experiment(shapes_dir, "rtmdet", global_batch_size=4, max_batches=2)
    conf["entrypoint"] = "python3 -m determined.launch.torch_distributed python3 -m model_hub_mmdet.run"
    path = _write(det_local / "exp.yaml", conf)
    if door == "run":
        command = [sys.executable, "-m", "model_hub_mmdet.run", str(path)]
    else:
        command = [sys.executable, "-m", "model_hub_mmdet.tools.cli", "train", str(path), "--local", "--nproc", "2"]
    proc = subprocess.run([*command, "--validation-period", "2", "--out", str(det_local / "out")],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "trained 2 batches" in proc.stdout
    assert "coco/bbox_mAP=" in proc.stdout  # with two slots: every validation image once across them


def test_print_config_shows_the_final_config(shapes_dir: Path, det_local: Path) -> None:
    conf = experiment(shapes_dir, "mask_rcnn", global_batch_size=4)
    conf["data"] = {"file_client_args": {"backend": "s3", "bucket_name": "b", "aws_secret_access_key": "hunter2"}}
    path = _write(det_local / "exp.yaml", conf)
    proc = subprocess.run([sys.executable, "-m", "model_hub_mmdet.tools.cli", "print-config", str(path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train_dataloader = dict(" in proc.stdout and "backend_args=dict(" in proc.stdout
    assert "hunter2" not in proc.stdout
