"""Tiny registered mmdet detectors for tests that need exact arithmetic or a fault at a known batch.

Importing this module registers them in mmdet's DETECTORS registry (``model.type: LinearProbe`` etc.).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from mmdet.models.builder import DETECTORS
from mmdet.models.detectors.base import BaseDetector


class LinearProbe(BaseDetector):
    """No batch-dependent layer: the loss is a per-image mean, so N batches of B average to one batch of N*B."""

    def __init__(self, init_cfg: Any = None, **_: Any) -> None:
        super().__init__(init_cfg)
        self.fc = torch.nn.Linear(3, 1)

    def extract_feat(self, img: torch.Tensor) -> torch.Tensor:
        return img.mean(dim=(2, 3))

    def forward_train(self, img, img_metas, gt_bboxes, gt_labels, **_: Any) -> dict[str, torch.Tensor]:
        pred = self.fc(self.extract_feat(img)).squeeze(1)
        target = torch.tensor([float(len(b)) for b in gt_bboxes])
        return {"loss_probe": ((pred - target) ** 2).mean()}

    def simple_test(self, img, img_metas, **_: Any) -> list:
        return [[np.zeros((0, 5), np.float32) for _ in range(3)] for _ in img_metas]

    def aug_test(self, imgs, img_metas, **_: Any) -> list:
        raise NotImplementedError


class FaultyProbe(LinearProbe):
    """A LinearProbe whose ``fault_at``-th training forward (0-based) goes wrong: ``fault: loss`` returns a NaN
    loss, ``fault: grad`` a finite loss whose gradient is NaN (the derivative of sqrt at 0)."""

    def __init__(self, fault_at: int = 2, fault: str = "loss", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fault_at, self.fault, self.calls = fault_at, fault, 0

    def forward_train(self, img, img_metas, gt_bboxes, gt_labels, **kwargs: Any) -> dict[str, torch.Tensor]:
        losses = super().forward_train(img, img_metas, gt_bboxes, gt_labels, **kwargs)
        self.calls += 1
        if self.calls - 1 == self.fault_at:
            if self.fault == "loss":
                losses["loss_probe"] = losses["loss_probe"] * float("nan")
            else:
                losses["loss_probe"] = losses["loss_probe"] + torch.sqrt((self.fc.weight * 0).sum())
        return losses


for _cls in (LinearProbe, FaultyProbe):
    DETECTORS.register_module(module=_cls, force=True)

# Overrides turning a tiny experiment's model into a probe trained by plain SGD at a fixed LR.
PROBE_OVERRIDES = {
    "model._delete_": True,
    "model.type": "LinearProbe",
    "optimizer.lr": 0.05,
    "optimizer.momentum": 0.9,
    "optimizer.weight_decay": 0.0,
    "lr_config._delete_": True,
    "lr_config.policy": "fixed",
}


def _probe_trial() -> type:
    from model_hub_mmdet import MMDetTrial

    class ProbeTrial(MMDetTrial):
        """MMDetTrial as is; ``--trial probe_models:ProbeTrial`` makes a subprocess import (register) the probes."""

    return ProbeTrial


ProbeTrial = _probe_trial()
