"""MMDetTrial end to end: real tiny mmdet detectors trained and validated by Determined's local Trainer."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
from helpers import tiny_experiment

from model_hub_mmdet.local import train_local

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "model, metrics",
    [
        ("faster_rcnn", ["bbox_mAP", "bbox_mAP_50"]),
        ("mask_rcnn", ["bbox_mAP", "segm_mAP"]),
        ("retinanet", ["bbox_mAP", "bbox_mAP_75"]),
    ],
)
def test_models_train_and_validate(model: str, metrics: list[str], shapes_dir: Path, det_local: Path) -> None:
    exp = tiny_experiment(shapes_dir, model=model, max_batches=4)
    started = time.perf_counter()
    result = train_local(exp)
    seconds = time.perf_counter() - started
    print(f"{model}: 4 batches + validation in {seconds:.1f}s")

    assert result.batches_trained == 4
    train = result.training[-1]
    assert math.isfinite(train["loss"]) and train["loss"] > 0
    assert train["lr"] > 0
    loss_terms = [k for k in train if k.startswith("loss_")]
    assert loss_terms, train  # every logged loss term is reported, not only the total
    (val,) = result.validations
    for name in metrics:
        assert name in val and 0.0 <= val[name] <= 1.0 or val[name] == -1.0
    assert all(isinstance(v, (int, float)) for v in val.values())
    assert "bbox_mAP_copypaste" not in val

    ckpt = Path(result.checkpoints[-1])
    state = torch.load(ckpt / "state_dict.pth", map_location="cpu", weights_only=True)
    meta = state["mmdet_meta"]
    assert meta["CLASSES"] == ["rectangle", "ellipse", "triangle"]
    assert "num_classes=3" in meta["config"]
    assert (ckpt / "mmdet_config.py").read_text() == meta["config"]
    assert state["callbacks"]["model_hub_mmdet"]["batches_trained"] == 4
    assert not (ckpt / "code" / ".venv").exists()


def test_lr_follows_schedule_and_clipping_reports_grad_norm(shapes_dir: Path, det_local: Path) -> None:
    exp = tiny_experiment(
        shapes_dir,
        max_batches=4,
        overrides={
            "optimizer.lr": "2e-2",  # YAML 1.1 reads 2e-2 as a string: coerced to the config's float
            "optimizer_config._delete_": True,
            "optimizer_config.grad_clip.max_norm": 0.5,
            "lr_config": {"_delete_": True, "policy": "fixed", "warmup": None},
        },
    )
    result = train_local(exp, validation_period=100)
    train = result.training[-1]
    assert train["lr"] == pytest.approx(0.02)
    assert train["grad_norm"] > 0


def test_global_batch_size_sets_per_slot_batch(shapes_dir: Path, det_local: Path) -> None:
    # 8 training images, batches of 4 -> an epoch is 2 batches: the trial's epoch length must say so.
    from model_hub_mmdet import MMDetTrial
    from model_hub_mmdet.local import _recorder_trial

    seen = {}

    class Probe(MMDetTrial):
        def train_batch(self, batch, epoch_idx, batch_idx):
            seen["batch"] = batch["img"].data[0].shape[0]
            seen["iters_per_epoch"] = self.iters_per_epoch
            seen["max_iters"] = self.max_iters
            return super().train_batch(batch, epoch_idx, batch_idx)

    assert _recorder_trial  # the runner wraps subclasses too
    exp = tiny_experiment(shapes_dir, global_batch_size=4, max_batches=2)
    train_local(exp, Probe, validation_period=100)
    assert seen == {"batch": 4, "iters_per_epoch": 2, "max_iters": 2}


def test_training_workers_stop_before_the_final_validation(shapes_dir: Path, det_local: Path) -> None:
    from model_hub_mmdet import MMDetTrial

    workers: list = []
    seen: list[tuple[int, list[bool], bool]] = []

    class Probe(MMDetTrial):
        def train_batch(self, batch, epoch_idx, batch_idx):
            metrics = super().train_batch(batch, epoch_idx, batch_idx)
            workers[:] = list(self._train_loader._iterator._workers)
            return metrics

        def evaluate_batch(self, batch, batch_idx):
            if batch_idx == 0:
                seen.append((self.batches_trained, [w.is_alive() for w in workers],
                             self._train_loader._iterator is None))
            return super().evaluate_batch(batch, batch_idx)

    exp = tiny_experiment(shapes_dir, max_batches=4, overrides={"data.workers_per_gpu": 1})
    result = train_local(exp, Probe, validation_period=2)
    assert result.batches_trained == 4
    # mid-run validation: the training workers keep running; the final one: they are gone
    assert seen == [(2, [True], False), (4, [False], True)]


def test_training_continues_the_same_batches_after_its_workers_stop(shapes_dir: Path, det_local: Path) -> None:
    from model_hub_mmdet import MMDetTrial

    def files(release_at: int | None) -> list[list[str]]:
        seen: list[list[str]] = []

        class Probe(MMDetTrial):
            def train_batch(self, batch, epoch_idx, batch_idx):
                seen.append([m["ori_filename"] for m in batch["img_metas"].data[0]])
                metrics = super().train_batch(batch, epoch_idx, batch_idx)
                if self.batches_trained == release_at:
                    self.release_training_workers()
                    assert self._train_loader._iterator is None
                return metrics

        exp = tiny_experiment(shapes_dir, max_batches=5, overrides={"data.workers_per_gpu": 2})
        train_local(exp, Probe, validation_period=100)
        return seen

    assert files(release_at=2) == files(release_at=None)


def test_a_loss_term_appearing_mid_run_is_reported_from_the_next_period(shapes_dir: Path, det_local: Path) -> None:
    # The loss-term policy of both generations (tests/mmdet3/test_trial.py has the 3.x twin): a term first logged at
    # batch 1 joins the training metrics with the next reporting period; a batch without it reports 0.0.
    from model_hub_mmdet import MMDetTrial

    class Probe(MMDetTrial):
        def forward_loss(self, data):
            loss, log_vars = super().forward_loss(data)
            if self.batches_trained in (1, 2):
                log_vars = {**log_vars, "loss_extra": 0.5}
            return loss, log_vars

    exp = tiny_experiment(shapes_dir, max_batches=4)
    exp["scheduling_unit"] = 2  # training metrics reported every 2 batches
    result = train_local(exp, Probe, validation_period=100)
    assert [t["batches"] for t in result.training] == [2, 4]
    assert "loss_extra" not in result.training[0]
    assert result.training[1]["loss_extra"] == pytest.approx(0.25)  # batch 2: 0.5, batch 3: missing, 0.0
