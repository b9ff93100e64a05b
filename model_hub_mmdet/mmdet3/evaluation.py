"""Full-dataset evaluation across Determined slots with the config's own ``val_evaluator`` metrics.

mmengine's ``BaseMetric.evaluate`` gathers ``metric.results`` with its own collectives, which would run beside
Determined's. So each slot runs the metrics' ``process`` on its batches (through mmengine's ``Evaluator``, which
converts data samples as the runner does) and hands what ``process`` appended, keyed by dataset index, to the
core's :class:`~model_hub_mmdet.gather.PredictionGatherer`; on the chief the results are put back in dataset order
and each metric's ``compute_metrics`` runs once. Metric names are mmdet's (``coco/bbox_mAP``, the metric's
``prefix`` and ``/``). When a validation covers only some images (Determined's test mode), a COCO metric scores
only those images.
"""

from __future__ import annotations

import contextlib
import io
import logging
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from model_hub_mmdet.gather import PredictionGatherer

__all__ = ["PredictionGatherer", "ValidationMetrics", "expected_metric_names", "metric_configs", "numeric_metrics"]
logger = logging.getLogger("model_hub_mmdet")

COCO_SUFFIXES = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")
PROPOSAL_ITEMS = ("AR@100", "AR@300", "AR@1000", "AR_s@1000", "AR_m@1000", "AR_l@1000")


def metric_configs(evaluator: Any) -> list[Mapping]:
    """The metric configs of a ``val_evaluator`` (a metric dict, a list of them, or an ``Evaluator`` dict)."""
    if isinstance(evaluator, Mapping) and "metrics" in evaluator and str(evaluator.get("type", "Evaluator")).endswith(
            "Evaluator"):
        evaluator = evaluator["metrics"]
    if isinstance(evaluator, Mapping):
        return [evaluator]
    if isinstance(evaluator, (list, tuple)):
        return [m for m in evaluator if isinstance(m, Mapping)]
    return []


def expected_metric_names(evaluator: Any) -> list[str]:
    """The metric names a ``val_evaluator`` reports with non-empty results, for the COCO metrics (other metrics
    report names known only once they ran)."""
    from mmdet.evaluation import CocoMetric
    from mmdet.registry import METRICS

    names: list[str] = []
    for cfg in metric_configs(evaluator):
        cls = METRICS.get(cfg.get("type")) if isinstance(cfg.get("type"), str) else None
        if not (isinstance(cls, type) and issubclass(cls, CocoMetric)):
            continue
        prefix = cfg.get("prefix") or cls.default_prefix
        metrics = cfg.get("metric", "bbox")
        items = cfg.get("metric_items")
        for metric in [metrics] if isinstance(metrics, str) else list(metrics):
            if metric in ("bbox", "segm"):
                found = [f"{metric}_{s}" for s in (items or COCO_SUFFIXES)]
            elif metric == "proposal":
                found = list(items or PROPOSAL_ITEMS)
            else:  # proposal_fast
                found = [f"AR@{n}" for n in cfg.get("proposal_nums", (100, 300, 1000))]
            names += [f"{prefix}/{n}" if prefix else n for n in found]
    return names


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Keep only finite numbers (drops e.g. ``coco/bbox_mAP_copypaste`` strings and per-class tables)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value):
            out[str(key)] = float(value)
    return out


class ValidationMetrics:
    """The ``val_evaluator`` of a config as metrics that process batches on each slot and compute once.

    :meth:`process` returns one item per image of the batch: for each metric, the entries its ``process``
    appended for that image (a metric that appends one entry per batch has them on the batch's first image).
    :meth:`compute` takes the items of the whole dataset (or of the covered images) in dataset order.
    """

    def __init__(self, evaluator_cfg: Any, dataset_meta: Mapping | None) -> None:
        from mmdet.registry import EVALUATOR

        cfg = evaluator_cfg
        if not (isinstance(cfg, Mapping) and str(cfg.get("type", "")).endswith("Evaluator")):
            cfg = dict(type="Evaluator", metrics=cfg)
        self.evaluator = EVALUATOR.build(cfg)
        self.evaluator.dataset_meta = dict(dataset_meta or {})
        self.metrics = list(self.evaluator.metrics)
        self.expected = expected_metric_names(evaluator_cfg)

    def process(self, data_samples: Sequence[Any], data_batch: Any = None) -> list[tuple[list, ...]]:
        """Run every metric's ``process`` on a predicted batch; returns (and takes out of the metrics) the entries
        per image."""
        before = [len(m.results) for m in self.metrics]
        self.evaluator.process(data_samples=data_samples, data_batch=data_batch)
        count = len(data_samples)
        per_image: list[list[list]] = [[] for _ in range(count)]
        for metric, start in zip(self.metrics, before):
            new = list(metric.results[start:])
            del metric.results[start:]
            for i in range(count):
                if len(new) == count:
                    per_image[i].append([new[i]])
                else:
                    per_image[i].append(new if i == 0 else [])
        return [tuple(entries) for entries in per_image]

    def compute(self, items: Sequence[tuple[list, ...]], partial: bool = False) -> dict[str, float]:
        """Each metric's ``compute_metrics`` on the gathered entries, names prefixed as mmengine does. With
        ``partial`` (not every image was predicted), COCO metrics score only the images in ``items``."""
        out: dict[str, Any] = {}
        for m_idx, metric in enumerate(self.metrics):
            results = [entry for item in items for entry in item[m_idx]]
            if not results:
                continue
            saved = getattr(metric, "img_ids", None)
            if partial and hasattr(metric, "img_ids") and getattr(metric, "_coco_api", None) is not None:
                metric.img_ids = sorted({r[0]["img_id"] for r in results if isinstance(r, tuple)})
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
                    computed = metric.compute_metrics(results)
            finally:
                if partial and hasattr(metric, "img_ids"):
                    metric.img_ids = saved
                metric.results.clear()
            prefix = metric.prefix
            out.update({f"{prefix}/{k}" if prefix else k: v for k, v in (computed or {}).items()})
        metrics = numeric_metrics(out)
        if not metrics:
            logger.warning("evaluation produced no metrics (no detections?); reporting 0.0 for each expected metric")
            metrics = {name: 0.0 for name in self.expected}
        return metrics
