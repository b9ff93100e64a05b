"""A user hook, registered as in plain MMDetection 3 and imported with custom_imports."""

from mmdet.registry import HOOKS
from mmengine.hooks import Hook

CALLS: list[tuple] = []


@HOOKS.register_module()
class RecordingHook(Hook):
    """Records what mmengine's runner would show a hook at each point."""

    priority = "LOW"

    def before_train_epoch(self, runner):
        CALLS.append(("before_train_epoch", runner.epoch, runner.iter, runner.max_epochs, len(runner.train_dataloader)))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        CALLS.append(("after_train_iter", runner.epoch, runner.iter, batch_idx, sorted(outputs)[0]))

    def after_train_epoch(self, runner):
        CALLS.append(("after_train_epoch", runner.epoch, runner.iter))

    def before_val_epoch(self, runner):
        CALLS.append(("before_val_epoch", runner.iter))

    def after_val_epoch(self, runner, metrics=None):
        CALLS.append(("after_val_epoch", "coco/bbox_mAP" in (metrics or {})))
