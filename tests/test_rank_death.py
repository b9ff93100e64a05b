"""A local two-rank run whose rank dies (as the out-of-memory killer kills it) ends in one line that names the
rank and the signal, and says how to resume; the elastic launcher's report goes to the run's launcher.log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from helpers import free_port, tiny_experiment

from model_hub_mmdet.local_ranks import RankFailure, root_cause

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

KILLED_RANK = '''
import os, signal
from determined import pytorch
from model_hub_mmdet import MMDetTrial


class KillRankOne(pytorch.PyTorchCallback):
    """SIGKILLs rank 1 once the first checkpoint is complete (training goes on afterwards)."""

    def __init__(self, context):
        self.context = context

    def on_checkpoint_upload_end(self, uuid):
        if self.context.distributed.rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)


class DyingTrial(MMDetTrial):
    def build_callbacks(self):
        return {**super().build_callbacks(), "killer": KillRankOne(self.context)}
'''


def test_a_killed_rank_ends_the_run_in_one_line_with_the_resume_command(shapes_dir: Path, det_local: Path) -> None:
    work = det_local / "work"
    (work / "dying.py").write_text(textwrap.dedent(KILLED_RANK))
    exp = tiny_experiment(shapes_dir, global_batch_size=4, max_batches=6)
    exp["resources"] = {"slots_per_trial": 2}
    exp["min_checkpoint_period"] = {"batches": 2}
    (work / "exp.yaml").write_text(yaml.safe_dump(exp))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{work}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               INTER_TRAIN_PROCESS_COMM_PORT_1=str(free_port()), INTER_TRAIN_PROCESS_COMM_PORT_2=str(free_port()))
    proc = subprocess.run(
        [sys.executable, "-m", "model_hub_mmdet.tools.cli", "train", "exp.yaml", "--local", "--nproc", "2",
         "--trial", "dying:DyingTrial", "--out", "out"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    out = (work / "out").resolve()
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: rank 1 (pid "), proc.stderr[-3000:]
    assert "was killed by SIGKILL" in last
    assert "the newest complete checkpoint is " in last
    assert f"model-hub-mmdet train exp.yaml --local --nproc 2 --out {out} --auto-resume" in last
    # torchrun's traceback and failure table are not on the console; the launcher's log has the details
    assert "ChildFailedError" not in proc.stderr and "Root Cause" not in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert (out / "launcher.log").is_file()


def test_the_root_cause_is_the_killed_rank_not_the_ranks_stopped_after_it() -> None:
    stopped = RankFailure(rank=0, pid=10, exitcode=-signal.SIGTERM)
    killed = RankFailure(rank=1, pid=11, exitcode=-signal.SIGKILL)
    assert root_cause([stopped, killed]) == killed
    assert killed.describe().startswith("rank 1 (pid 11) was killed by SIGKILL")
    assert RankFailure(rank=0, pid=1, exitcode=3).describe() == "rank 0 (pid 1) exited with code 3"


FAILING_RANK = '''
from model_hub_mmdet import MMDetTrial


class FailingTrial(MMDetTrial):
    def train_batch(self, batch, epoch_idx, batch_idx):
        if batch_idx == 1 and self.context.distributed.rank == 0:
            raise ValueError("boom at the second batch\\nsecond line")
        return super().train_batch(batch, epoch_idx, batch_idx)
'''


def test_an_error_in_a_rank_is_one_line_and_determined_ports_in_use_do_not_matter(
    shapes_dir: Path, det_local: Path
) -> None:
    """Determined's default broadcast ports are held (as another local run holds them): the launcher picks free
    ones. The rank's unexpected error is one line naming the rank; its traceback is in rank-0.log."""
    import socket

    work = det_local / "work"
    (work / "failing.py").write_text(textwrap.dedent(FAILING_RANK))
    exp = tiny_experiment(shapes_dir, global_batch_size=4, max_batches=4)
    exp["resources"] = {"slots_per_trial": 2}
    (work / "exp.yaml").write_text(yaml.safe_dump(exp))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTER_TRAIN_PROCESS_COMM_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=f"{work}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    held = []
    for port in (12360, 12376):  # determined.constants' defaults
        sock = socket.socket()
        try:
            sock.bind(("", port))
            sock.listen()
            held.append(sock)
        except OSError:  # already held by someone else: just as good for this test
            sock.close()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "model_hub_mmdet.tools.cli", "train", "exp.yaml", "--local", "--nproc", "2",
             "--trial", "failing:FailingTrial", "--out", "out"],
            cwd=work, env=env, capture_output=True, text=True, timeout=600,
        )
    finally:
        for sock in held:
            sock.close()
    assert proc.returncode == 1, proc.stderr[-3000:]
    out = (work / "out").resolve()
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: rank 0: ValueError: boom at the second batch (traceback: {out / 'rank-0.log'})"], (
        proc.stderr[-3000:]
    )
    assert "Traceback" not in proc.stderr and "Address already in use" not in proc.stderr, proc.stderr[-3000:]
    assert "boom at the second batch" in (out / "rank-0.log").read_text()
    info = [line for line in proc.stderr.splitlines() if line.startswith("INFO model_hub_mmdet")]
    assert info and len(info) == len(set(info)), info  # the chief's INFO lines, once each
