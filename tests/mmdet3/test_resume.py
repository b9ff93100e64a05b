"""Checkpoint and resume with the 3.x trial: an interrupted-and-resumed run ends with the same weights, EMA weights
and LR as an uninterrupted one, across a pipeline switch and with loader workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mm3_helpers import experiment

from model_hub_mmdet.checkpoints import batches_trained
from model_hub_mmdet.local import train_local

pytestmark = pytest.mark.slow


def _state(ckpt: str) -> dict:
    return torch.load(Path(ckpt) / "state_dict.pth", map_location="cpu", weights_only=True)


def _different(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_is_bit_identical_on_cpu(workers: int, shapes_dir: Path, det_local: Path) -> None:
    # RTMDet: random flips, a warmup schedule, an EMAHook and a PipelineSwitchHook at epoch 1 (batch 4); the resume
    # point (batch 3) lies before the switch, so the resumed run must switch the pipeline (and its workers) itself.
    exp = experiment(shapes_dir, "rtmdet", max_batches=6, overrides={"train_dataloader.num_workers": workers,
                                                                     "param_scheduler.0.end": 5})
    full = train_local(exp, checkpoint_period=3, validation_period=100)
    middle, end = full.checkpoints
    assert batches_trained(middle) == 3

    resumed = train_local(exp, checkpoint_period=3, validation_period=100, resume=middle)
    assert resumed.batches_trained == 6 and batches_trained(resumed.checkpoints[-1]) == 6

    a, b = _state(end), _state(resumed.checkpoints[-1])
    different = _different(a["models_state_dict"][0], b["models_state_dict"][0])
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    ema_a = a["callbacks"]["model_hub_mmdet"]["hooks"]["added"]["ema_state_dict"]
    ema_b = b["callbacks"]["model_hub_mmdet"]["hooks"]["added"]["ema_state_dict"]
    assert not _different(ema_a, ema_b)
    assert a["optimizers_state_dict"][0]["param_groups"][0]["lr"] == b["optimizers_state_dict"][0]["param_groups"][0][
        "lr"]
    assert _different(a["models_state_dict"][0], _state(middle)["models_state_dict"][0])  # training moved them


KILLER = '''
import os, signal
from determined import pytorch
from model_hub_mmdet import MMDetTrial


class KillDuringSecondCheckpoint(pytorch.PyTorchCallback):
    """SIGKILLs the process after the second checkpoint's state_dict.pth is written, before it completes."""

    def __init__(self):
        self.writes = 0

    def on_checkpoint_write_end(self, checkpoint_dir):
        self.writes += 1
        if self.writes == 2 and os.environ.get("KILL_DURING_CHECKPOINT"):
            os.kill(os.getpid(), signal.SIGKILL)


class KillingTrial(MMDetTrial):
    def build_callbacks(self):
        return {**super().build_callbacks(), "killer": KillDuringSecondCheckpoint()}
'''


def test_kill_during_a_checkpoint_then_auto_resume_matches_an_uninterrupted_run(shapes_dir: Path,
                                                                                 det_local: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    import yaml

    from model_hub_mmdet import checkpoints

    work = Path.cwd()
    (work / "killer.py").write_text(KILLER)
    exp = experiment(shapes_dir, "rtmdet", max_batches=6)
    exp["min_checkpoint_period"] = {"batches": 2}
    exp["min_validation_period"] = {"batches": 100}
    (work / "exp.yaml").write_text(yaml.safe_dump(exp))
    common = [sys.executable, "-m", "model_hub_mmdet.tools.cli", "train", "exp.yaml", "--local", "--trial",
              "killer:KillingTrial"]
    env = {**os.environ, "PYTHONPATH": str(work)}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*common, *args], cwd=work, env={**env, **extra}, capture_output=True, text=True,
                              timeout=600)

    whole = run("--out", "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = run("--out", "run", KILL_DURING_CHECKPOINT="1")
    assert killed.returncode == -signal.SIGKILL
    resumed = run("--out", "run", "--auto-resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "--auto-resume: continuing from" in resumed.stderr

    final, reference = checkpoints.newest_complete(work / "run"), checkpoints.newest_complete(work / "whole")
    assert checkpoints.batches_trained(final) == checkpoints.batches_trained(reference) == 6
    a, b = _state(str(reference)), _state(str(final))
    assert not _different(a["models_state_dict"][0], b["models_state_dict"][0])
    assert not _different(a["callbacks"]["model_hub_mmdet"]["hooks"]["state_dict_changes"],
                          b["callbacks"]["model_hub_mmdet"]["hooks"]["state_dict_changes"])
