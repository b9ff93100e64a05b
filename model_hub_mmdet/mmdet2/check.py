"""``model-hub-mmdet check``'s MMDetection 2.x part: the config as the trial builds it, and what it implies.

The core (:mod:`model_hub_mmdet.tools.check`) checks the experiment file and calls these; each returns its
problems (one line each, naming the key or file).
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_hub_mmdet.errors import UserError
from model_hub_mmdet.expconf import section, trainer_plan

MASK_DETECTORS = {"SOLO", "SOLOv2", "CondInst", "YOLACT", "QueryInst", "MaskFormer", "Mask2Former", "PanopticFPN",
                  "SCNet"}


def override_problems(hparams: Mapping[str, Any], context_dir: Path) -> list[str]:
    """Every ``override_mmdet_config`` key applied on its own, so every bad key is reported, not only the first."""
    from model_hub_mmdet.mmdet2.config import apply_overrides, load_config, merge_config_file, resolve_config_path

    base = load_config(resolve_config_path(hparams["config_file"], context_dir))
    if hparams.get("merge_config"):
        base = merge_config_file(base, resolve_config_path(hparams["merge_config"], context_dir, key="merge_config"))
    overrides = hparams.get("override_mmdet_config") or {}
    problems = []
    for key, value in overrides.items():
        deletes = {k: v for k, v in overrides.items() if str(k).endswith("._delete_") and k != key}
        try:
            apply_overrides(copy.deepcopy(base), {**deletes, key: value})
        except UserError as err:
            problems.append(str(err))
    return problems


def build_config(hparams: Mapping[str, Any], conf: Mapping[str, Any], context_dir: Path) -> Any:
    """The final mmdet config, as the trial builds it."""
    from model_hub_mmdet.mmdet2.config import build_mmdet_config, finalize

    cfg = build_mmdet_config(hparams, section(conf, "data"), context_dir)
    finalize(cfg)
    return cfg


def storage_problems(conf: Mapping[str, Any]) -> list[str]:
    """``data.file_client_args.backend`` must be a registered FileClient backend."""
    file_client_args = section(conf, "data").get("file_client_args")
    if not file_client_args:
        return []
    from mmcv import FileClient

    from model_hub_mmdet.mmdet2 import fileio

    fileio.register()
    backend = file_client_args.get("backend") if isinstance(file_client_args, Mapping) else None
    if backend in FileClient._backends:
        return []
    return [
        f"data.file_client_args.backend {backend!r} is not a registered storage backend"
        f" (available: {', '.join(sorted(FileClient._backends))})"
    ]


def trainer_problems(conf: Mapping[str, Any], cfg: Any) -> list[str]:
    """Config values nothing here can honour (``resume_from``, a ``workflow`` with a val phase); gradient
    accumulation in the config must be Determined's (``optimizations.aggregation_frequency``)."""
    from model_hub_mmdet.mmdet2.config.keys import refusals

    plan = trainer_plan(conf)
    problems = refusals(cfg)
    opt_cfg = cfg.get("optimizer_config") or {}
    if "cumulative_iters" in opt_cfg:
        wanted = int(opt_cfg["cumulative_iters"])
        if wanted != plan.aggregation_frequency:
            problems.append(
                f"optimizer_config.cumulative_iters={wanted} needs optimizations.aggregation_frequency: {wanted}"
                f" (it is {plan.aggregation_frequency}); Determined accumulates the gradients"
            )
    return problems


def metric_problems(conf: Mapping[str, Any], cfg: Any) -> list[str]:
    """The searcher's metric is one the evaluation produces; segm needs a mask head."""
    from model_hub_mmdet.mmdet2.config import split_evaluation_cfg
    from model_hub_mmdet.mmdet2.evaluation import expected_metric_names

    metric_kwargs, _ = split_evaluation_cfg(cfg.get("evaluation"))
    produced = expected_metric_names(metric_kwargs)
    problems = []
    if "segm" in str(metric_kwargs.get("metric")) and not _has_mask_head(cfg.model):
        problems.append(f"evaluation.metric asks for segm but {cfg.model.type} has no mask head")
    metric = section(conf, "searcher").get("metric")
    if metric and metric not in produced:
        problems.append(
            f"searcher.metric {metric!r} is not produced by this config's evaluation"
            f" (it produces {', '.join(produced)})"
        )
    return problems


