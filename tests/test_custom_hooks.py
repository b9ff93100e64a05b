"""``custom_hooks`` run as under MMDetection 2.x's runner: the same calls, counters and priority order as
``mmdet.apis.train_detector`` (the reference, run here on the same config), EMA as mmdet's, resume bit-exact."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import tiny_experiment

from model_hub_mmdet.local import train_local

pytestmark = pytest.mark.slow

RECORDING_HOOK = '''
import torch
from mmcv.runner import HOOKS, Hook

CALLS = []
ATTRIBUTES = ("model", "optimizer", "iter", "epoch", "inner_iter", "max_iters", "max_epochs", "data_loader",
              "outputs", "log_buffer", "logger", "rank", "world_size", "work_dir", "meta")


@HOOKS.register_module()
class RecordingHook(Hook):
    def __init__(self, tag="hook"):
        self.tag = tag

    def _record(self, fn, runner):
        if fn == "after_train_iter":  # by then mmcv's runner has them all
            missing = [a for a in ATTRIBUTES if not hasattr(runner, a)]
            assert not missing and isinstance(runner.outputs["loss"], torch.Tensor), missing
            assert len(runner.data_loader) == 4 and runner.log_buffer.val_history
        CALLS.append((self.tag, fn, runner.iter, runner.epoch, runner.max_epochs))


for _fn in ("before_run", "after_run", "before_train_epoch", "after_train_epoch", "before_val_epoch",
            "after_val_epoch", "before_train_iter", "after_train_iter"):
    setattr(RecordingHook, _fn, (lambda fn: lambda self, runner: self._record(fn, runner))(_fn))
'''

HOOKS = [dict(type="RecordingHook", tag="low", priority="LOW"),
         dict(type="RecordingHook", tag="high", priority="VERY_HIGH"),
         dict(type="CheckpointHook", interval=100)]


@pytest.fixture
def recording_hook(det_local: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    Path("recording_hook.py").write_text(RECORDING_HOOK)
    monkeypatch.syspath_prepend(str(Path.cwd()))
    sys.modules.pop("recording_hook", None)
    from mmcv.runner import HOOKS as REGISTRY

    REGISTRY._module_dict.pop("RecordingHook", None)
    return importlib.import_module("recording_hook")


def mmdet_reference(exp: dict[str, Any], max_epochs: int, work_dir: Path) -> torch.nn.Module:
    """``mmdet.apis.train_detector`` (what mmdet's tools/train.py runs) on the experiment's final config."""
    from mmdet.apis import train_detector
    from mmdet.datasets import build_dataset
    from mmdet.models import build_detector

    from model_hub_mmdet.mmdet2.config import build_mmdet_config

    cfg = build_mmdet_config(exp["hyperparameters"], exp["data"])
    cfg.data.samples_per_gpu = exp["hyperparameters"]["global_batch_size"]
    cfg.runner = dict(type="EpochBasedRunner", max_epochs=max_epochs)
    cfg.update(work_dir=str(work_dir), gpu_ids=[0], device="cpu", seed=0, workflow=[("train", 1)])
    cfg.checkpoint_config = dict(interval=100)
    cfg.log_config = dict(interval=100, hooks=[dict(type="TextLoggerHook")])
    model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    model.init_weights()
    dataset = build_dataset(cfg.data.train)
    model.CLASSES = dataset.CLASSES
    train_detector(model, [dataset], cfg, distributed=False, validate=False)
    return model


def test_a_user_hook_sees_the_calls_of_mmdets_runner(
    shapes_dir: Path, recording_hook: Any, det_local: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="model_hub_mmdet")
    # 8 images in batches of 2: 4 batches per epoch, 2 epochs
    exp = tiny_experiment(shapes_dir, max_batches=8, overrides={
        "custom_imports": {"imports": ["recording_hook"], "allow_failed_imports": False}, "custom_hooks": HOOKS})
    train_local(exp, validation_period=4, checkpoint_period=100)
    ours = list(recording_hook.CALLS)
    recording_hook.CALLS.clear()
    mmdet_reference(exp, max_epochs=2, work_dir=det_local / "mmdet")
    reference = list(recording_hook.CALLS)

    assert [c for c in ours if "val" not in c[1]] == reference
    assert reference[:3] == [("high", "before_run", 0, 0, 2), ("low", "before_run", 0, 0, 2),
                             ("high", "before_train_epoch", 0, 0, 2)]
    assert ("high", "after_train_epoch", 4, 0, 2) in reference and ("high", "after_run", 8, 2, 2) in reference
    # Determined's validations (after batches 4 and 8) call the val hooks, in priority order
    assert [c for c in ours if "val" in c[1]] == [
        ("high", "before_val_epoch", 4, 1, 2), ("low", "before_val_epoch", 4, 1, 2),
        ("high", "after_val_epoch", 4, 1, 2), ("low", "after_val_epoch", 4, 1, 2),
        ("high", "before_val_epoch", 8, 2, 2), ("low", "before_val_epoch", 8, 2, 2),
        ("high", "after_val_epoch", 8, 2, 2), ("low", "after_val_epoch", 8, 2, 2)]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("custom_hooks:")]
    assert ("custom_hooks: CheckpointHook is replaced by Determined's checkpoints (min_checkpoint_period,"
            " checkpoint_storage); not run") in lines


EMA_HOOK = [dict(type="ExpMomentumEMAHook", resume_from=None, momentum=0.01, total_iter=10, priority=49)]


def _state(ckpt: str) -> dict[str, torch.Tensor]:
    return torch.load(Path(ckpt) / "state_dict.pth", map_location="cpu", weights_only=True)["models_state_dict"][0]


def test_ema_weights_and_buffers_equal_mmdets_train_detector(shapes_dir: Path, det_local: Path) -> None:
    import json

    from mmdet.models import build_detector

    from model_hub_mmdet.mmdet2.config import build_mmdet_config

    # one image, no random flip, a fixed LR, RetinaNet (no RoI sampling): both loops see the same batches
    ann = json.loads((shapes_dir / "annotations" / "train.json").read_text())
    first = ann["images"][0]["id"]
    ann.update(images=ann["images"][:1], annotations=[a for a in ann["annotations"] if a["image_id"] == first])
    Path("one.json").write_text(json.dumps(ann))
    overrides = {"data.train.ann_file": str(Path("one.json").resolve()), "data.train.pipeline.3.flip_ratio": 0.0,
                 "lr_config": {"_delete_": True, "policy": "fixed"}, "custom_hooks": EMA_HOOK}
    exp = tiny_experiment(shapes_dir, model="retinanet", global_batch_size=1, max_batches=3, overrides=overrides)
    cfg = build_mmdet_config(exp["hyperparameters"], exp["data"])
    init = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    init.init_weights()
    torch.save({"state_dict": init.state_dict()}, "init.pth")  # the same start for both
    exp["hyperparameters"]["override_mmdet_config"]["load_from"] = str(Path("init.pth").resolve())

    result = train_local(exp, validation_period=2, checkpoint_period=100)
    ours = _state(result.checkpoints[-1])
    reference = mmdet_reference(exp, max_epochs=3, work_dir=det_local / "mmdet").state_dict()

    assert ours.keys() == reference.keys() and any(k.startswith("ema_") for k in ours)
    different = [k for k in ours if not torch.equal(ours[k], reference[k])]
    assert not different, f"{len(different)} of {len(ours)} tensors differ, e.g. {different[:3]}"
    assert not torch.equal(ours["bbox_head.retina_cls.weight"], init.state_dict()["bbox_head.retina_cls.weight"])


def test_kill_and_resume_with_ema_is_bit_identical_and_exports_the_ema_weights(
    shapes_dir: Path, det_local: Path
) -> None:
    # 4 batches per epoch; checkpoint mid-epoch (3), validations mid-epoch (2) and at an epoch's end (4)
    from model_hub_mmdet import MMDetTrial
    from model_hub_mmdet.mmdet2.export import export_checkpoint

    during_validation: list[tuple[int, bool, bool]] = []

    class Probe(MMDetTrial):
        def evaluate_batch(self, batch, batch_idx):  # the model validated: EMA weights, raw ones in the buffers
            if batch_idx == 0:
                model, name = self.detector, "bbox_head.retina_cls.weight"
                ema = getattr(model, "ema_" + name.replace(".", "_"))
                raw_kept = self.runner.ema_swapped_in
                during_validation.append((self.batches_trained, raw_kept,
                                          not torch.equal(model.state_dict()[name], ema)))
            return super().evaluate_batch(batch, batch_idx)

    exp = tiny_experiment(shapes_dir, model="retinanet", max_batches=6, overrides={"custom_hooks": EMA_HOOK})
    full = train_local(exp, Probe, checkpoint_period=3, validation_period=2)
    assert during_validation == [(2, True, True), (4, True, True), (6, True, True)]
    from model_hub_mmdet.checkpoints import batches_trained

    (middle,) = [c for c in full.checkpoints if batches_trained(c) == 3]
    end = full.checkpoints[-1]
    resumed = train_local(exp, checkpoint_period=3, validation_period=2, resume=middle)
    a, b = _state(end), _state(resumed.checkpoints[-1])
    assert a.keys() == b.keys() and any(k.startswith("ema_") for k in a)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    assert full.validations[-1] == {**resumed.validations[-1]}

    # the exported model holds the EMA weights as mmdet saves them (EMA in the parameters, raw in ema_*)
    exported = torch.load(export_checkpoint(end, det_local / "model.pth"), map_location="cpu",
                          weights_only=False)["state_dict"]
    name = "bbox_head.retina_cls.weight"
    ema_in_params = torch.load(Path(end) / "state_dict.pth", map_location="cpu", weights_only=False)[
        "mmdet_meta"]["ema_swapped_in"]
    raw, ema = (a["ema_" + name.replace(".", "_")], a[name]) if ema_in_params else (a[name], a[
        "ema_" + name.replace(".", "_")])
    assert torch.equal(exported[name], ema) and torch.equal(exported["ema_" + name.replace(".", "_")], raw)
    assert not torch.equal(ema, raw)


YOLOX_TINY = '''
# YOLOX-tiny on 64 px shapes: 3 epochs of 4 batches, the last epoch without mosaic (num_last_epochs=1)
img_scale = (64, 64)
classes = ("rectangle", "ellipse", "triangle")
model = dict(input_size=img_scale, random_size_range=(2, 2), bbox_head=dict(num_classes=3))
train_pipeline = [
    dict(type="Mosaic", img_scale=img_scale, pad_val=114.0),
    dict(type="RandomAffine", scaling_ratio_range=(0.5, 1.5), border=(-img_scale[0] // 2, -img_scale[1] // 2)),
    dict(type="YOLOXHSVRandomAug"),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Resize", img_scale=img_scale, keep_ratio=True),
    dict(type="Pad", pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
    dict(type="FilterAnnotations", min_gt_bbox_wh=(1, 1), keep_empty=False),
    dict(type="DefaultFormatBundle"),
    dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels"]),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="MultiScaleFlipAug", img_scale=img_scale, flip=False, transforms=[
        dict(type="Resize", keep_ratio=True), dict(type="RandomFlip"),
        dict(type="Pad", pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0))),
        dict(type="DefaultFormatBundle"), dict(type="Collect", keys=["img"])])]
data = dict(
    samples_per_gpu=2, workers_per_gpu=WORKERS, persistent_workers=False,
    train=dict(dataset=dict(ann_file="DATA/annotations/train.json", img_prefix="DATA/train/", classes=classes),
               pipeline=train_pipeline),
    val=dict(ann_file="DATA/annotations/val.json", img_prefix="DATA/val/", classes=classes, pipeline=test_pipeline),
    test=dict(ann_file="DATA/annotations/val.json", img_prefix="DATA/val/", classes=classes, pipeline=test_pipeline))
num_last_epochs = 1
lr_config = dict(warmup_iters=1, num_last_epochs=num_last_epochs)
custom_hooks = [
    dict(type="YOLOXModeSwitchHook", num_last_epochs=num_last_epochs, priority=48),
    dict(type="SyncNormHook", num_last_epochs=num_last_epochs, interval=1, priority=48),
    dict(type="ExpMomentumEMAHook", resume_from=None, momentum=0.0001, priority=49),
]
'''


@pytest.mark.parametrize("workers", [0, 1])
def test_yolox_tiny_trains_with_its_three_hooks_and_switches_mode_at_mmdets_epoch(
    workers: int, shapes_dir: Path, det_local: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from model_hub_mmdet import MMDetTrial

    caplog.set_level(logging.INFO, logger="model_hub_mmdet")
    Path("yolox_tiny_shapes.py").write_text(YOLOX_TINY.replace("DATA", str(shapes_dir)).replace(
        "WORKERS", str(workers)))
    seen: list[tuple[int, bool, Any]] = []

    class Probe(MMDetTrial):
        def train_batch(self, batch, epoch_idx, batch_idx):  # the mode this batch is trained in
            seen.append((self.batches_trained, self.detector.bbox_head.use_l1, self.train_dataset._skip_type_keys))
            return super().train_batch(batch, epoch_idx, batch_idx)

    exp = tiny_experiment(shapes_dir, max_batches=12)
    exp["scheduling_unit"] = 2  # training metrics reported every 2 batches
    exp["hyperparameters"].update(config_file="yolox/yolox_tiny_8x8_300e_coco.py",
                                  merge_config=str(Path("yolox_tiny_shapes.py").resolve()), override_mmdet_config={})
    result = train_local(exp, Probe, validation_period=6, checkpoint_period=6)
    assert result.batches_trained == 12 and len(result.validations) == 2
    # mmdet's YOLOXModeSwitchHook switches at epoch max_epochs - num_last_epochs - 1 = 1: from the 5th batch
    switch = ("Mosaic", "RandomAffine", "MixUp")
    assert seen[1:] == [(n, n >= 4, switch if n >= 4 else None) for n in range(1, 12)]
    assert seen[0][:2] == (0, False)  # before the first epoch's hooks ran
    # the L1 term is reported from the first reporting period after the switch (Determined wants fixed names)
    assert "loss_l1" not in result.training[0] and result.training[-1]["loss_l1"] > 0
    if workers == 0:  # a resume after the switch trains in the switched mode (hook state in the checkpoint)
        seen.clear()
        train_local(exp, Probe, validation_period=6, checkpoint_period=6, resume=result.checkpoints[0])
        assert seen[0] == (6, True, switch) and len(seen) == 6
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("custom_hooks:")]
    print("\n".join(lines))
    assert set(lines) == {"custom_hooks: running YOLOXModeSwitchHook (48), SyncNormHook (48), ExpMomentumEMAHook (49)"
                          " at mmcv's runner calls, in priority order"}


@pytest.mark.distributed
def test_yolox_hooks_run_in_two_processes(shapes_dir: Path, det_local: Path) -> None:
    # SyncNormHook averages the norm statistics across the two processes at each epoch's end; EMA on both
    import json
    import os
    import subprocess

    import yaml
    from helpers import free_port

    Path("yolox_tiny_shapes.py").write_text(YOLOX_TINY.replace("DATA", str(shapes_dir)).replace("WORKERS", "0"))
    exp = tiny_experiment(shapes_dir, global_batch_size=4, max_batches=6)  # 2 batches per epoch, 3 epochs
    exp["hyperparameters"].update(config_file="yolox/yolox_tiny_8x8_300e_coco.py",
                                  merge_config=str(Path("yolox_tiny_shapes.py").resolve()), override_mmdet_config={})
    exp["resources"] = {"slots_per_trial": 2}
    Path("exp.yaml").write_text(yaml.safe_dump(exp))
    env = dict(os.environ, OMP_NUM_THREADS="1", INTER_TRAIN_PROCESS_COMM_PORT_1=str(free_port()),
               INTER_TRAIN_PROCESS_COMM_PORT_2=str(free_port()))
    proc = subprocess.run([sys.executable, "-m", "model_hub_mmdet.tools.cli", "train", "exp.yaml", "--local",
                           "--nproc", "2", "--out", "out"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(Path("out/metrics.json").read_text())
    assert metrics["training"][-1]["batches"] == 6 and "bbox_mAP" in metrics["validations"][-1]


def test_an_unknown_hook_type_is_one_line(shapes_dir: Path, det_local: Path) -> None:
    from model_hub_mmdet.errors import ConfigError

    exp = tiny_experiment(shapes_dir, max_batches=1, overrides={"custom_hooks": [dict(type="NoSuchHook")]})
    with pytest.raises(ConfigError) as info:
        train_local(exp)
    assert str(info.value).startswith("custom_hooks: NoSuchHook is not in the hook registry; check the type name")
