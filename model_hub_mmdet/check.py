"""``model-hub-mmdet check``: everything about an experiment that can be validated without a cluster.

Each check is a small function that returns its problems (one line each, naming the key or file); the summary is
built apart from them. :func:`check_experiment` runs them in order and stops early only where later checks need
what an earlier one could not produce (the experiment file, the final mmdet config).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_hub_mmdet.errors import UserError
from model_hub_mmdet.expconf import (
    global_batch_size,
    load_experiment,
    local_hparams,
    parse_entrypoint,
    section,
    trainer_plan,
)

CONTEXT_LIMIT = 95 * 1024 * 1024  # Determined's limit on the uploaded context directory
MASK_DETECTORS = {"SOLO", "SOLOv2", "CondInst", "YOLACT", "QueryInst", "MaskFormer", "Mask2Former", "PanopticFPN",
                  "SCNet"}


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _problems_of(func: Any, *args: Any) -> list[str]:
    """Run a check; a UserError it raises is its one problem."""
    try:
        return list(func(*args) or [])
    except UserError as err:
        return [str(err)]


# ---------------------------------------------------------------------------------------------- the checks


def schema_problems(conf: Mapping[str, Any]) -> list[str]:
    """Unknown or misspelt keys and wrong types against Determined's experiment schema."""
    from model_hub_mmdet.experiment_schema import schema_problems as problems

    return problems(conf)


def legacy_warnings(conf: Mapping[str, Any]) -> list[str]:
    """What a file written for Determined's retired model hub should change (warnings, not problems)."""
    from model_hub_mmdet.migrate import legacy_warnings as warnings

    return warnings(conf)


def hparam_problems(hparams: Mapping[str, Any], conf: Mapping[str, Any]) -> list[str]:
    """Batch size against slots, and the types of this package's own hyperparameters."""
    problems = []
    gbs = hparams.get("global_batch_size")
    if isinstance(gbs, bool) or not isinstance(gbs, int) or gbs < 1:
        problems.append(f"hyperparameters.global_batch_size must be a positive integer, got {gbs!r}")
    slots = section(conf, "resources").get("slots_per_trial", 1) or 1
    if isinstance(slots, int) and isinstance(gbs, int) and slots > 0 and gbs % slots:
        problems.append(
            f"hyperparameters.global_batch_size={gbs} is not divisible by resources.slots_per_trial={slots}"
        )
    for key, kind in (("use_pretrained", bool), ("auto_scale_lr", bool), ("save_cfg", bool),
                      ("override_mmdet_config", Mapping)):
        if hparams.get(key) is not None and not isinstance(hparams[key], kind):
            problems.append(f"hyperparameters.{key} must be a {getattr(kind, '__name__', kind)}, got {hparams[key]!r}")
    if "config_file" not in hparams:
        problems.append("hyperparameters.config_file is required")
    return problems


def override_problems(hparams: Mapping[str, Any], context_dir: Path) -> list[str]:
    """Every ``override_mmdet_config`` key applied on its own, so every bad key is reported, not only the first."""
    from model_hub_mmdet.config import apply_overrides, load_config, merge_config_file, resolve_config_path

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
    from model_hub_mmdet.config import build_mmdet_config, finalize

    cfg = build_mmdet_config(hparams, section(conf, "data"), context_dir)
    finalize(cfg)
    return cfg


def storage_problems(conf: Mapping[str, Any]) -> list[str]:
    """``data.file_client_args.backend`` must be a registered FileClient backend."""
    file_client_args = section(conf, "data").get("file_client_args")
    if not file_client_args:
        return []
    from mmcv import FileClient

    import model_hub_mmdet  # noqa: F401  (registers the storage backends)

    backend = file_client_args.get("backend") if isinstance(file_client_args, Mapping) else None
    if backend in FileClient._backends:
        return []
    return [
        f"data.file_client_args.backend {backend!r} is not a registered storage backend"
        f" (available: {', '.join(sorted(FileClient._backends))})"
    ]


