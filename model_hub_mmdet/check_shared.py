"""The half of ``model-hub-mmdet check``'s config checks that both MMDetection generations share.

Each generation's ``check`` module (``mmdet2/check.py``, ``mmdet3/check.py``) keeps only what differs: how its
config is built, which registry holds the storage backends, its evaluator's metric names, and how its datasets
load an annotation file. The rest is here, written once: overrides applied key by key, the searcher's metric
against the names validation reports, the libraries a dataset type or metric needs, the annotation files walked
split by split (each inspected by the generation's hook), and the summary lines. No mmcv, mmengine or mmdet import.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from model_hub_mmdet.errors import UserError
from model_hub_mmdet.expconf import section
from model_hub_mmdet.gc_pause import gc_paused
from model_hub_mmdet.metric_names import MetricNames, searcher_metric_problems

# Libraries mmdet imports only when a dataset type or metric needs them, and how to install each.
OPTIONAL_LIBRARIES = {
    "panopticapi": "pip install --no-deps panopticapi-lite==0.2.0",  # its metadata pins numpy<2; the code runs on 2
    "lvis": "pip install lvis==0.5.3",
    "cityscapesscripts": "pip install cityscapesscripts",
}


def override_problems(hparams: Mapping[str, Any], context_dir: Path, config: ModuleType) -> list[str]:
    """Every ``override_mmdet_config`` key applied on its own (``_delete_`` keys with each), so every bad key is
    reported, not only the first. ``config``: the generation's config package (``load_config``,
    ``merge_config_file``, ``resolve_config_path``, ``apply_overrides``)."""
    base = config.load_config(config.resolve_config_path(hparams["config_file"], context_dir))
    if hparams.get("merge_config"):
        merge = config.resolve_config_path(hparams["merge_config"], context_dir, key="merge_config")
        base = config.merge_config_file(base, merge)
    overrides = hparams.get("override_mmdet_config") or {}
    problems = []
    for key, value in overrides.items():
        deletes = {k: v for k, v in overrides.items() if str(k).endswith("._delete_") and k != key}
        try:
            config.apply_overrides(copy.deepcopy(base), {**deletes, key: value}, announce=False)
        except UserError as err:
            problems.append(str(err))
    return problems


def storage_problems(conf: Mapping[str, Any], registered: Callable[[], Iterable[str]]) -> list[str]:
    """``data.file_client_args.backend`` must be one of ``registered()`` (the generation's file I/O backends)."""
    file_client_args = section(conf, "data").get("file_client_args")
    if not file_client_args:
        return []
    backend = file_client_args.get("backend") if isinstance(file_client_args, Mapping) else None
    available = sorted(set(registered()))
    if backend in available:
        return []
    return [f"data.file_client_args.backend {backend!r} is not a registered storage backend"
            f" (available: {', '.join(available)})"]


def metric_problems(conf: Mapping[str, Any], produced: MetricNames, source: str,
                    segm_without_mask: str | None = None) -> list[str]:
    """``searcher.metric`` is a name validation reports (``source``: where the config sets the evaluation);
    ``segm_without_mask``: the line for a segm metric on a model without a mask head, if that is the case."""
    problems = [segm_without_mask] if segm_without_mask else []
    return problems + searcher_metric_problems(section(conf, "searcher").get("metric"), produced, source)


def missing_library_problems(needs: Mapping[str, str]) -> list[str]:
    """One line per library in ``needs`` (library -> what needs it) that does not import here."""
    return [f"{who} needs {lib}, which is not installed: {OPTIONAL_LIBRARIES.get(lib, f'pip install {lib}')}"
            for lib, who in needs.items() if importlib.util.find_spec(lib) is None]


@dataclass
class AnnotationFindings:
    """What the generation's annotation hook found in one file: ``problems`` (cannot train) and ``warning`` (one
    line: what mmdet tolerates, trained as it trains it)."""

    problems: list[str] = field(default_factory=list)
    warning: str | None = None


def local_backend(conf: Mapping[str, Any]) -> bool:
    """Whether annotation files are read from this machine's disk (files in a bucket are checked by the trial)."""
    return (section(conf, "data").get("file_client_args") or {}).get("backend") in (None, "disk", "fake")


def inspect_annotations(
    nodes: Iterable[tuple[str, Mapping]], conf: Mapping[str, Any], context_dir: Path,
    path_of: Callable[[Mapping, Path], str], inspect: Callable[[str, Mapping, str], AnnotationFindings],
) -> tuple[list[str], list[str]]:
    """The annotation files of the ``(split, dataset node)`` pairs that are on this machine, each inspected once
    per (file, train or not) by the generation's ``inspect(split, node, path)``, with the garbage collector paused
    as when the trial builds the dataset: (problems, warnings)."""
    problems: list[str] = []
    warnings: list[str] = []
    if not local_backend(conf):
        return problems, warnings
    seen: set[tuple[str, bool]] = set()
    for split, node in nodes:
        ann_file = node.get("ann_file") if isinstance(node, Mapping) else None
        if not isinstance(ann_file, str):
            continue
        path = path_of(node, context_dir)
        if (path, split == "train") in seen or not os.path.exists(path):
            continue
        seen.add((path, split == "train"))
        with gc_paused():  # the file parsed or the dataset built as the trial builds it (model_hub_mmdet.gc_pause)
            found = inspect(split, node, path)
        problems += found.problems
        if found.warning and not found.problems:
            warnings.append(found.warning)
    return list(dict.fromkeys(problems)), list(dict.fromkeys(warnings))


def load_failure(path: str, kind: str, err: BaseException) -> str:
    """The one line for an annotation file that mmdet's own ``kind`` loader cannot load."""
    reason = str(err).splitlines()[0] if str(err) else ""
    return f"{path}: MMDetection's {kind} cannot load it: {type(err).__name__}{': ' + reason if reason else ''}"


def classes_summary(classes: Any, dataset_type: Any) -> str:
    """The ``classes`` summary line: how many and the first five, or the dataset type's default."""
    if classes and not isinstance(classes, str):
        classes = list(classes)
        return f"{len(classes)} ({', '.join(map(str, classes[:5]))}{', ...' if len(classes) > 5 else ''})"
    return f"dataset default of {dataset_type}"


def config_summary(model_cfg: Mapping, dataset_type: Any, classes: str, optimizer: Mapping, schedule: str,
                   metrics: MetricNames) -> dict[str, Any]:
    """What ``check`` prints of the final config (the generation supplies where each value lives)."""
    return {
        "model": model_cfg.get("type"),
        "backbone": (model_cfg.get("backbone") or {}).get("type"),
        "dataset": dataset_type,
        "classes": classes,
        "optimizer": f"{optimizer.get('type')} lr={optimizer.get('lr')}",
        "lr schedule": schedule,
        "metrics": metrics.line(),
    }


def has_mask_head(model_cfg: Mapping, mask_detectors: Iterable[str], extra: bool = False) -> bool:
    """Whether a model config predicts masks: an RoI mask head, a top-level ``mask_head``, a ``Mask*`` type, one
    of ``mask_detectors``, or what the generation adds (``extra``)."""
    roi = model_cfg.get("roi_head") or {}
    kind = str(model_cfg.get("type", ""))
    return bool(roi.get("mask_head")) or "mask_head" in model_cfg or "Mask" in kind or kind in set(
        mask_detectors) or extra
