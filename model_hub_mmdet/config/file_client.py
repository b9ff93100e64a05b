"""Point every file-loading step of an MMDetection config at one storage backend (``data.file_client_args``)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from mmcv import ConfigDict

# Pipeline steps that read files through mmcv.FileClient (mmdet 2.28 and common extensions).
LOADING_STEPS = frozenset(
    {
        "LoadImageFromFile",
        "LoadAnnotations",
        "LoadPanopticAnnotations",
        "LoadMultiChannelImageFromFiles",
        "LoadImageFromWebcam",
    }
)
# Keys under which a dataset config nests other datasets (RepeatDataset, ConcatDataset, ClassBalancedDataset,
# MultiImageMixDataset, ...).
NESTED_DATASET_KEYS = ("dataset", "datasets")


def _walk_dataset(ds: Any, path: tuple, visit) -> None:
    if isinstance(ds, list):
        for i, d in enumerate(ds):
            _walk_dataset(d, path + (str(i),), visit)
        return
    if not isinstance(ds, Mapping):
        return
    visit(ds, path)
    for key in NESTED_DATASET_KEYS:
        if key in ds:
            _walk_dataset(ds[key], path + (key,), visit)


def loading_steps(cfg: Mapping) -> list[tuple[tuple[str, ...], Mapping]]:
    """Every (path, step) of a file-loading pipeline step reachable from ``data.train/val/test``."""
    found: list[tuple[tuple[str, ...], Mapping]] = []

    def visit(ds: Mapping, path: tuple) -> None:
        for i, step in enumerate(ds.get("pipeline") or []):
            if isinstance(step, Mapping) and step.get("type") in LOADING_STEPS:
                found.append((path + ("pipeline", str(i)), step))

    data = cfg.get("data") or {}
    for split in ("train", "val", "test"):
        if split in data:
            _walk_dataset(data[split], ("data", split), visit)
    for key, value in cfg.items():  # top-level train_pipeline/test_pipeline, kept consistent for the dump
        if key.endswith("pipeline") and isinstance(value, list):
            for i, step in enumerate(value):
                if isinstance(step, Mapping) and step.get("type") in LOADING_STEPS:
                    found.append(((key, str(i)), step))
    return found


def dataset_nodes(cfg: Mapping) -> list[tuple[tuple[str, ...], Mapping]]:
    """Every dataset config that reads an ``ann_file`` (those accept ``file_client_args`` in mmdet 2.28)."""
    found: list[tuple[tuple[str, ...], Mapping]] = []
    data = cfg.get("data") or {}
    for split in ("train", "val", "test"):
        if split in data:
            _walk_dataset(data[split], ("data", split), lambda d, p: found.append((p, d)) if "ann_file" in d else None)
    return found


def substitute_file_client_args(
    cfg: Mapping, file_client_args: Mapping | None, keep: set[tuple[str, ...]] = frozenset()
) -> int:
    """Set ``file_client_args`` on every loading step and annotation-reading dataset. Paths in ``keep`` (or
    below them) were set explicitly by ``override_mmdet_config`` and are left alone. Returns how many were set."""
    if not file_client_args:
        return 0
    if not isinstance(file_client_args, Mapping) or "backend" not in file_client_args:
        from model_hub_mmdet.errors import ConfigError

        raise ConfigError(
            f"data.file_client_args must be a mapping with a 'backend' key (e.g. {{backend: s3, bucket_name: b}}),"
            f" got {file_client_args!r}"
        )

    def kept(path: tuple) -> bool:  # an override wrote <path>.file_client_args or a key below it
        target = path + ("file_client_args",)
        return any(k[: len(target)] == target for k in keep)

    count = 0
    for path, node in loading_steps(cfg) + dataset_nodes(cfg):
        if kept(path):
            continue
        node["file_client_args"] = ConfigDict(copy.deepcopy(dict(file_client_args)))
        count += 1
    return count
