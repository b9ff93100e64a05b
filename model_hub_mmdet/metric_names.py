"""The names validation reports, as MMDetection's evaluators build them (both generations; no mmdet import here).

Each rule below mirrors one evaluator's own key-building code (the class that defines ``evaluate`` in 2.x or
``compute_metrics`` in 3.x), argument for argument, so ``check`` and ``init`` know the exact names before a
validation has run. The generations' ``evaluation.expected_metric_names`` pick the rule by the evaluator's class;
``tests/test_metric_names.py`` and ``tests/mmdet3/test_metric_names.py`` hold each rule against the evaluator's
real output. An evaluator without a rule (a user's own dataset or metric) is listed in :attr:`MetricNames.unknown`.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

COCO_ITEMS = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")
COCO_PROPOSAL_ITEMS = ("AR@100", "AR@300", "AR@1000", "AR_s@1000", "AR_m@1000", "AR_l@1000")
PANOPTIC_KEYS = ("PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st")
LVIS_AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
LVIS_AR_KEYS = ("AR@300", "ARs@300", "ARm@300", "ARl@300")  # lvis' Params.max_dets is 300 whatever mmdet sets
PROPOSAL_NUMS = (100, 300, 1000)


@dataclass
class MetricNames:
    """What a validation will report: ``names`` exactly, and ``unknown`` evaluators (``"Class (prefix 'p')"``)
    whose names are known only once they ran."""

    names: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    unknown_prefixes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The ``metrics`` line of ``check``'s summary."""
        parts = list(self.names)
        parts += [f"what {u} reports (known after the first validation)" for u in self.unknown]
        return ", ".join(parts) or "none (validation reports no metric)"

    def may_report(self, name: str) -> bool:
        """Whether validation can report ``name`` (a name of an unknown evaluator is given the benefit of the
        doubt when it carries that evaluator's prefix, or when the evaluator has none)."""
        if name in self.names:
            return True
        return any(not p or name.startswith(f"{p}/") for p in self.unknown_prefixes)


def as_list(value: Any) -> list:
    """A metric argument as mmdet reads it: a string or number alone, or a sequence."""
    if value is None:
        return []
    return [value] if isinstance(value, (str, numbers.Number)) else list(value)


def prefixed(prefix: str | None, keys: Iterable[str]) -> list[str]:
    """Keys as mmengine's ``BaseMetric.evaluate`` names them: ``prefix/key`` (the key alone without a prefix)."""
    return [f"{prefix}/{k}" if prefix else str(k) for k in keys]


def coco_keys(metrics: Any, items: Any = None, proposal_nums: Sequence[int] = PROPOSAL_NUMS, *,
              sticky_items: bool, classwise_names: Sequence[str] = ()) -> list[str]:
    """``CocoDataset.evaluate`` (2.x, ``sticky_items``: the items a metric defaults to stay for the next metric)
    and ``CocoMetric.compute_metrics`` (3.x, which also reports ``<class>_precision`` with ``classwise``). The
    main names come first (``init`` proposes the first); the set is the evaluator's."""
    keys: list[str] = []
    shared = as_list(items) if items is not None else None
    for metric in as_list(metrics or "bbox"):
        chosen = shared if sticky_items else (as_list(items) if items is not None else None)
        if metric == "proposal_fast":
            keys += [f"AR@{n}" for n in proposal_nums]
            continue
        if metric == "proposal":
            chosen = chosen if chosen is not None else list(COCO_PROPOSAL_ITEMS)
            keys += chosen
        else:
            chosen = chosen if chosen is not None else list(COCO_ITEMS)
            keys += [f"{metric}_{item}" for item in chosen]
            keys += [f"{name}_precision" for name in classwise_names]
        if sticky_items:
            shared = chosen
    return list(dict.fromkeys(keys))


def lvis_keys(metrics: Any, items: Any = None, proposal_nums: Sequence[int] = PROPOSAL_NUMS, *,
              with_items: bool, classwise_names: Sequence[str] = ()) -> list[str]:
    """``LVISV05Dataset.evaluate`` (2.x: every AP key, no ``metric_items``) and ``LVISMetric.compute_metrics``
    (3.x, ``with_items``: ``metric_items`` select among lvis' keys; ``classwise`` adds ``<class>_precision``)."""
    keys: list[str] = []
    for metric in as_list(metrics or "bbox"):
        chosen = as_list(items) if with_items and items is not None else None
        if metric == "proposal_fast":
            keys += [f"AR@{n}" for n in proposal_nums]
        elif metric == "proposal":
            keys += [k for k in LVIS_AR_KEYS if chosen is None or k in chosen]
        else:
            keys += [f"{metric}_{k}" for k in LVIS_AP_KEYS if chosen is None or k in chosen]
            keys += [f"{name}_precision" for name in classwise_names]
    return list(dict.fromkeys(keys))


def voc_keys(metric: Any = "mAP", iou_thrs: Any = 0.5, proposal_nums: Sequence[int] = PROPOSAL_NUMS) -> list[str]:
    """``CustomDataset``/``VOCDataset``/``OpenImagesDataset.evaluate`` (2.x) and ``VOCMetric``/
    ``OpenImagesMetric.compute_metrics`` (3.x): ``mAP`` then ``APxx`` per IoU threshold, or the recalls."""
    metric = as_list(metric)[0] if as_list(metric) else "mAP"
    thresholds = as_list(iou_thrs)
    if metric == "recall":
        keys = [f"recall@{n}@{t}" for n in proposal_nums for t in thresholds]
        return keys + ([f"AR@{n}" for n in proposal_nums] if len(thresholds) > 1 else [])
    return ["mAP"] + [f"AP{int(t * 100):02d}" for t in thresholds]


def panoptic_keys(metrics: Any = "PQ", *, coco: Mapping[str, Any] | None = None) -> list[str]:
    """``CocoPanopticDataset.evaluate`` (2.x: ``PQ`` first, then COCO instance metrics) and
    ``CocoPanopticMetric.compute_metrics`` (3.x: the nine PQ keys)."""
    metrics = ["PQ" if m == "pq" else m for m in as_list(metrics or "PQ")]
    keys = list(PANOPTIC_KEYS) if "PQ" in metrics else []
    rest = [m for m in metrics if m != "PQ"]
    if rest:
        keys += coco_keys(rest, **(coco or {}), sticky_items=True)
    return keys


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Keep only finite numbers (drops e.g. ``bbox_mAP_copypaste`` strings and per-class tables)."""
    out = {}
    for key, value in metrics.items():
        value = value.item() if hasattr(value, "item") and getattr(value, "shape", None) == () else value
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value and abs(value) != float(
                "inf"):
            out[str(key)] = float(value)
    return out


def searcher_metric_problems(metric: Any, produced: MetricNames, source: str) -> list[str]:
    """``searcher.metric`` must be a name validation reports: one line naming it and the names there are."""
    if not metric or produced.may_report(str(metric)):
        return []
    return [f"searcher.metric {metric!r} is not produced by this config's {source} (it produces {produced.line()})"]
