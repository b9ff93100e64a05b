"""The 3.x trial trains and validates real detectors on tiny images through Determined's Trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mm3_helpers import experiment

from model_hub_mmdet.local import train_local

pytestmark = pytest.mark.slow


def recording(cls: type, seen: list) -> type:
    class Recording(cls):  # type: ignore[misc, valid-type]
        def __init__(self, context):
            super().__init__(context)
            seen.append(self)

    return Recording


def test_rtmdet_trains_validates_and_runs_its_hooks(shapes_dir: Path, det_local: Path) -> None:
    from mmengine.logging import MessageHub

    from model_hub_mmdet import MMDetTrial

    seen: list = []
    conf = experiment(shapes_dir, "rtmdet", max_batches=6)
    result = train_local(conf, recording(MMDetTrial, seen), validation_period=6, checkpoint_period=6)
    trial = seen[0]
    assert result.batches_trained == 6 and len(result.checkpoints) == 1
    metrics = result.validations[-1]
    assert {"coco/bbox_mAP", "coco/bbox_mAP_50", "coco/bbox_mAP_l"} <= set(metrics)
    assert all(torch.isfinite(torch.tensor(v)) for k, v in result.training[-1].items() if k != "epochs")
    # 8 images in batches of 2: epochs of 4 batches. The PipelineSwitchHook switched at epoch 1 (no RandomFlip).
    assert trial.iters_per_epoch == 4
    steps = [type(t).__name__ for t in trial.train_dataset.pipeline.transforms]
    assert "RandomFlip" not in steps
    # The EMAHook averaged: its weights differ from the model's, and the checkpoint carries them.
    ema = next(h for h in trial.runner.hooks if type(h).__name__ == "EMAHook").ema_model
    assert int(ema.steps) == 6
    # MessageHub holds the runtime info models read.
    hub = MessageHub.get_current_instance()
    assert hub.get_info("iter") == 5 and hub.get_info("max_iters") == 6 and hub.get_info("epoch") == 1
    state = torch.load(Path(result.checkpoints[0]) / "state_dict.pth", weights_only=True)
    hooks = state["callbacks"]["model_hub_mmdet"]["hooks"]
    assert "ema_state_dict" in hooks["added"] and hooks["state_dict_changes"]


def test_mask_rcnn_trains_and_validates_bbox_and_segm(shapes_dir: Path, det_local: Path) -> None:
    conf = experiment(shapes_dir, "mask_rcnn", max_batches=3)
    result = train_local(conf, validation_period=3, checkpoint_period=0)
    assert result.batches_trained == 3
    metrics = result.validations[-1]
    assert {"coco/bbox_mAP", "coco/segm_mAP", "coco/segm_mAP_50"} <= set(metrics)
    assert result.training[-1]["loss_mask"] > 0


def test_dino_trains_and_validates(shapes_dir: Path, det_local: Path) -> None:
    conf = experiment(shapes_dir, "dino", max_batches=3)
    result = train_local(conf, validation_period=3, checkpoint_period=0)
    assert result.batches_trained == 3
    assert "coco/bbox_mAP" in result.validations[-1]
    assert {"loss_cls", "loss_bbox", "loss_iou", "dn_loss_cls"} <= set(result.training[-1])


def test_yolox_runs_its_mode_switch_sync_norm_and_ema_hooks(shapes_dir: Path, det_local: Path) -> None:
    from model_hub_mmdet import MMDetTrial

    seen: list = []
    conf = experiment(shapes_dir, "yolox", max_batches=12)
    result = train_local(conf, recording(MMDetTrial, seen), validation_period=12, checkpoint_period=0)
    trial = seen[0]
    assert result.batches_trained == 12 and "coco/bbox_mAP" in result.validations[-1]
    assert trial.detector.bbox_head.use_l1  # YOLOXModeSwitchHook: L1 loss from epoch 1 of 3
    assert trial.train_dataset._skip_type_keys == ("Mosaic", "RandomAffine", "MixUp")
    assert "loss_l1" not in result.training[-1]  # appeared at batch 4: reported from the next period (none here)


def test_test_mode_scores_only_the_images_it_covered(shapes_dir: Path, det_local: Path) -> None:
    conf = experiment(shapes_dir, "rtmdet", max_batches=2)
    result = train_local(conf, test_mode=True)
    assert result.validations and "coco/bbox_mAP" in result.validations[-1]


def test_a_user_hook_sees_what_mmengines_runner_shows_it(shapes_dir: Path, det_local: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "plugins"))
    conf = experiment(shapes_dir, "rtmdet", max_batches=6, overrides={
        "custom_imports": {"imports": ["recording_hook"], "allow_failed_imports": False},
        "custom_hooks": [{"type": "RecordingHook"}]})
    train_local(conf, validation_period=6, checkpoint_period=0)
    from recording_hook import CALLS

    # 8 images in batches of 2: epochs of 4; the run is 6 batches, so two epochs.
    assert CALLS[0] == ("before_train_epoch", 0, 0, 2, 4)
    assert ("after_train_iter", 0, 3, 3, "loss") in CALLS and ("after_train_epoch", 0, 4) in CALLS
    assert ("before_train_epoch", 1, 4, 2, 4) in CALLS and ("after_train_iter", 1, 5, 1, "loss") in CALLS
    assert CALLS[-2:] == [("before_val_epoch", 6), ("after_val_epoch", True)]


def test_a_loss_term_appearing_mid_run_is_reported_from_the_next_period(shapes_dir: Path, det_local: Path) -> None:
    # The loss-term policy of both generations (tests/test_trial.py has the 2.x twin): a term first logged at batch 1
    # joins the training metrics with the next reporting period; a batch without it reports 0.0.
    from model_hub_mmdet import MMDetTrial

    class Probe(MMDetTrial):
        def forward_loss(self, data):
            loss, log_vars = super().forward_loss(data)
            if self.batches_trained in (1, 2):
                log_vars = {**log_vars, "loss_extra": torch.tensor(0.5)}
            return loss, log_vars

    conf = experiment(shapes_dir, "mask_rcnn", max_batches=4)
    conf["scheduling_unit"] = 2  # training metrics reported every 2 batches
    result = train_local(conf, Probe, validation_period=100, checkpoint_period=0)
    assert [t["batches"] for t in result.training] == [2, 4]
    assert "loss_extra" not in result.training[0]
    assert result.training[1]["loss_extra"] == pytest.approx(0.25)  # batch 2: 0.5, batch 3: missing, 0.0
