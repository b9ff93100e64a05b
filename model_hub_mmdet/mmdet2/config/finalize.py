"""Last touches on a merged config: evaluation/test settings that MMDetection's own tools apply."""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Mapping
from typing import Callable

from mmcv import Config, ConfigDict

from model_hub_mmdet.config_tree import dataset_configs, mark_test_mode

logger = logging.getLogger("model_hub_mmdet")

# Keys of ``cfg.evaluation`` that configure mmdet's EvalHook, never ``dataset.evaluate``.
EVAL_HOOK_KEYS = frozenset(
    {
        "interval",
        "start",
        "by_epoch",
        "save_best",
        "rule",
        "greater_keys",
        "less_keys",
        "gpu_collect",
        "tmpdir",
        "out_dir",
        "file_client_args",
        "dynamic_intervals",
        "broadcast_bn_buffer",
        "test_fn",
        "efficient_test",
        "max_keep_ckpts",
        "type",
    }
)


def finalize(cfg: Config) -> Config:
    """Set ``test_mode=True`` on val/test datasets and replace ``ImageToTensor`` in their pipelines, as
    ``mmdet/tools/test.py`` does, so batched inference works."""
    from mmdet.datasets import replace_ImageToTensor

    data = cfg.get("data")
    if not data:
        return cfg
    for split in ("val", "test"):
        if split not in data:
            continue
        mark_test_mode(data[split])
        for ds in dataset_configs(data[split]):
            if ds.get("pipeline"):
                with warnings.catch_warnings():  # mmdet warns that it replaces; here that is the intent
                    warnings.simplefilter("ignore", UserWarning)
                    pipeline = replace_ImageToTensor(ds["pipeline"])
                ds["pipeline"] = ConfigDict(p=pipeline).p  # ConfigDicts again, so attribute access keeps working
    return cfg


def split_evaluation_cfg(evaluation: Mapping | None) -> tuple[dict, dict]:
    """Split ``cfg.evaluation`` into (kwargs for ``dataset.evaluate``, EvalHook-only settings)."""
    metric_kwargs, hook_kwargs = {}, {}
    for key, value in dict(evaluation or {}).items():
        (hook_kwargs if key in EVAL_HOOK_KEYS else metric_kwargs)[key] = value
    return metric_kwargs, hook_kwargs


def evaluate_kwargs(evaluation: Mapping | None, evaluate: Callable) -> dict:
    """The part of ``cfg.evaluation`` that ``evaluate`` (a ``dataset.evaluate``) accepts. EvalHook keys never
    pass; other unknown keys are dropped with a warning unless ``evaluate`` takes ``**kwargs``."""
    metric_kwargs, _ = split_evaluation_cfg(evaluation)
    params = inspect.signature(evaluate).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return metric_kwargs
    accepted = {k: v for k, v in metric_kwargs.items() if k in params}
    for key in sorted(set(metric_kwargs) - set(accepted)):
        name = getattr(evaluate, "__qualname__", evaluate)
        logger.warning("evaluation.%s is not an argument of %s; ignored", key, name)
    return accepted
