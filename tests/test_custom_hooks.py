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
