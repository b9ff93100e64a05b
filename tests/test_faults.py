"""Faults during training end in one line and lose nothing: non-finite numbers, kills during a checkpoint write,
--resume/--auto-resume, a full disk, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from helpers import tiny_experiment
from probe_models import PROBE_OVERRIDES

from model_hub_mmdet import checkpoints
from model_hub_mmdet.finite import NonFiniteError
from model_hub_mmdet.local import train_local
from model_hub_mmdet.tools.shapes import make_shapes

TESTS = Path(__file__).resolve().parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def four(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("four")
    make_shapes(root, train=4, val=2, size=64, seed=3)
    return root


def _probe(data: Path, batches: int, **over: Any) -> dict[str, Any]:
    exp = tiny_experiment(data, max_batches=batches, overrides={**PROBE_OVERRIDES, **over})
    exp["min_checkpoint_period"] = {"batches": 1}
    return exp


def _weights(ckpt: str | Path) -> dict[str, torch.Tensor]:
    return torch.load(Path(ckpt) / checkpoints.STATE_FILE, map_location="cpu", weights_only=True)[
        "models_state_dict"][0]


@pytest.mark.parametrize("fault", ["loss", "grad"])
def test_non_finite_numbers_stop_before_the_step_in_one_line(four: Path, det_local: Path, fault: str) -> None:
    exp = _probe(four, 5, **{"model.type": "FaultyProbe", "model.fault_at": 2, "model.fault": fault})
    with pytest.raises(NonFiniteError) as info:
        train_local(exp)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("batch 2 (images ")
    assert ".png" in message  # the batch's image files are named
    assert ("loss_probe=nan" in message) if fault == "loss" else ("gradient norm is nan" in message)
    assert "skip_nonfinite_batches" in message
    last = message.split("last good checkpoint: ")[1].split(")")[0]
    assert Path(last).is_dir()  # the checkpoint after batch 2 (of 0, 1) is named and intact
    assert all(torch.isfinite(t).all() for t in _weights(last).values())


def test_non_finite_batches_can_be_skipped(four: Path, det_local: Path) -> None:
    exp = _probe(four, 4, **{"model.type": "FaultyProbe", "model.fault_at": 1})
    exp["hyperparameters"]["skip_nonfinite_batches"] = 1
    result = train_local(exp)
    assert result.batches_trained == 4
    assert result.training[-1]["nonfinite_batches_skipped"] == 1
    assert all(torch.isfinite(t).all() for t in _weights(result.checkpoints[-1]).values())


def _write_experiment(tmp: Path, exp: dict[str, Any]) -> Path:
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def _cli(args: list[str], cwd: Path, **popen: Any) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{cwd}"}
    return subprocess.Popen([sys.executable, "-m", "model_hub_mmdet.tools.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


KILLER = '''
import os, signal
import probe_models  # noqa: F401  (registers the probe detectors)
from model_hub_mmdet import MMDetTrial, checkpoints
from determined import pytorch


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


def test_kill_during_a_checkpoint_write_then_auto_resume_matches_an_uninterrupted_run(
    four: Path, det_local: Path
) -> None:
    work = Path.cwd()
    (work / "killer.py").write_text(textwrap.dedent(KILLER))
    exp = _probe(four, 6)
    exp["min_checkpoint_period"] = {"batches": 2}
    path = _write_experiment(work, exp)
    common = ["train", str(path), "--local", "--trial", "killer:KillingTrial"]

    whole = _cli([*common, "--out", str(work / "whole")], work)
    assert whole.wait(timeout=600) == 0, whole.stderr.read()[-2000:]

    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{work}", "KILL_DURING_CHECKPOINT": "1"}
    killed = subprocess.run([sys.executable, "-m", "model_hub_mmdet.tools.cli", *common, "--out", str(work / "run")],
                            cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL
    storage = checkpoints.local_storage_dir()
    partial = [p for p in storage.iterdir() if p.name.startswith(".partial-")]
    assert len(partial) == 1  # the interrupted write never became a checkpoint
    logged = [json.loads(line) for line in (work / "run" / checkpoints.RUN_LOG).read_text().splitlines()]
    assert [e["batches"] for e in logged] == [2]

    bad = subprocess.run([sys.executable, "-m", "model_hub_mmdet.tools.cli", *common, "--resume", str(partial[0])],
                         cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and "not a complete checkpoint" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1

    resumed = _cli([*common, "--out", str(work / "run"), "--auto-resume"], work)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-2000:]
    assert "--auto-resume: continuing from" in resumed.stderr.read()

    final = checkpoints.newest_complete(work / "run")
    reference = checkpoints.newest_complete(work / "whole")
    assert checkpoints.batches_trained(final) == checkpoints.batches_trained(reference) == 6
    for key, value in _weights(reference).items():
        assert torch.equal(_weights(final)[key], value), key


FILLER = '''
import os
import probe_models  # noqa: F401
from model_hub_mmdet import MMDetTrial
from determined import pytorch


class FillDisk(pytorch.PyTorchCallback):
    """After the first checkpoint is complete, fills the (small) checkpoint file system."""

    def on_checkpoint_upload_end(self, uuid):
        target = os.path.join(os.environ["XDG_DATA_HOME"], "determined", "filler")
        if os.path.exists(target):
            return
        with open(target, "wb") as f:
            try:
                while True:
                    f.write(b"x" * 65536)
            except OSError:
                pass


class FillingTrial(MMDetTrial):
    def build_callbacks(self):
        return {**super().build_callbacks(), "filler": FillDisk()}
'''


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_earlier_ones(four: Path, det_local: Path) -> None:
    work = Path.cwd()
    xdg = det_local / "small"
    xdg.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(xdg)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        (work / "filler.py").write_text(textwrap.dedent(FILLER))
        exp = _probe(four, 4)
        exp["min_checkpoint_period"] = {"batches": 2}
        path = _write_experiment(work, exp)
        env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{work}", "XDG_DATA_HOME": str(xdg)}
        proc = subprocess.run(
            [sys.executable, "-m", "model_hub_mmdet.tools.cli", "train", str(path), "--local", "--trial",
             "filler:FillingTrial", "--out", str(work / "run")],
            cwd=work, env=env, capture_output=True, text=True, timeout=600,
        )
        assert proc.returncode == 1, proc.stderr[-2000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: no space left on the device") and "--auto-resume" in last
        assert "Traceback" not in proc.stderr
        storage = xdg / "determined"
        assert not [p for p in storage.iterdir() if p.name.startswith(".partial-")]
        first = checkpoints.newest_complete(work / "run")
        assert first is not None and checkpoints.batches_trained(first) == 2
        assert str(first) in last
    finally:
        subprocess.run(["umount", str(xdg)], check=False)


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(four: Path, det_local: Path) -> None:
    work = Path.cwd()
    exp = _probe(four, 100000)
    exp["min_checkpoint_period"] = {"batches": 5}
    path = _write_experiment(work, exp)
    proc = _cli(["train", str(path), "--local", "--trial", "probe_models:ProbeTrial", "--out", str(work / "run")], work)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and checkpoints.newest_complete(work / "run") is None:
        time.sleep(0.5)
    assert checkpoints.newest_complete(work / "run") is not None
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    err = proc.stderr.read()
    assert "Traceback" not in err
    assert "interrupted; the newest complete checkpoint is" in err and "--auto-resume" in err


def test_an_unknown_model_type_is_one_line(four: Path, det_local: Path) -> None:
    from model_hub_mmdet.errors import ConfigError

    exp = _probe(four, 1, **{"model.type": "NoSuchDetector"})
    with pytest.raises(ConfigError, match=r"^model: NoSuchDetector is not in the models registry; .*custom_imports"):
        train_local(exp)
