"""``model-hub-mmdet check``'s MMDetection 3.x part: the config as the trial builds it, and what it implies.

The core (:mod:`model_hub_mmdet.tools.check`) checks the experiment file and calls these; each returns its
problems (one line each, naming the key or file).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_hub_mmdet.errors import UserError
from model_hub_mmdet.expconf import section, trainer_plan

MASK_DETECTORS = {"SOLO", "SOLOv2", "CondInst", "BoxInst", "YOLACT", "QueryInst", "MaskFormer", "Mask2Former",
                  "PanopticFPN", "SCNet", "RTMDet"}


def _slots(conf: Mapping[str, Any]) -> int:
    slots = section(conf, "resources").get("slots_per_trial", 1) or 1
    return slots if isinstance(slots, int) and slots > 0 else 1


def override_problems(hparams: Mapping[str, Any], context_dir: Path) -> list[str]:
    """Every ``override_mmdet_config`` key applied on its own, so every bad key is reported, not only the first."""
    from model_hub_mmdet.mmdet3.config import apply_overrides, load_config, merge_config_file, resolve_config_path

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
    from model_hub_mmdet.mmdet3.config import build_mmdet_config

    return build_mmdet_config(hparams, section(conf, "data"), context_dir, slots=_slots(conf))


def storage_problems(conf: Mapping[str, Any]) -> list[str]:
    """``data.file_client_args.backend`` must be a registered mmengine file I/O backend (or ``disk``)."""
    file_client_args = section(conf, "data").get("file_client_args")
    if not file_client_args:
        return []
    from mmengine.fileio.backends import backends

    from model_hub_mmdet.mmdet3 import fileio

    fileio.register()
    backend = file_client_args.get("backend") if isinstance(file_client_args, Mapping) else None
    if backend in backends or backend == "disk":
        return []
    return [
        f"data.file_client_args.backend {backend!r} is not a registered storage backend"
        f" (available: {', '.join(sorted(set(backends) | {'disk'}))})"
    ]


def trainer_problems(conf: Mapping[str, Any], cfg: Any) -> list[str]:
    """Config values nothing here can honour (``resume``, ``compile``, another model wrapper or validation loop);
    gradient accumulation in the config must be Determined's; DDP's ``find_unused_parameters`` cannot be set
    through Determined's ``wrap_model``."""
    from model_hub_mmdet.mmdet3.config.keys import refusals

    plan = trainer_plan(conf)
    problems = refusals(cfg)
    wanted = int((cfg.get("optim_wrapper") or {}).get("accumulative_counts", 1) or 1)
    if wanted != plan.aggregation_frequency:
        problems.append(
            f"optim_wrapper.accumulative_counts={wanted} needs optimizations.aggregation_frequency: {wanted}"
            f" (it is {plan.aggregation_frequency}); Determined accumulates the gradients"
        )
    if find_unused_parameters(cfg) and _slots(conf) > 1:
        problems.append(find_unused_line())
    return problems


def find_unused_parameters(cfg: Any) -> bool:
    """Whether the config asks DDP to find unused parameters (top level or ``model_wrapper_cfg``)."""
    wrapper = cfg.get("model_wrapper_cfg") or {}
    return bool(cfg.get("find_unused_parameters") or wrapper.get("find_unused_parameters"))


def find_unused_line() -> str:
    """The one line for ``find_unused_parameters`` on several slots."""
    return ("find_unused_parameters=True cannot be passed to Determined's DistributedDataParallel (wrap_model takes"
            " no DDP arguments): train on one slot, or make every parameter take part in the loss")


