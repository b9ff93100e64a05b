"""What ``model-hub-mmdet init`` needs from an MMDetection 3.x config (a generation-neutral ``ConfigFacts``).

The keys are read as mmengine 0.10's runner reads them:

* per-GPU batch: ``train_dataloader.batch_size``;
* schedule: ``train_cfg`` (``IterBasedTrainLoop`` or ``by_epoch=False`` -> ``max_iters``, else ``max_epochs``);
* validation: ``train_cfg.val_interval`` (the loops' defaults: 1 epoch, 1000 iterations); none without a
  ``val_dataloader``/``val_cfg``;
* checkpoints: ``default_hooks.checkpoint.interval`` in the unit of its ``by_epoch`` (mmengine's default: epochs);
  a non-positive interval, or an epoch interval under an iteration loop (mmengine never calls it), means no
  periodic checkpoints here;
* metric: the first name the ``val_evaluator`` reports, with mmdet's prefix (``coco/bbox_mAP``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from model_hub_mmdet.config_pipeline import interval_or_none, loaded_with_overrides, whole_number
from model_hub_mmdet.tools.init import ConfigFacts

_LOOP_VAL_INTERVAL = {False: 1, True: 1000}  # EpochBasedTrainLoop's and IterBasedTrainLoop's defaults


def config_facts(
    config_file: str, context_dir: str | os.PathLike = ".", overrides: Mapping[str, Any] | None = None
) -> ConfigFacts:
    """The :class:`ConfigFacts` of an mmdet 3.x config (a path or a name inside the installed mmdet), with the
    dotted ``overrides`` applied first."""
    from model_hub_mmdet.mmdet3.schedules import loop_is_iter_based

    cfg = loaded_with_overrides(config_file, context_dir, overrides)  # as tools/train.py applies --cfg-options
    sources: dict[str, str] = {}
    loader = cfg.get("train_dataloader") or {}
    batch = whole_number(loader.get("batch_size"), "train_dataloader.batch_size", config_file)
    sources["per_gpu_batch"] = "train_dataloader.batch_size"

    train_cfg = cfg.get("train_cfg") or {}
    by_iteration = loop_is_iter_based(train_cfg)
    key = "max_iters" if by_iteration else "max_epochs"
    length = whole_number(train_cfg.get(key), f"train_cfg.{key}", config_file)
    sources["length"] = f"train_cfg.{key}"

    val_interval = None
    if cfg.get("val_dataloader") and cfg.get("val_cfg") is not None:
        val_interval = train_cfg.get("val_interval", _LOOP_VAL_INTERVAL[by_iteration])
        sources["val_interval"] = "train_cfg.val_interval" + ("" if "val_interval" in train_cfg else " (default)")
        if train_cfg.get("dynamic_intervals"):  # Determined's period is one number
            sources["val_interval"] += " (throughout: train_cfg.dynamic_intervals is not kept)"

    hook = (cfg.get("default_hooks") or {}).get("checkpoint") or {}
    checkpoint_by_iteration = not hook.get("by_epoch", True)
    checkpoint_interval = interval_or_none(hook.get("interval"))
    if by_iteration and not checkpoint_by_iteration:  # mmengine never calls an epoch interval under an iteration loop
        checkpoint_interval = None
    sources["checkpoint_interval"] = "default_hooks.checkpoint.interval"
    sources["metric"] = f"val_evaluator ({_metric_types(cfg.get('val_evaluator'))})"
    facts = {"val_interval": interval_or_none(val_interval), "checkpoint_interval": checkpoint_interval,
             "checkpoint_by_iteration": checkpoint_by_iteration, "metric": _first_metric(cfg.get("val_evaluator"))}
    return ConfigFacts(per_gpu_batch=batch, by_iteration=by_iteration, length=length, sources=sources, **facts)


def _first_metric(evaluator: Any) -> str | None:
    """The COCO-style metrics' first name; else ``prefix/metric`` of the first metric with a ``metric`` argument
    (given, or its class's default: VOC's ``pascal_voc/mAP``); panoptic metrics report ``PQ`` first."""
    import inspect

    from mmdet.registry import METRICS

    from model_hub_mmdet.mmdet3.evaluation import expected_metric_names, metric_configs

    names = expected_metric_names(evaluator)
    if names:
        return names[0]
    for cfg in metric_configs(evaluator):
        cls = METRICS.get(cfg.get("type")) if isinstance(cfg.get("type"), str) else None
        if not isinstance(cls, type):
            continue
        default = inspect.signature(cls.__init__).parameters.get("metric")
        metric = cfg.get("metric", default.default if default is not None else None)
        if metric is None and "Panoptic" in cls.__name__:
            metric = "PQ"
        metric = metric if isinstance(metric, str) else (list(metric or []) or [None])[0]
        prefix = cfg.get("prefix") or getattr(cls, "default_prefix", None)
        if isinstance(metric, str):
            return f"{prefix}/{metric}" if prefix else metric
    return None


def _metric_types(evaluator: Any) -> str:
    from model_hub_mmdet.mmdet3.evaluation import metric_configs

    return ", ".join(f"{c.get('type')} {c.get('metric', '')}".strip() for c in metric_configs(evaluator)) or "none"

