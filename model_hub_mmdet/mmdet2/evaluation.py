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
import inspect
import io
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mmdet.core import encode_mask_results

from model_hub_mmdet import metric_names as rules
from model_hub_mmdet.gather import PredictionGatherer
from model_hub_mmdet.metric_names import MetricNames, numeric_metrics

__all__ = ["PredictionGatherer", "encode_results", "evaluate_predictions", "evaluation_subset",
           "expected_metric_names", "metric_names", "numeric_metrics"]
logger = logging.getLogger("model_hub_mmdet")

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


def metric_names(metric_kwargs: Mapping[str, Any], dataset: Any = None) -> MetricNames:
    """What ``dataset.evaluate(results, **metric_kwargs)`` reports, read from the ``evaluate`` the dataset's class
    runs: its signature's defaults under ``metric_kwargs``, then the rule of :mod:`model_hub_mmdet.metric_names`
    that mirrors that method's code. ``dataset``: the validation dataset's config node (wrappers are looked
    through), class or instance; None means ``CocoDataset``. A class with an ``evaluate`` of its own (a user's) is
    :attr:`MetricNames.unknown`: its names are known after the first validation."""
    cls = _dataset_class(dataset)
    if cls is None:
        kind = dataset.get("type") if isinstance(dataset, Mapping) else type(dataset).__name__
        return MetricNames(unknown=[f"dataset type {kind}"], unknown_prefixes=[""])
    owner = next((k for k in cls.__mro__ if "evaluate" in vars(k)), cls)
    rule = _RULES.get(f"{owner.__module__}.{owner.__qualname__}")
    if rule is None:
        return MetricNames(unknown=[f"{owner.__qualname__}.evaluate"], unknown_prefixes=[""])
    params = inspect.signature(owner.evaluate).parameters
    kwargs = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    kwargs.update(metric_kwargs)
    return MetricNames(names=rule(kwargs))


def expected_metric_names(metric_kwargs: Mapping[str, Any], dataset: Any = None) -> list[str]:
    """The names ``dataset.evaluate`` reports for these kwargs (:func:`metric_names`; ``init`` and ``check`` use
    it); empty when the dataset's own ``evaluate`` decides them."""
    return metric_names(metric_kwargs, dataset).names


def _dataset_class(dataset: Any) -> type | None:
    from mmdet.datasets import DATASETS, CocoDataset

    if dataset is None:
        return CocoDataset
    if isinstance(dataset, type):
        return dataset
    if isinstance(dataset, Mapping):
        from model_hub_mmdet.mmdet2.config.walk import annotated_dataset

        kind = annotated_dataset(dataset).get("type")
        found = DATASETS.get(kind) if isinstance(kind, str) else kind
        return found if isinstance(found, type) else None
    return type(dataset)


def _coco(kw: Mapping[str, Any]) -> list[str]:
    return rules.coco_keys(kw.get("metric"), kw.get("metric_items"), kw.get("proposal_nums", rules.PROPOSAL_NUMS),
                           sticky_items=True)


def _voc(kw: Mapping[str, Any]) -> list[str]:
    return rules.voc_keys(kw.get("metric"), kw.get("iou_thr"), kw.get("proposal_nums", rules.PROPOSAL_NUMS))


def _panoptic(kw: Mapping[str, Any]) -> list[str]:
    coco = {"items": kw.get("metric_items"), "proposal_nums": kw.get("proposal_nums", rules.PROPOSAL_NUMS)}
    return rules.panoptic_keys(kw.get("metric"), coco=coco)


def _lvis(kw: Mapping[str, Any]) -> list[str]:
    return rules.lvis_keys(kw.get("metric"), None, kw.get("proposal_nums", rules.PROPOSAL_NUMS), with_items=False)


def _cityscapes(kw: Mapping[str, Any]) -> list[str]:
    metrics = rules.as_list(kw.get("metric"))
    rest = [m for m in metrics if m != "cityscapes"]
    coco = rules.coco_keys(rest, None, kw.get("proposal_nums", rules.PROPOSAL_NUMS), sticky_items=True) if rest else []
    return (["mAP", "AP@50"] if "cityscapes" in metrics else []) + coco


def _occluded(kw: Mapping[str, Any]) -> list[str]:
    return (_coco(kw) if rules.as_list(kw.get("metric")) else []) + ["occluded_recall", "separated_recall"]


# The class that defines ``evaluate`` -> the rule that mirrors it (mmdet 2.28's own evaluators).
_RULES: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "mmdet.datasets.coco.CocoDataset": _coco,
    "mmdet.datasets.custom.CustomDataset": _voc,
    "mmdet.datasets.voc.VOCDataset": _voc,
    "mmdet.datasets.openimages.OpenImagesDataset": lambda kw: rules.voc_keys("mAP", kw.get("iou_thr")),
    "mmdet.datasets.coco_panoptic.CocoPanopticDataset": _panoptic,
    "mmdet.datasets.lvis.LVISV05Dataset": _lvis,
    "mmdet.datasets.cityscapes.CityscapesDataset": _cityscapes,
    "mmdet.datasets.coco_occluded.OccludedSeparatedCocoDataset": _occluded,
}


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
        dataset = getattr(evaluate, "__self__", None)
        metrics = {name: 0.0 for name in expected_metric_names(metric_kwargs, dataset)}
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
