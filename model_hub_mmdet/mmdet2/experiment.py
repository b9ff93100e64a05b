"""What ``model-hub-mmdet init`` needs from an MMDetection 2.x config (a generation-neutral ``ConfigFacts``).

The keys are read as mmdet 2.28's ``train_detector`` and mmcv 1.7's runners read them:

* per-GPU batch: ``data.train_dataloader.samples_per_gpu``, else ``data.samples_per_gpu``;
* schedule: ``runner`` (``IterBasedRunner`` -> ``max_iters``, else ``max_epochs``); a config without ``runner``
  trains ``total_epochs`` epochs (mmdet's fallback);
* validation: ``evaluation.interval`` (default 1), in iterations under ``IterBasedRunner`` (mmdet sets the hook's
  ``by_epoch`` from the runner type, whatever the config says);
* checkpoints: ``checkpoint_config.interval`` in the unit of ``checkpoint_config.by_epoch`` (default: epochs,
  iterations under ``IterBasedRunner``); a missing or non-positive interval means no periodic checkpoints here;
* metric: the first name ``dataset.evaluate`` reports for ``evaluation.metric`` (default ``bbox``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from model_hub_mmdet.config_pipeline import interval_or_none, loaded_with_overrides, whole_number
from model_hub_mmdet.tools.init import ConfigFacts


def config_facts(
    config_file: str, context_dir: str | os.PathLike = ".", overrides: Mapping[str, Any] | None = None
) -> ConfigFacts:
    """The :class:`ConfigFacts` of an mmdet 2.x config (a path or a name inside the installed mmdet), with the
    dotted ``overrides`` applied first."""
    from model_hub_mmdet.mmdet2.config import split_evaluation_cfg
    from model_hub_mmdet.mmdet2.evaluation import expected_metric_names

    cfg = loaded_with_overrides(config_file, context_dir, overrides)  # --cfg-options change the schedule and batch
    sources: dict[str, str] = {}
    data = cfg.get("data") or {}
    loader = data.get("train_dataloader") or {}
    if "samples_per_gpu" in loader:
        batch, sources["per_gpu_batch"] = loader["samples_per_gpu"], "data.train_dataloader.samples_per_gpu"
    else:
        batch, sources["per_gpu_batch"] = data.get("samples_per_gpu"), "data.samples_per_gpu"
    batch = whole_number(batch, sources["per_gpu_batch"], config_file)

    runner = cfg.get("runner") or {}
    by_iteration = runner.get("type") == "IterBasedRunner" or ("max_iters" in runner and "max_epochs" not in runner)
    if by_iteration:
        length, sources["length"] = runner.get("max_iters"), "runner.max_iters"
    elif "max_epochs" in runner:
        length, sources["length"] = runner["max_epochs"], "runner.max_epochs"
    else:
        length, sources["length"] = cfg.get("total_epochs"), "total_epochs"
    length = whole_number(length, sources["length"], config_file)

    evaluation = cfg.get("evaluation")
    evaluation = evaluation if isinstance(evaluation, Mapping) else {}
    val_interval = evaluation.get("interval", 1)
    sources["val_interval"] = "evaluation.interval" if "interval" in evaluation else "evaluation.interval (default)"
    metric_kwargs, _ = split_evaluation_cfg(evaluation)
    names = expected_metric_names(metric_kwargs, (cfg.get("data") or {}).get("val"))
    sources["metric"] = f"evaluation.metric={metric_kwargs.get('metric', 'bbox')!r}"

    checkpoint = cfg.get("checkpoint_config") or {}
    checkpoint_by_iteration = not checkpoint["by_epoch"] if "by_epoch" in checkpoint else by_iteration
    sources["checkpoint_interval"] = "checkpoint_config.interval"
    return ConfigFacts(per_gpu_batch=batch, by_iteration=by_iteration, length=length,
                       val_interval=interval_or_none(val_interval),
                       checkpoint_interval=interval_or_none(checkpoint.get("interval")),
                       checkpoint_by_iteration=checkpoint_by_iteration, metric=names[0] if names else None,
                       sources=sources)
