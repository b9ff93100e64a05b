"""Point every file-reading part of an MMDetection 3.x config at one storage backend.

The experiment's ``data.file_client_args`` (the same setting as for 2.x: ``{backend: s3|gcs|fake|disk, ...}``)
becomes mmengine's ``backend_args`` on every loading step, every dataset that reads an ``ann_file`` and every
evaluator metric that takes ``backend_args`` (``CocoMetric`` reads the annotation file itself). mmdet 3.x raises on
``file_client_args``, so any left in a config (an older custom config, an override) is renamed to ``backend_args``.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping, MutableMapping
from typing import Any

from mmengine.config import ConfigDict

from model_hub_mmdet.config_storage import URI_BACKENDS, as_dict, backend_of_uris, set_storage_args, storage_args
from model_hub_mmdet.mmdet3.config.walk import dicts, type_name

__all__ = ["EVALUATORS", "LOADING_STEPS", "URI_BACKENDS", "backend_args_of", "backend_from_uris", "dataset_nodes",
           "loading_steps", "metric_nodes", "rename_file_client_args", "substitute_backend_args"]

# Pipeline steps that read files through mmengine's file I/O (mmcv 2.1 and mmdet 3.3).
LOADING_STEPS = frozenset(
    {
        "LoadImageFromFile",
        "LoadAnnotations",
        "LoadPanopticAnnotations",
        "LoadMultiChannelImageFromFiles",
        "LoadTrackAnnotations",
        "LoadImageFromNDArray",
    }
)
EVALUATORS = ("val_evaluator", "test_evaluator")


def backend_args_of(file_client_args: Mapping | None) -> dict | None:
    """``data.file_client_args`` as mmengine's ``backend_args`` (``disk`` is mmengine's local backend: None)."""
    args = storage_args(file_client_args)
    if args is None:
        return None
    if args.get("backend") in ("disk", "local") and len(args) == 1:
        return None
    if args.get("backend") == "disk":
        args["backend"] = "local"
    return args


def loading_steps(cfg: Any) -> list[tuple[tuple[str, ...], MutableMapping]]:
    """Every (path, step) of a file-loading pipeline step anywhere in the config (dataloaders, the top-level
    ``train_pipeline`` copies, hooks' ``switch_pipeline``)."""
    return [(p, n) for p, n in dicts(as_dict(cfg)) if type_name(n) in LOADING_STEPS]  # type: ignore[misc]


def dataset_nodes(cfg: Any) -> list[tuple[tuple[str, ...], MutableMapping]]:
    """Every dataset config that reads an ``ann_file`` outside the evaluators."""
    return [(p, n) for p, n in dicts(as_dict(cfg))  # type: ignore[misc]
            if "ann_file" in n and "type" in n and p[:1] and p[0] not in EVALUATORS]


def metric_nodes(cfg: Any) -> list[tuple[tuple[str, ...], MutableMapping]]:
    """Every evaluator metric whose class takes ``backend_args``."""
    from mmdet.registry import METRICS

    found = []
    for key in EVALUATORS:
        for path, node in dicts(as_dict(cfg).get(key) or {}, (key,)):
            cls = METRICS.get(node.get("type")) if isinstance(node.get("type"), str) else None
            if cls is not None and "backend_args" in inspect.signature(cls.__init__).parameters:
                found.append((path, node))
    return found


def rename_file_client_args(cfg: Any) -> int:
    """Rename every ``file_client_args`` left in the config to ``backend_args`` (mmdet 3.x refuses the old name).
    Returns how many were renamed."""
    count = 0
    for _, node in dicts(as_dict(cfg)):
        if "file_client_args" in node:
            old = node.pop("file_client_args")  # type: ignore[attr-defined]
            node["backend_args"] = ConfigDict(backend_args_of(old)) if backend_args_of(old) else None  # type: ignore
            count += 1
    return count


def substitute_backend_args(
    cfg: Any, file_client_args: Mapping | None, keep: set[tuple[str, ...]] = frozenset()
) -> int:
    """Set ``backend_args`` (from the experiment's ``data.file_client_args``) on every loading step, dataset and
    metric, and the top-level ``backend_args`` variable. Paths in ``keep`` (or below them) were set explicitly by
    ``override_mmdet_config`` and are left alone. Returns how many were set."""
    args = backend_args_of(file_client_args)
    rename_file_client_args(cfg)
    if args is None:
        return 0
    nodes = loading_steps(cfg) + dataset_nodes(cfg) + metric_nodes(cfg)
    count = set_storage_args(nodes, "backend_args", args, keep, ConfigDict)
    root = as_dict(cfg)
    if ("backend_args",) not in keep:
        root["backend_args"] = ConfigDict(copy.deepcopy(args))  # type: ignore[index]
    return count


def backend_from_uris(cfg: Any) -> dict | None:
    """``{backend: s3|gcs}`` when the datasets' ``data_root``/``ann_file``/``data_prefix`` are object-store URIs and
    the experiment gave no ``data.file_client_args`` (``data_root: s3://bucket/coco/`` alone then works)."""
    values: list[Any] = []
    for _, node in dataset_nodes(cfg):
        prefix = node.get("data_prefix")
        values += [node.get("data_root"), node.get("ann_file")]
        values += list(prefix.values()) if isinstance(prefix, Mapping) else []
    return backend_of_uris(values)
