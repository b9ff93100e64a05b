"""MMDetTrial options: auto_scale_lr, fp16 off GPU, cumulative gradients, SyncBN, examples, empty evaluations."""

from __future__ import annotations

import copy
import gc
from pathlib import Path

import pytest
import torch
import yaml
from helpers import data_overrides, tiny_experiment

from model_hub_mmdet import MMDetTrial
from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.expconf import local_hparams, searcher_length
from model_hub_mmdet.local import _recorder_trial, train_local

REPO = Path(__file__).resolve().parents[1]


class _Probe(MMDetTrial):
    """Records what the trial built, then trains as usual."""

    built: dict = {}

    def __init__(self, context) -> None:
        super().__init__(context)
        _Probe.built = {
            "lr": self.optimizer.param_groups[0]["initial_lr"]
            if "initial_lr" in self.optimizer.param_groups[0]
            else self.optimizer.param_groups[0]["lr"],
            "scaler": self.scaler,
            "syncbn": any(isinstance(m, torch.nn.SyncBatchNorm) for m in self.detector.modules()),
            "bn": any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in self.detector.modules()),
        }


@pytest.mark.slow
def test_auto_scale_lr_scales_by_global_batch(shapes_dir: Path, det_local: Path) -> None:
    exp = tiny_experiment(
        shapes_dir, global_batch_size=4, max_batches=1, auto_scale_lr=True,
        overrides={"auto_scale_lr": {"enable": False, "base_batch_size": 16}, "optimizer.lr": 0.08},
    )
    train_local(exp, _Probe, validation_period=100)
    assert _Probe.built["lr"] == pytest.approx(0.08 * 4 / 16)


class _CollectorProbe(MMDetTrial):
    """Whether Python's garbage collector runs while the trial builds its datasets and model, and after."""

    seen: dict = {}

    def build_train_dataset(self):
        _CollectorProbe.seen["train dataset"] = gc.isenabled()
        return super().build_train_dataset()

    def build_val_dataset(self):
        _CollectorProbe.seen["val dataset"] = gc.isenabled()
        return super().build_val_dataset()

    def build_model(self):
        _CollectorProbe.seen["model"] = gc.isenabled()
        return super().build_model()

    def train_batch(self, batch, epoch_idx, batch_idx):
        _CollectorProbe.seen["training"] = gc.isenabled()
        return super().train_batch(batch, epoch_idx, batch_idx)


@pytest.mark.slow
def test_the_collector_is_paused_while_the_trial_builds_and_runs_again_for_training(
        shapes_dir: Path, det_local: Path) -> None:
    assert gc.isenabled()
    train_local(tiny_experiment(shapes_dir, max_batches=1), _CollectorProbe, validation_period=100)
    assert _CollectorProbe.seen == {"train dataset": False, "val dataset": False, "model": False, "training": True}
    assert gc.isenabled()


@pytest.mark.slow
def test_fp16_and_syncbn_on_cpu_train_in_fp32_with_bn(shapes_dir: Path, det_local: Path, caplog) -> None:
    exp = tiny_experiment(
        shapes_dir, max_batches=1,
        overrides={"fp16": {"loss_scale": 512.0}, "model.backbone.norm_cfg.type": "SyncBN"},
    )
    with caplog.at_level("INFO", logger="model_hub_mmdet"):
        result = train_local(exp, _Probe, validation_period=100)
    assert result.batches_trained == 1
    assert _Probe.built["scaler"] is None and not _Probe.built["syncbn"] and _Probe.built["bn"]
    assert "fp16 is configured but there is no GPU" in caplog.text
    assert "SyncBN needs CUDA; converted to BatchNorm" in caplog.text


@pytest.mark.slow
def test_cumulative_gradients_need_matching_aggregation_frequency(shapes_dir: Path, det_local: Path) -> None:
    overrides = {"optimizer_config": {"_delete_": True, "cumulative_iters": 2, "grad_clip": None}}
    exp = tiny_experiment(shapes_dir, max_batches=2, overrides=overrides)
    with pytest.raises(ConfigError, match="optimizations.aggregation_frequency: 2"):
        train_local(exp, validation_period=100)
    exp["optimizations"] = {"aggregation_frequency": 2}
    assert train_local(exp, validation_period=100).batches_trained == 2


def _example(path: str, shapes_dir: Path, **hparams) -> dict:
    exp = yaml.safe_load((REPO / path).read_text())
    exp["hyperparameters"].update(global_batch_size=2, **hparams)
    exp["hyperparameters"].setdefault("override_mmdet_config", {}).update(
        {**data_overrides(shapes_dir), "data.workers_per_gpu": 0, "data.train.pipeline.2.img_scale": [64, 64]}
    )
    return exp