def metric_problems(conf: Mapping[str, Any], cfg: Any) -> list[str]:
    """The searcher's metric is one the evaluation produces; segm needs a mask head."""
    from model_hub_mmdet.mmdet3.evaluation import expected_metric_names

    produced = expected_metric_names(cfg.get("val_evaluator"))
    problems = []
    if any(name.startswith("coco/segm") for name in produced) and not _has_mask_head(cfg.model):
        problems.append(f"val_evaluator asks for segm but {cfg.model.type} has no mask head")
    metric = section(conf, "searcher").get("metric")
    if metric and produced and metric not in produced:
        problems.append(
            f"searcher.metric {metric!r} is not produced by this config's val_evaluator"
            f" (it produces {', '.join(produced)})"
        )
    return problems


def annotation_problems(cfg: Any, conf: Mapping[str, Any], context_dir: Path) -> list[str]:
    """The COCO annotation files of the train/val/test datasets that are on this machine load as the trial loads
    them (mmdet's own ``CocoDataset`` with this package's checks: JSON, COCO sections, images, the dataset's
    classes); files in a bucket are checked when the trial starts."""
    from mmdet.datasets import CocoDataset
    from mmdet.registry import DATASETS

    from model_hub_mmdet.mmdet3.config.walk import SPLITS, annotated_dataset, split_dataset

    backend = (section(conf, "data").get("file_client_args") or {}).get("backend")
    if backend not in (None, "disk", "fake"):
        return []
    problems: list[str] = []
    seen: set[tuple[str, bool]] = set()
    for split in SPLITS:
        node = annotated_dataset(split_dataset(cfg, split))
        kind = DATASETS.get(str(node.get("type"))) if node.get("type") else None
        ann_file = node.get("ann_file")
        if not (isinstance(kind, type) and issubclass(kind, CocoDataset) and isinstance(ann_file, str)):
            continue
        root = node.get("data_root") or ""
        path = ann_file if os.path.isabs(ann_file) else os.path.join(str(context_dir), root, ann_file)
        if (path, split == "train") in seen or not os.path.isfile(path):
            continue
        seen.add((path, split == "train"))
        dataset_cfg = {**copy.deepcopy(dict(node)), "ann_file": path, "data_root": "", "pipeline": [],
                       "lazy_init": False}
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress
                DATASETS.build(dataset_cfg)
        except UserError as err:
            problems.append(str(err))
    return problems


def summarize(cfg: Any) -> dict[str, Any]:
    """What ``check`` prints of the final config."""
    from model_hub_mmdet.mmdet3.config.walk import annotated_dataset, split_dataset
    from model_hub_mmdet.mmdet3.evaluation import expected_metric_names

    optimizer = (cfg.get("optim_wrapper") or {}).get("optimizer") or {}
    schedulers = cfg.get("param_scheduler") or []
    schedulers = [schedulers] if isinstance(schedulers, Mapping) else list(schedulers)
    schedule = " + ".join(str(s.get("type")) for s in schedulers if isinstance(s, Mapping)) or "constant"
    train = annotated_dataset(split_dataset(cfg, "train"))
    return {
        "model": cfg.model.get("type"),
        "backbone": (cfg.model.get("backbone") or {}).get("type"),
        "dataset": train.get("type"),
        "classes": _classes_summary(train),
        "optimizer": f"{optimizer.get('type')} lr={optimizer.get('lr')}",
        "lr schedule": schedule,
        "metrics": ", ".join(expected_metric_names(cfg.get("val_evaluator"))),
    }


def _has_mask_head(model_cfg: Mapping) -> bool:
    roi = model_cfg.get("roi_head") or {}
    head = model_cfg.get("bbox_head") or {}
    kind = str(model_cfg.get("type", ""))
    masky = "mask_head" in model_cfg or "Ins" in str(head.get("type", "")) or "Mask" in kind
    return bool(roi.get("mask_head")) or masky or (kind in MASK_DETECTORS and kind != "RTMDet")


def _classes_summary(train: Mapping) -> str:
    classes = (train.get("metainfo") or {}).get("classes")
    if classes:
        return f"{len(classes)} ({', '.join(map(str, classes[:5]))}{', ...' if len(classes) > 5 else ''})"
    return f"dataset default of {train.get('type')}"
