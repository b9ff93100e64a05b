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
import inspect
import io
import logging
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from model_hub_mmdet import metric_names as rules
from model_hub_mmdet.gather import PredictionGatherer
from model_hub_mmdet.metric_names import MetricNames, numeric_metrics

__all__ = ["PredictionGatherer", "ValidationMetrics", "expected_metric_names", "metric_configs",
           "metric_names", "numeric_metrics"]
logger = logging.getLogger("model_hub_mmdet")

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


def metric_names(evaluator: Any, classes: Sequence[str] | None = None) -> MetricNames:
    """What a ``val_evaluator`` reports, metric by metric: the metric's ``prefix`` (given, or its class's
    ``default_prefix``, as ``BaseMetric`` sets it) and the keys its ``compute_metrics`` returns. For mmdet's own
    metrics the keys come from the rule of :mod:`model_hub_mmdet.metric_names` that mirrors the class that defines
    ``compute_metrics``, under the class's signature defaults; any other metric (a user's own) is asked: built, fed
    one synthetic image through its own ``process`` and ``compute_metrics``. ``classes``: the dataset's classes
    (for ``classwise`` keys). A metric that cannot be asked is :attr:`MetricNames.unknown`."""
    from mmdet.registry import METRICS

    out = MetricNames()
    for cfg in metric_configs(evaluator):
        kind = cfg.get("type")
        cls = METRICS.get(kind) if isinstance(kind, str) else kind
        if not isinstance(cls, type):
            out.unknown.append(f"metric type {kind}")
            out.unknown_prefixes.append(str(cfg.get("prefix") or ""))
            continue
        prefix = cfg.get("prefix") or getattr(cls, "default_prefix", None)
        owner = next((k for k in cls.__mro__ if "compute_metrics" in vars(k)), cls)
        rule = _RULES.get(f"{owner.__module__}.{owner.__qualname__}")
        if rule is not None:
            params = inspect.signature(cls.__init__).parameters
            kwargs = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
            kwargs.update({k: v for k, v in cfg.items() if k != "type"})
            out.names += rules.prefixed(prefix, rule(kwargs, list(classes or [])))
            continue
        built_prefix, keys = _ask(cfg, classes)
        prefix = built_prefix if built_prefix is not None else prefix
        if keys is None:
            out.unknown.append(f"{cls.__name__} (prefix {prefix!r})" if prefix else cls.__name__)
            out.unknown_prefixes.append(str(prefix or ""))
        else:
            out.names += rules.prefixed(prefix, keys)
    out.names = list(dict.fromkeys(out.names))
    return out


def expected_metric_names(evaluator: Any, classes: Sequence[str] | None = None) -> list[str]:
    """The names a ``val_evaluator`` reports (:func:`metric_names`; ``init`` and ``check`` use it)."""
    return metric_names(evaluator, classes).names


def _ask(cfg: Mapping, classes: Sequence[str] | None) -> tuple[str | None, list[str] | None]:
    """The prefix of the metric as built (None if it does not build) and the keys its own ``compute_metrics``
    returns for one synthetic 32x32 image with one object found (None when the metric cannot take it: it needs
    files or inputs of its own)."""
    import copy

    import torch
    from mmdet.registry import METRICS

    box = torch.tensor([[2.0, 2.0, 20.0, 20.0]])
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[:, 2:20, 2:20] = True
    label = torch.tensor([0])
    sample = {
        "img_id": 0, "img_path": "probe.jpg", "ori_shape": (32, 32), "img_shape": (32, 32),
        "scale_factor": (1.0, 1.0),
        "pred_instances": {"bboxes": box, "scores": torch.tensor([0.9]), "labels": label, "masks": mask},
        "gt_instances": {"bboxes": box, "labels": label, "masks": mask},
        "ignored_instances": {"bboxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
        "instances": [{"bbox": [2.0, 2.0, 20.0, 20.0], "bbox_label": 0, "ignore_flag": 0, "is_group_of": False,
                       "mask": [[2.0, 2.0, 20.0, 2.0, 20.0, 20.0, 2.0, 20.0]]}],
    }
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            metric = METRICS.build(copy.deepcopy(dict(cfg)))
    except Exception:  # noqa: BLE001 - a metric that does not build here is known by its first run
        return None, None
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            names = tuple(classes or ("object",))
            metric.dataset_meta = {"classes": names, "RELATION_MATRIX": np.eye(len(names), dtype=bool)}
            metric.process({}, [sample])
            computed = metric.compute_metrics(metric.results)
    except Exception:  # noqa: BLE001 - a metric that needs more than a synthetic image is known by its first run
        return metric.prefix, None
    keys = [str(k) for k, v in (computed or {}).items() if isinstance(v, numbers.Real) and not isinstance(v, bool)]
    return metric.prefix, keys


def _coco(kw: Mapping[str, Any], classes: list[str]) -> list[str]:
    if kw.get("format_only"):
        return []
    return rules.coco_keys(kw.get("metric"), kw.get("metric_items"), kw.get("proposal_nums", rules.PROPOSAL_NUMS),
                           sticky_items=False, classwise_names=classes if kw.get("classwise") else ())


def _lvis(kw: Mapping[str, Any], classes: list[str]) -> list[str]:
    if kw.get("format_only"):
        return []
    return rules.lvis_keys(kw.get("metric"), kw.get("metric_items"), kw.get("proposal_nums", rules.PROPOSAL_NUMS),
                           with_items=True, classwise_names=classes if kw.get("classwise") else ())


def _crowdhuman(kw: Mapping[str, Any], classes: list[str]) -> list[str]:
    names = {"AP": "mAP", "MR": "mMR", "JI": "JI"}
    return [] if kw.get("format_only") else [names[m] for m in rules.as_list(kw.get("metric")) if m in names]


# The class that defines ``compute_metrics`` -> the rule that mirrors it (mmdet 3.3's own metrics).
_M = "mmdet.evaluation.metrics."
_RULES: dict[str, Callable[[Mapping[str, Any], list[str]], list[str]]] = {
    f"{_M}coco_metric.CocoMetric": _coco,
    f"{_M}lvis_metric.LVISMetric": _lvis,
    f"{_M}coco_occluded_metric.CocoOccludedSeparatedMetric": lambda kw, c: _coco(kw, c) + [
        "occluded_recall", "separated_recall"],
    f"{_M}voc_metric.VOCMetric": lambda kw, c: rules.voc_keys(kw.get("metric"), kw.get("iou_thrs"),
                                                              kw.get("proposal_nums", rules.PROPOSAL_NUMS)),
    f"{_M}openimages_metric.OpenImagesMetric": lambda kw, c: rules.voc_keys("mAP", kw.get("iou_thrs")),
    f"{_M}coco_panoptic_metric.CocoPanopticMetric": lambda kw, c: [] if kw.get("format_only") else list(
        rules.PANOPTIC_KEYS),
    f"{_M}cityscapes_metric.CityScapesMetric": lambda kw, c: [] if kw.get("format_only") else ["mAP", "AP@50"],
    f"{_M}crowdhuman_metric.CrowdHumanMetric": _crowdhuman,
    f"{_M}dump_proposals_metric.DumpProposals": lambda kw, c: [],
    "mmengine.evaluator.metric.DumpResults": lambda kw, c: [],
}


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
        self.expected = expected_metric_names(evaluator_cfg, (dataset_meta or {}).get("classes"))

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