@pytest.mark.slow
def test_subclass_example_runs(shapes_dir: Path, det_local: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from model_hub_mmdet.expconf import entrypoint_class
    from model_hub_mmdet.launch import load_trial_class

    monkeypatch.chdir(REPO)
    exp = _example("examples/subclass/subclass.yaml", shapes_dir, freeze_backbone_batches=1)
    trial_cls = load_trial_class(entrypoint_class(exp["entrypoint"]), REPO)
    result = train_local(exp, trial_cls, max_batches=2, tensorboard_dir=det_local / "tb")
    assert [m["backbone_frozen"] for m in result.training] == [0.5]  # frozen for 1 of 2 batches
    assert "detections_per_image" in result.validations[-1]


@pytest.mark.slow
def test_custom_dataset_example_uses_its_class_and_classes(
    shapes_dir: Path, det_local: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    exp = _example("examples/custom_dataset/custom_dataset.yaml", shapes_dir)
    seen = {}

    class Probe(MMDetTrial):
        def build_train_dataset(self):
            dataset = super().build_train_dataset()
            seen["type"], seen["classes"] = type(dataset).__name__, dataset.CLASSES
            return dataset

    result = train_local(exp, Probe, max_batches=1, tensorboard_dir=det_local / "tb")
    assert seen == {"type": "ShapesDataset", "classes": ("rectangle", "triangle")}
    assert "segm_mAP" in result.validations[-1]


def test_empty_predictions_report_zero_for_each_expected_metric(shapes_dir: Path) -> None:
    import numpy as np
    from mmdet.datasets import build_dataset

    from model_hub_mmdet.mmdet2.evaluation import evaluate_predictions

    ds = build_dataset(
        dict(type="CocoDataset", classes=("rectangle", "ellipse", "triangle"), pipeline=[], test_mode=True,
             ann_file=str(shapes_dir / "annotations/val.json"), img_prefix=str(shapes_dir / "val"))
    )
    empty = [[np.zeros((0, 5), np.float32) for _ in range(3)] for _ in range(len(ds))]
    metrics = evaluate_predictions(ds.evaluate, empty, {"metric": ["bbox"], "logger": "silent"})
    assert metrics == {f"bbox_{s}": 0.0 for s in ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")}


def test_local_hparams_pick_values_from_search_specs() -> None:
    spec = {
        "global_batch_size": 8,
        "override_mmdet_config": {
            "optimizer.lr": {"type": "log", "base": 10, "minval": -3, "maxval": -1},
            "optimizer.weight_decay": {"type": "categorical", "vals": [0.1, 0.2]},
            "lr_config.step": {"type": "const", "val": [8, 11]},
            "data.workers_per_gpu": {"type": "int", "minval": 1, "maxval": 4},
        },
    }
    assert local_hparams(copy.deepcopy(spec))["override_mmdet_config"] == {
        "optimizer.lr": pytest.approx(0.01),
        "optimizer.weight_decay": 0.1,
        "lr_config.step": [8, 11],
        "data.workers_per_gpu": 2,
    }
    with pytest.raises(ConfigError, match=r"optimizer.type: AdamW"):
        local_hparams({"optimizer": {"type": "AdamW", "lr": 1}})


@pytest.mark.parametrize(
    "length, expected",
    # records convert as Determined's harness does: max(records // global_batch_size, 1)
    [({"batches": 30}, 30), ({"epochs": 3}, 15), ({"records": 41}, 10), ({"records": 3}, 1), (None, None), (7, 7)],
)
def test_searcher_length_in_batches(length, expected) -> None:
    conf = {"searcher": {"max_length": length}} if length is not None else {}
    found = searcher_length(conf)
    assert (found.to_batches(epoch_len=5, global_batch_size=4) if found else None) == expected


def test_recorder_keeps_the_subclass_name() -> None:
    assert _recorder_trial(_Probe, None).__name__ == "_Probe"  # type: ignore[arg-type]


@pytest.mark.slow
def test_save_cfg_writes_the_final_config_to_save_dir(shapes_dir: Path, det_local: Path) -> None:
    """The model hub's save_cfg / save_dir hyperparameters: the final config as a .py file mmcv reads back."""
    from mmcv import Config

    save_dir = det_local / "saved"
    exp = tiny_experiment(shapes_dir, model="retinanet", max_batches=1, save_cfg=True, save_dir=str(save_dir))
    train_local(exp, test_mode=True)
    saved = save_dir / "retinanet_r50_fpn_1x_coco.py"
    assert Config.fromfile(str(saved)).model.bbox_head.num_classes == 3


class _OwnLoaderTrial(MMDetTrial):
    """Overrides Determined's documented hook with a det.pytorch.DataLoader of its own."""

    def build_training_data_loader(self):
        from determined import pytorch as det_pytorch

        from model_hub_mmdet.mmdet2.data import collate_fn

        return det_pytorch.DataLoader(self.train_dataset, batch_size=self.per_slot_batch_size, shuffle=True,
                                      collate_fn=collate_fn(self.per_slot_batch_size), num_workers=0)


@pytest.mark.slow
def test_a_subclass_may_override_build_training_data_loader(shapes_dir: Path, det_local: Path) -> None:
    exp = tiny_experiment(shapes_dir, model="retinanet", global_batch_size=2)
    exp["searcher"]["max_length"] = {"epochs": 1}  # 8 images / 2: its loader has 4 batches
    exp["min_checkpoint_period"] = {"batches": 2}
    seen = {}

    class Probe(_OwnLoaderTrial):
        def build_schedule(self):
            seen["iters_per_epoch"], seen["max_iters"] = self.iters_per_epoch, self.max_iters
            return super().build_schedule()

    result = train_local(exp, Probe)
    assert seen == {"iters_per_epoch": 4, "max_iters": 4}  # the schedule follows the loader in use
    assert result.batches_trained == 4
    resumed = train_local(exp, Probe, resume=result.checkpoints[0])  # Determined skips its own loader ahead
    assert resumed.batches_trained == 4 and [t["batches"] for t in resumed.training] == [4]


@pytest.mark.slow
def test_default_tensorboard_folder_is_absolute_under_the_working_directory(
    shapes_dir: Path, det_local: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's thread flushes after the run: a relative folder would follow a later chdir."""
    seen = {}

    class Probe(MMDetTrial):
        def train_batch(self, batch, epoch_idx, batch_idx):
            seen["tb"] = Path(self.context.get_tensorboard_path())
            return super().train_batch(batch, epoch_idx, batch_idx)

    work = Path.cwd()
    train_local(tiny_experiment(shapes_dir, model="retinanet", max_batches=1), Probe)
    assert seen["tb"].is_absolute() and seen["tb"].parent == work / "runs"
    monkeypatch.chdir(det_local)
    assert list(seen["tb"].glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_process_settings_of_the_config_are_applied_as_tools_train_does(
    shapes_dir: Path, det_local: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cv2

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    before = cv2.getNumThreads()
    seen = {}

    class Probe(MMDetTrial):
        def train_batch(self, batch, epoch_idx, batch_idx):
            seen.update(cudnn=torch.backends.cudnn.benchmark, cv2=cv2.getNumThreads(),
                        ddp=self.context._PyTorchDistributedDataParallel.keywords)
            return super().train_batch(batch, epoch_idx, batch_idx)

    exp = tiny_experiment(shapes_dir, max_batches=1, overrides={
        "cudnn_benchmark": True, "opencv_num_threads": 1, "find_unused_parameters": True})
    try:
        train_local(exp, Probe, validation_period=100)
    finally:
        cv2.setNumThreads(before)
    assert seen == {"cudnn": True, "cv2": 1, "ddp": {"find_unused_parameters": True}}


def test_a_searcher_metric_validation_never_reports_stops_the_trial_at_start(shapes_dir: Path, det_local: Path) -> None:
    exp = tiny_experiment(shapes_dir, max_batches=1)
    exp["searcher"]["metric"] = "bbox_mAPP"
    with pytest.raises(ConfigError, match=r"searcher.metric 'bbox_mAPP' is not produced by this config's evaluation"
                                          r" \(it produces bbox_mAP, "):
        train_local(exp, validation_period=100)


def test_check_builds_a_non_coco_dataset_with_the_collector_paused(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from mmdet.datasets import DATASETS, CustomDataset

    from model_hub_mmdet.check_shared import inspect_annotations
    from model_hub_mmdet.mmdet2.check import _inspect, _path_of

    seen = []

    class Recording(CustomDataset):
        def load_annotations(self, ann_file):
            seen.append(gc.isenabled())
            return []

    DATASETS.register_module(name="GcPauseRecording", module=Recording, force=True)
    request.addfinalizer(lambda: DATASETS._module_dict.pop("GcPauseRecording", None))
    path = tmp_path / "ann.txt"
    path.write_text("")
    node = {"type": "GcPauseRecording", "ann_file": str(path), "pipeline": []}
    found = inspect_annotations([("train", node)], {}, tmp_path, _path_of,  # as annotation_problems calls it
                                lambda split, node, path: _inspect(split, node, path, tmp_path))
    assert found == ([], []) and seen == [False] and gc.isenabled()
