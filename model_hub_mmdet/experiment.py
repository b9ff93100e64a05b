"""Experiment YAML files: loading, and the offline checks behind ``model-hub-mmdet check``."""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from model_hub_mmdet.errors import ConfigError, UserError

CONTEXT_LIMIT = 95 * 1024 * 1024  # Determined's limit on the uploaded context directory
DEFAULT_ENTRYPOINT = "model_hub_mmdet:MMDetTrial"


def load_experiment(path: str | os.PathLike) -> dict[str, Any]:
    """Parse an experiment YAML; errors name the file (and line for syntax errors)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: experiment file not found")
    try:
        conf = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} invalid YAML: {getattr(err, 'problem', None) or err}") from err
    if not isinstance(conf, dict):
        raise ConfigError(f"{path}: an experiment config must be a YAML mapping")
    return conf


def entrypoint_class(entrypoint: Any) -> str:
    """``module:Class`` from an entrypoint string (``python3 -m determined.launch.torch_distributed --trial X``)."""
    if isinstance(entrypoint, list):
        entrypoint = " ".join(map(str, entrypoint))
    if not entrypoint:
        return DEFAULT_ENTRYPOINT
    match = re.search(r"--trial\s+(\S+)", str(entrypoint))
    if match:
        return match.group(1)
    match = re.search(r"(\S+:\S+)\s*$", str(entrypoint))
    if match:
        return match.group(1)
    raise ConfigError(f"entrypoint {entrypoint!r}: expected 'module:Class' or '... --trial module:Class'")


def load_trial_class(spec: str, context_dir: str | os.PathLike = ".") -> type:
    """Import ``module:Class`` with ``context_dir`` on ``sys.path`` (as Determined does)."""
    from determined import pytorch

    module_name, _, cls_name = spec.partition(":")
    sys.path.insert(0, str(Path(context_dir).resolve()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"entrypoint {spec}: cannot import {module_name} ({err})") from err
    finally:
        sys.path.pop(0)
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, pytorch.PyTorchTrial)):
        raise ConfigError(f"entrypoint {spec}: {cls_name} is not a PyTorchTrial subclass in {module_name}")
    return cls


def context_size(context_dir: str | os.PathLike) -> int:
    """Bytes Determined would upload for ``context_dir`` (honours ``.detignore``)."""
    from determined.common import context

    with contextlib.redirect_stdout(io.StringIO()):
        files = context.read_v1_context(Path(context_dir), limit=10 * CONTEXT_LIMIT)
    return sum(len(f.content or "") * 3 // 4 for f in files)


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _has_mask_head(model_cfg: Mapping) -> bool:
    roi = model_cfg.get("roi_head") or {}
    return bool(roi.get("mask_head")) or "mask_head" in model_cfg or "Mask" in str(model_cfg.get("type", "")) or str(
        model_cfg.get("type", "")
    ) in {"SOLO", "SOLOv2", "CondInst", "YOLACT", "QueryInst", "MaskFormer", "Mask2Former", "PanopticFPN", "SCNet"}


def check_experiment(path: str | os.PathLike, context_dir: str | os.PathLike | None = None) -> CheckReport:
    """Validate offline everything about an experiment that can be validated without a cluster."""
    from model_hub_mmdet.config import (
        apply_overrides,
        build_mmdet_config,
        context_on_sys_path,
        finalize,
        load_config,
        merge_config_file,
        resolve_config_path,
        split_evaluation_cfg,
    )
    from model_hub_mmdet.evaluation import expected_metric_names
    from model_hub_mmdet.local import local_hparams

    report = CheckReport()
    problems = report.problems
    try:
        conf = load_experiment(path)
    except UserError as err:
        problems.append(str(err))
        return report
    context_dir = Path(context_dir or ".")
    context_on_sys_path(context_dir)
    raw_hparams = conf.get("hyperparameters")
    if not isinstance(raw_hparams, Mapping):
        problems.append(f"{path}: hyperparameters section missing")
        return report
    try:
        hparams = local_hparams(raw_hparams)
    except UserError as err:
        problems.append(str(err))
        return report

    gbs = hparams.get("global_batch_size")
    if not isinstance(gbs, int) or isinstance(gbs, bool) or gbs < 1:
        problems.append(f"hyperparameters.global_batch_size must be a positive integer, got {gbs!r}")
        gbs = None
    slots = int((conf.get("resources") or {}).get("slots_per_trial", 1) or 1)
    if gbs and gbs % slots:
        problems.append(
            f"hyperparameters.global_batch_size={gbs} is not divisible by resources.slots_per_trial={slots}"
        )
    for key, kind in (("use_pretrained", bool), ("auto_scale_lr", bool), ("override_mmdet_config", Mapping)):
        if key in hparams and hparams[key] is not None and not isinstance(hparams[key], kind):
            problems.append(f"hyperparameters.{key} must be a {getattr(kind, '__name__', kind)}, got {hparams[key]!r}")

    cfg = None
    if "config_file" not in hparams:
        problems.append("hyperparameters.config_file is required")
    else:
        try:
            base = load_config(resolve_config_path(hparams["config_file"], context_dir))
            if hparams.get("merge_config"):
                base = merge_config_file(
                    base, resolve_config_path(hparams["merge_config"], context_dir, key="merge_config")
                )
            # Every override key on its own, so that every bad key is reported, not only the first.
            overrides = hparams.get("override_mmdet_config") or {}
            if isinstance(overrides, Mapping):
                for key, value in overrides.items():
                    extra = {k: v for k, v in overrides.items() if k.endswith("._delete_") and k != key}
                    try:
                        apply_overrides(copy.deepcopy(base), {**extra, key: value})
                    except UserError as err:
                        problems.append(str(err))
            if not problems:
                cfg = build_mmdet_config(hparams, conf.get("data") or {}, context_dir)
                finalize(cfg)
        except UserError as err:
            problems.append(str(err))

    file_client_args = (conf.get("data") or {}).get("file_client_args")
    if file_client_args:
        from mmcv import FileClient

        import model_hub_mmdet  # noqa: F401  (registers the s3/gcs backends)

        backend = file_client_args.get("backend") if isinstance(file_client_args, Mapping) else None
        if backend not in FileClient._backends:
            problems.append(
                f"data.file_client_args.backend {backend!r} is not a registered storage backend"
                f" (available: {', '.join(sorted(FileClient._backends))})"
            )

    entry = None
    try:
        entry = entrypoint_class(conf.get("entrypoint"))
        load_trial_class(entry, context_dir)
    except UserError as err:
        problems.append(str(err))

    if cfg is not None:
        metric_kwargs, _ = split_evaluation_cfg(cfg.get("evaluation"))
        produced = expected_metric_names(metric_kwargs)
        if "segm" in str(metric_kwargs.get("metric")) and not _has_mask_head(cfg.model):
            problems.append(f"evaluation.metric asks for segm but {cfg.model.type} has no mask head")
        searcher_metric = (conf.get("searcher") or {}).get("metric")
        if searcher_metric and searcher_metric not in produced:
            problems.append(
                f"searcher.metric {searcher_metric!r} is not produced by this config's evaluation"
                f" (it produces {', '.join(produced)})"
            )
        optimizer = cfg.get("optimizer") or {}
        lr_config = cfg.get("lr_config") or {}
        warmup = lr_config.get("warmup")
        warmup = f", {warmup} warmup {lr_config.get('warmup_iters')} it" if warmup else ""
        report.summary = {
            "model": cfg.model.get("type"),
            "backbone": (cfg.model.get("backbone") or {}).get("type"),
            "dataset": (cfg.data.get("train") or {}).get("type"),
            "classes": _classes_summary(cfg),
            "batch size": f"global {gbs}, {slots} slot(s), {gbs // slots if gbs else '?'} per slot",
            "optimizer": f"{optimizer.get('type')} lr={optimizer.get('lr')}",
            "lr schedule": f"{lr_config.get('policy', 'constant')}{warmup}",
            "searcher": f"{(conf.get('searcher') or {}).get('name')} on {(conf.get('searcher') or {}).get('metric')}"
            f", max_length {(conf.get('searcher') or {}).get('max_length')}",
            "metrics": ", ".join(produced),
            "entrypoint": entry,
        }

    try:
        size = context_size(context_dir)
        report.summary["context"] = f"{size / 2**20:.1f} MiB"
        if size > CONTEXT_LIMIT:
            problems.append(
                f"context directory {context_dir} is {size / 2**20:.0f} MiB, over Determined's 95 MiB limit;"
                " add large folders to .detignore"
            )
    except (OSError, ValueError) as err:
        problems.append(f"context directory {context_dir}: {err}")
    return report


def _classes_summary(cfg: Any) -> str:
    train = cfg.data.get("train") or {}
    while "dataset" in train and "ann_file" not in train:
        train = train["dataset"]
    classes = train.get("classes")
    if classes:
        return f"{len(classes)} ({', '.join(map(str, classes[:5]))}{', ...' if len(classes) > 5 else ''})"
    return f"dataset default of {train.get('type')}"