def entrypoint_problems(conf: Mapping[str, Any], context_dir: Path) -> list[str]:
    """The entrypoint's trial class imports (the retired model hub's gets its migration line)."""
    from model_hub_mmdet.launch import load_trial_class

    load_trial_class(parse_entrypoint(conf.get("entrypoint")).trial, context_dir)
    return []


def trainer_problems(conf: Mapping[str, Any], cfg: Any) -> list[str]:
    """Lengths, periods and gradient accumulation as the Trainer will read them."""
    plan = trainer_plan(conf)
    problems = []
    if plan.max_length is None or plan.max_length.value < 1:
        problems.append("searcher.max_length is required (e.g. max_length: {batches: 1000})")
    if plan.max_length is not None and plan.max_length.unit == "records" and global_batch_size(conf) is None:
        problems.append("searcher.max_length in records needs hyperparameters.global_batch_size")
    opt_cfg = (cfg.get("optimizer_config") or {}) if cfg is not None else {}
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
    from model_hub_mmdet.config import split_evaluation_cfg
    from model_hub_mmdet.evaluation import expected_metric_names

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


def data_setting_problems(conf: Mapping[str, Any]) -> list[str]:
    """``data.bad_images`` and ``data.worker_niceness`` are valid settings."""
    from model_hub_mmdet.datasets.robust import BadImagePolicy
    from model_hub_mmdet.workers import worker_niceness

    BadImagePolicy.from_config(section(conf, "data").get("bad_images"))
    worker_niceness(section(conf, "data").get("worker_niceness"), "cpu")
    return []


def annotation_problems(cfg: Any, conf: Mapping[str, Any], context_dir: Path) -> list[str]:
    """The COCO annotation files of the train/val/test datasets that are on this machine are well-formed and hold
    the dataset's classes (files in a bucket are checked when the trial starts)."""
    from mmdet.datasets import DATASETS, CocoDataset

    from model_hub_mmdet.config.walk import annotated_dataset
    from model_hub_mmdet.datasets.annotations import validate_coco_annotations

    backend = (section(conf, "data").get("file_client_args") or {}).get("backend")
    if backend not in (None, "disk", "fake"):
        return []
    problems: list[str] = []
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
        problems += validate_coco_annotations(path, classes=node.get("classes") or kind.CLASSES)
    return problems


