"""Checkpoint and resume: an interrupted-and-resumed run ends with the same weights as an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import tiny_experiment

from model_hub_mmdet.checkpoints import batches_trained
from model_hub_mmdet.local import train_local

pytestmark = pytest.mark.slow


def _weights(ckpt: str) -> dict[str, torch.Tensor]:
    return torch.load(Path(ckpt) / "state_dict.pth", map_location="cpu", weights_only=True)["models_state_dict"][0]


def _optimizer(ckpt: str) -> dict:
    return torch.load(Path(ckpt) / "state_dict.pth", map_location="cpu", weights_only=True)["optimizers_state_dict"][0]


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_is_bit_identical_on_cpu(workers: int, shapes_dir: Path, det_local: Path) -> None:
    # Random flips in the pipeline and a warmup+step schedule crossing the resume point: data order,
    # augmentation, LR and momentum buffers must all continue exactly.
    exp = tiny_experiment(
        shapes_dir,
        max_batches=6,
        overrides={"data.workers_per_gpu": workers, "lr_config.warmup_iters": 4, "lr_config.step": [1]},
    )
    full = train_local(exp, checkpoint_period=3, validation_period=100)
    assert len(full.checkpoints) == 2
    middle, end = full.checkpoints
    assert batches_trained(middle) == 3

    resumed = train_local(exp, checkpoint_period=3, validation_period=100, resume=middle)
    assert resumed.batches_trained == 6
    assert batches_trained(resumed.checkpoints[-1]) == 6

    a, b = _weights(end), _weights(resumed.checkpoints[-1])
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    assert _optimizer(end)["param_groups"][0]["lr"] == _optimizer(resumed.checkpoints[-1])["param_groups"][0]["lr"]
    # and training did move the weights
    assert any(not torch.equal(a[k], _weights(middle)[k]) for k in a)


def test_resume_past_the_end_is_a_clear_error(shapes_dir: Path, det_local: Path) -> None:
    from model_hub_mmdet.errors import ConfigError

    exp = tiny_experiment(shapes_dir, max_batches=2)
    done = train_local(exp, validation_period=100)
    with pytest.raises(ConfigError, match="already trained 2 of 2 batches"):
        train_local(exp, resume=done.checkpoints[-1])
