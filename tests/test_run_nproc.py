"""``python3 -m model_hub_mmdet.run EXP --nproc 2``, the cluster entrypoint run off-cluster, starts two ranks of
the same ``train --local`` command (the ranks get the command's own arguments, not the entrypoint's)."""

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


def test_the_entrypoint_off_cluster_trains_with_two_ranks(shapes_dir: Path, det_local: Path) -> None:
    work = det_local / "work"
    exp = tiny_experiment(shapes_dir, global_batch_size=4, max_batches=2)
    exp["resources"] = {"slots_per_trial": 2}
    (work / "exp.yaml").write_text(yaml.safe_dump(exp))
    env = dict(os.environ, OMP_NUM_THREADS="1", INTER_TRAIN_PROCESS_COMM_PORT_1=str(free_port()),
               INTER_TRAIN_PROCESS_COMM_PORT_2=str(free_port()))
    proc = subprocess.run([sys.executable, "-m", "model_hub_mmdet.run", "exp.yaml", "--nproc", "2", "--out", "out"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((work / "out" / "metrics.json").read_text())
    assert metrics["training"][-1]["batches"] == 2