def context_problems(context_dir: Path) -> tuple[list[str], int | None]:
    """The context directory Determined would upload fits its 95 MiB limit (``.detignore`` honoured)."""
    from determined.common import context

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            files = context.read_v1_context(context_dir, limit=10 * CONTEXT_LIMIT)
    except (OSError, ValueError) as err:
        return [f"context directory {context_dir}: {err}"], None
    size = sum(len(f.content or "") * 3 // 4 for f in files)
    if size > CONTEXT_LIMIT:
        return [
            f"context directory {context_dir} is {size / 2**20:.0f} MiB, over Determined's 95 MiB limit;"
            " add large folders to .detignore"
        ], size
    return [], size


# ------------------------------------------------------------------------------------------------- runner


def check_experiment(path: str | os.PathLike, context_dir: str | os.PathLike | None = None) -> CheckReport:
    """Validate offline everything about an experiment that can be validated without a cluster."""
    from model_hub_mmdet.config import context_on_sys_path

    report = CheckReport()
    try:
        conf = load_experiment(path)
    except UserError as err:
        report.problems.append(str(err))
        return report
    context_dir = Path(context_dir or ".")
    context_on_sys_path(context_dir)
    report.problems += _problems_of(schema_problems, conf)
    report.warnings += _problems_of(legacy_warnings, conf)
    report.problems += _problems_of(entrypoint_problems, conf, context_dir)
    report.problems += _problems_of(storage_problems, conf)
    report.problems += _problems_of(data_setting_problems, conf)
    try:
        hparams = local_hparams(section(conf, "hyperparameters"))
    except UserError as err:
        report.problems.append(str(err))
        hparams = None
    cfg = None
    if hparams is not None:
        hparam_issues = hparam_problems(hparams, conf)
        report.problems += hparam_issues
        if "config_file" in hparams and isinstance(hparams.get("override_mmdet_config") or {}, Mapping):
            overrides = _problems_of(override_problems, hparams, context_dir)
            report.problems += overrides
            if not overrides and not hparam_issues:
                try:
                    cfg = build_config(hparams, conf, context_dir)
                except UserError as err:
                    report.problems.append(str(err))
    report.problems += _problems_of(trainer_problems, conf, cfg)
    if cfg is not None:
        report.problems += _problems_of(metric_problems, conf, cfg)
        report.problems += _problems_of(annotation_problems, cfg, conf, context_dir)
        report.summary = summarize(conf, cfg, hparams or {})
    context_issues, size = context_problems(context_dir)
    report.problems += context_issues
    if size is not None:
        report.summary["context"] = f"{size / 2**20:.1f} MiB"
    # Keep the order, drop repeats (a bad key can be reported by the schema and by a later check).
    report.problems = list(dict.fromkeys(report.problems))
    return report


# ------------------------------------------------------------------------------------------------ summary


def summarize(conf: Mapping[str, Any], cfg: Any, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The lines ``check`` prints for a valid experiment."""
    from model_hub_mmdet.config import split_evaluation_cfg
    from model_hub_mmdet.evaluation import expected_metric_names

    gbs = hparams.get("global_batch_size")
    slots = section(conf, "resources").get("slots_per_trial", 1) or 1
    optimizer = cfg.get("optimizer") or {}
    lr_config = cfg.get("lr_config") or {}
    warmup = lr_config.get("warmup")
    warmup = f", {warmup} warmup {lr_config.get('warmup_iters')} it" if warmup else ""
    searcher = section(conf, "searcher")
    plan = trainer_plan(conf)
    entry = parse_entrypoint(conf.get("entrypoint"))
    per_slot = gbs // slots if isinstance(gbs, int) and isinstance(slots, int) and slots > 0 else "?"
    return {
        "model": cfg.model.get("type"),
        "backbone": (cfg.model.get("backbone") or {}).get("type"),
        "dataset": (cfg.data.get("train") or {}).get("type"),
        "classes": _classes_summary(cfg),
        "batch size": f"global {gbs}, {slots} slot(s), {per_slot} per slot",
        "optimizer": f"{optimizer.get('type')} lr={optimizer.get('lr')}",
        "lr schedule": f"{lr_config.get('policy', 'constant')}{warmup}",
        "searcher": f"{searcher.get('name')} on {searcher.get('metric')}, max_length {plan.max_length}",
        "periods": f"validation every {_period(plan.validation_period)}, checkpoint every"
        f" {_period(plan.checkpoint_period)}",
        "metrics": ", ".join(expected_metric_names(split_evaluation_cfg(cfg.get("evaluation"))[0])),
        "entrypoint": f"{entry.trial} ({entry.form} form)",
    }


def _period(length: Any) -> str:
    return str(length) if length.value > 0 else "end of training"


def _has_mask_head(model_cfg: Mapping) -> bool:
    roi = model_cfg.get("roi_head") or {}
    kind = str(model_cfg.get("type", ""))
    return bool(roi.get("mask_head")) or "mask_head" in model_cfg or "Mask" in kind or kind in MASK_DETECTORS


def _classes_summary(cfg: Any) -> str:
    from model_hub_mmdet.config.walk import annotated_dataset

    train = annotated_dataset(cfg.data.get("train") or {})
    classes = train.get("classes")
    if classes:
        return f"{len(classes)} ({', '.join(map(str, classes[:5]))}{', ...' if len(classes) > 5 else ''})"
    return f"dataset default of {train.get('type')}"