def annotation_problems(cfg: Any, conf: Mapping[str, Any], context_dir: Path) -> list[str]:
    """What MMDetection cannot train on in the COCO annotation files of the train/val/test datasets that are on
    this machine (files in a bucket are checked when the trial starts)."""
    return _inspect_annotations(cfg, conf, context_dir)[0]


def annotation_warnings(cfg: Any, conf: Mapping[str, Any], context_dir: Path) -> list[str]:
    """What MMDetection tolerates in those files (trained as it trains it): one line per file, no problem."""
    return _inspect_annotations(cfg, conf, context_dir)[1]


@functools.lru_cache(maxsize=4)
def _inspect_cached(path: str, classes: tuple, filter_empty_gt: bool, test_mode: bool, mtime: float) -> Any:
    from model_hub_mmdet.mmdet2.datasets.annotations import inspect_file

    return inspect_file(path, classes, filter_empty_gt=filter_empty_gt, test_mode=test_mode)


def _inspect_annotations(cfg: Any, conf: Mapping[str, Any], context_dir: Path) -> tuple[list[str], list[str]]:
    from mmdet.datasets import DATASETS, CocoDataset

    from model_hub_mmdet.mmdet2.config.walk import annotated_dataset

    backend = (section(conf, "data").get("file_client_args") or {}).get("backend")
    if backend not in (None, "disk", "fake"):
        return [], []
    problems: list[str] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for split in ("train", "val", "test"):
        node = annotated_dataset(cfg.data.get(split) or {})
        kind = DATASETS.get(str(node.get("type"))) if isinstance(node, Mapping) else None
        ann_file = node.get("ann_file") if isinstance(node, Mapping) else None
        if not (isinstance(kind, type) and issubclass(kind, CocoDataset) and isinstance(ann_file, str)):
            continue
        path = ann_file if os.path.isabs(ann_file) else str(context_dir / ann_file)
        if path in seen or not os.path.isfile(path):
            continue
        seen.add(path)
        classes = node.get("classes") or kind.CLASSES
        report = _inspect_cached(path, tuple(classes) if not isinstance(classes, str) else classes,
                                 bool(node.get("filter_empty_gt", True)), split != "train", os.path.getmtime(path))
        problems += [f"{path}: {p}" for p in report.problems]
        line = report.warning_line(path)
        if line and not report.problems:
            warnings.append(line)
    return problems, warnings


def summarize(cfg: Any) -> dict[str, Any]:
    """What ``check`` prints of the final config."""
    from model_hub_mmdet.mmdet2.config import split_evaluation_cfg
    from model_hub_mmdet.mmdet2.evaluation import expected_metric_names

    optimizer = cfg.get("optimizer") or {}
    lr_config = cfg.get("lr_config") or {}
    warmup = lr_config.get("warmup")
    warmup = f", {warmup} warmup {lr_config.get('warmup_iters')} it" if warmup else ""
    return {
        "model": cfg.model.get("type"),
        "backbone": (cfg.model.get("backbone") or {}).get("type"),
        "dataset": (cfg.data.get("train") or {}).get("type"),
        "classes": _classes_summary(cfg),
        "optimizer": f"{optimizer.get('type')} lr={optimizer.get('lr')}",
        "lr schedule": f"{lr_config.get('policy', 'constant')}{warmup}",
        "metrics": ", ".join(expected_metric_names(split_evaluation_cfg(cfg.get("evaluation"))[0])),
    }


def _has_mask_head(model_cfg: Mapping) -> bool:
    roi = model_cfg.get("roi_head") or {}
    kind = str(model_cfg.get("type", ""))
    return bool(roi.get("mask_head")) or "mask_head" in model_cfg or "Mask" in kind or kind in MASK_DETECTORS


def _classes_summary(cfg: Any) -> str:
    from model_hub_mmdet.mmdet2.config.walk import annotated_dataset

    train = annotated_dataset(cfg.data.get("train") or {})
    classes = train.get("classes")
    if classes:
        return f"{len(classes)} ({', '.join(map(str, classes[:5]))}{', ...' if len(classes) > 5 else ''})"
    return f"dataset default of {train.get('type')}"
