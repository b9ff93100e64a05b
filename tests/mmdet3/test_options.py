"""The trial's options with the 3.x generation: auto_scale_lr, save_cfg, SyncBN on the CPU, gradient accumulation
and find_unused_parameters as check reports them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from mm3_helpers import experiment

from model_hub_mmdet.local import train_local


@pytest.mark.slow
def test_auto_scale_lr_save_cfg_and_syncbn_on_the_cpu(shapes_dir: Path, det_local: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    from mmengine.config import Config

    from model_hub_mmdet import MMDetTrial

    seen: list = []

    class Recording(MMDetTrial):
        def __init__(self, context):
            super().__init__(context)
            seen.append(self)

    conf = experiment(shapes_dir, "rtmdet", max_batches=1, auto_scale_lr=True, save_cfg=True,
                      save_dir=str(det_local / "cfg"), overrides={"model.backbone.norm_cfg.type": "SyncBN"})
    with caplog.at_level(logging.INFO, logger="model_hub_mmdet"):
        train_local(conf, Recording, validation_period=100)
    trial = seen[0]
    # auto_scale_lr.base_batch_size is 16 (mmdet's default runtime): the global batch of 2 scales lr 0.004 by 2/16.
    assert trial.engine.base_hyperparameters[0]["lr"] == pytest.approx(0.004 * 2 / 16)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in trial.detector.modules())
    assert "SyncBN needs CUDA; converted to BatchNorm for this CPU run" in caplog.text
    saved = Config.fromfile(str(det_local / "cfg" / "rtmdet_tiny_shapes.py"))
    assert saved.train_dataloader.batch_size == 2 and saved.model.type == "RTMDet"


def test_check_names_accumulation_and_find_unused_parameters(shapes_dir: Path) -> None:
    from model_hub_mmdet.mmdet3 import check

    conf = experiment(shapes_dir, "rtmdet", global_batch_size=4,
                      overrides={"optim_wrapper.accumulative_counts": 2, "find_unused_parameters": True})
    conf["resources"] = {"slots_per_trial": 2}
    cfg = check.build_config(conf["hyperparameters"], conf, Path("."))
    assert check.trainer_problems(conf, cfg) == [
        "optim_wrapper.accumulative_counts=2 needs optimizations.aggregation_frequency: 2 (it is 1); Determined"
        " accumulates the gradients",
        check.find_unused_line(),
    ]
    conf["optimizations"] = {"aggregation_frequency": 2}
    conf["resources"] = {"slots_per_trial": 1}
    assert check.trainer_problems(conf, cfg) == []


@pytest.mark.slow
def test_amp_optim_wrapper_without_a_gpu_trains_in_fp32(shapes_dir: Path, det_local: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    conf = experiment(shapes_dir, "mask_rcnn", max_batches=1,
                      overrides={"optim_wrapper.type": "AmpOptimWrapper", "optim_wrapper.loss_scale": "dynamic"})
    with caplog.at_level(logging.WARNING, logger="model_hub_mmdet"):
        result = train_local(conf, validation_period=100)
    assert result.batches_trained == 1
    assert "optim_wrapper.type=AmpOptimWrapper needs a GPU: training in fp32" in caplog.text


def test_a_searcher_metric_validation_never_reports_stops_the_trial_at_start(shapes_dir: Path, det_local: Path) -> None:
    from model_hub_mmdet.errors import ConfigError

    conf = experiment(shapes_dir, "mask_rcnn", max_batches=1)
    conf["searcher"]["metric"] = "bbox_mAP"  # 2.x's name; 3.x's CocoMetric reports coco/bbox_mAP
    with pytest.raises(ConfigError, match=r"searcher.metric 'bbox_mAP' is not produced by this config's val_evaluator"
                                          r" \(it produces coco/bbox_mAP, "):
        train_local(conf, validation_period=100)


def test_check_builds_a_dataset_with_the_collector_paused(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    import gc

    from mmdet.datasets import BaseDetDataset
    from mmdet.registry import DATASETS

    from model_hub_mmdet.check_shared import inspect_annotations
    from model_hub_mmdet.mmdet3.check import _load, _path_of

    seen = []

    class Recording(BaseDetDataset):
        def load_data_list(self):
            seen.append(gc.isenabled())
            return [{"img_path": "x.jpg", "img_id": 0, "height": 8, "width": 8, "instances": []}]

    DATASETS.register_module(name="GcPauseRecording3", module=Recording, force=True)
    request.addfinalizer(lambda: DATASETS._module_dict.pop("GcPauseRecording3", None))
    (tmp_path / "ann.json").write_text("{}")  # check inspects only the files that are on this machine
    found = inspect_annotations([("train", {"type": "GcPauseRecording3", "ann_file": "ann.json"})], {}, tmp_path,
                                _path_of, lambda split, node, path: _load(node, path, tmp_path))  # annotation_problems'
    assert found == ([], []) and seen == [False] and gc.isenabled()
