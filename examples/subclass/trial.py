"""Customising MMDetTrial by subclassing: freeze the backbone for a warm-up, report detections per image.

The same class serves both MMDetection generations (``subclass.yaml`` for 2.x, ``subclass_mmdet3.yaml`` for 3.x):
use it with ``entrypoint: ... python3 -m model_hub_mmdet.run --trial examples.subclass.trial:FrozenBackboneTrial``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from model_hub_mmdet import MMDetTrial


class FrozenBackboneTrial(MMDetTrial):
    """Trains only neck and heads for the first ``freeze_backbone_batches`` batches (a hyperparameter),
    then everything; adds ``backbone_frozen`` to the training metrics and ``detections_per_image`` to the
    validation metrics.

    Freezing by ``requires_grad`` is for one process; under DDP use mmdet's ``frozen_stages`` instead.
    """

    def train_batch(self, batch: Any, epoch_idx: int, batch_idx: int) -> dict[str, Any]:
        frozen = self.batches_trained < int(self.hparams.get("freeze_backbone_batches", 0))
        for param in self.detector.backbone.parameters():
            param.requires_grad_(not frozen)
        metrics = super().train_batch(batch, epoch_idx, batch_idx)
        metrics["backbone_frozen"] = float(frozen)
        return metrics

    def evaluate(self, results: list[Any], indices: list[int] | None = None) -> dict[str, float]:
        # the documented signature: a partial validation (--test, skipped bad images) passes the images' indices
        metrics = super().evaluate(results=results, indices=indices)
        score_thr = 0.3
        # one result per image, in the generation's form; the engine reads its detection scores
        counts = [int((self.engine.scores(result) > score_thr).sum()) for result in results]
        metrics["detections_per_image"] = float(np.mean(counts)) if counts else 0.0
        return metrics
