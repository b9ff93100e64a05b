"""Full-dataset evaluation across Determined slots with the dataset's own ``evaluate``.

Each slot predicts its share of the validation batches; the core's
:class:`~model_hub_mmdet.gather.PredictionGatherer` (a Determined ``MetricReducer``) gathers ``(dataset index,
result)`` pairs from every slot, puts them back in dataset order and calls ``dataset.evaluate(results, **kwargs)``
once. Masks are RLE-encoded on the slot that predicted them, as mmdet's ``single_gpu_test`` does, so little crosses
the network.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from mmdet.core import encode_mask_results

from model_hub_mmdet.gather import PredictionGatherer

__all__ = ["PredictionGatherer", "encode_results", "evaluate_predictions", "evaluation_subset",
           "expected_metric_names", "numeric_metrics"]
logger = logging.getLogger("model_hub_mmdet")

COCO_SUFFIXES = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")
PANOPTIC_NAMES = ("PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st")


def encode_results(results: Sequence[Any]) -> list[Any]:
    """RLE-encode the masks of a batch of detector outputs (bbox-only results pass through)."""
    results = list(results)
    if not results:
        return results
    if isinstance(results[0], tuple):
        return [(bbox, encode_mask_results(masks)) for bbox, masks in results]
    if isinstance(results[0], dict) and "ins_results" in results[0]:
        for res in results:
            bbox, masks = res["ins_results"]
            res["ins_results"] = (bbox, encode_mask_results(masks))
    return results


def expected_metric_names(metric_kwargs: Mapping[str, Any]) -> list[str]:
    """The metric names ``dataset.evaluate`` reports for these kwargs with non-empty results (COCO-style)."""
    metrics = metric_kwargs.get("metric", "bbox")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    items = metric_kwargs.get("metric_items")
    names: list[str] = []
    for metric in metrics:
        if metric in ("bbox", "segm"):
            suffixes = [i for i in items if not i.startswith("AR")] if items else COCO_SUFFIXES
            names += [f"{metric}_{s}" for s in suffixes]
        elif metric in ("proposal", "proposal_fast"):
            names += list(items) if items else ["AR@100", "AR@300", "AR@1000"]
        elif metric == "PQ":
            names += list(PANOPTIC_NAMES)
        else:
            names.append(metric)
    return names


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Keep only finite numbers (drops e.g. ``bbox_mAP_copypaste`` strings and per-class tables)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value):
            out[str(key)] = float(value)
    return out


def evaluate_predictions(
    evaluate: Callable[..., Mapping[str, Any]], results: list[Any], metric_kwargs: Mapping[str, Any]
) -> dict[str, float]:
    """Run ``evaluate(results, **metric_kwargs)`` and return a non-empty dict of numbers.

    A model that detects nothing makes mmdet's COCO evaluation return no metrics at all; then every expected
    metric is reported as 0.0 so that searchers and dashboards see a real (bad) value.
    """
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress to stdout
        raw = evaluate(results, **metric_kwargs) or {}
    metrics = numeric_metrics(raw)
    if not metrics:
        logger.warning("evaluation produced no metrics (no detections?); reporting 0.0 for each expected metric")
        metrics = {name: 0.0 for name in expected_metric_names(metric_kwargs)}
    return metrics


def evaluation_subset(dataset: Any, indices: Sequence[int]) -> Any:
    """A shallow copy of a COCO-style dataset that holds only the images at ``indices``, so that its
    ``evaluate`` scores those images alone (bbox, segm, proposal and panoptic metrics)."""
    if not hasattr(dataset, "data_infos"):
        raise RuntimeError(f"{type(dataset).__name__} has no data_infos: cannot evaluate a subset of its images")
    indices = list(indices)
    subset = copy.copy(dataset)
    subset.data_infos = [dataset.data_infos[i] for i in indices]
    if getattr(dataset, "img_ids", None) is not None:
        subset.img_ids = [dataset.img_ids[i] for i in indices]
    if getattr(dataset, "proposals", None) is not None:
        subset.proposals = [dataset.proposals[i] for i in indices]
    coco = getattr(dataset, "coco", None)
    if coco is not None and hasattr(coco, "img_ann_map"):  # panoptic: PQ iterates the ground truth's images
        keep = set(getattr(subset, "img_ids", None) or [info["id"] for info in subset.data_infos])
        subset.coco = copy.copy(coco)
        subset.coco.img_ann_map = {k: v for k, v in coco.img_ann_map.items() if k in keep}
    return subset
