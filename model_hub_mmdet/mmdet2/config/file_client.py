"""Point every file-loading step of an MMDetection config at one storage backend (``data.file_client_args``)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from mmcv import ConfigDict

from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.mmdet2.config.walk import dicts
from model_hub_mmdet.redact import redact
from model_hub_mmdet.storage.base import normalize_file_client_args

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


def _as_dict(cfg: Any) -> Mapping:
    return getattr(cfg, "_cfg_dict", cfg)  # an mmcv.Config is not a Mapping; its ConfigDict is


def loading_steps(cfg: Mapping) -> list[tuple[tuple[str, ...], Mapping]]:
    """Every (path, step) of a file-loading pipeline step anywhere in the config: ``data.train/val/test`` at any
    wrapper depth, and the top-level copies (``train_pipeline``, yolox's ``train_dataset``) the dump shows."""
    return [(p, n) for p, n in dicts(_as_dict(cfg)) if isinstance(n.get("type"), str) and n["type"] in LOADING_STEPS]


def dataset_nodes(cfg: Mapping) -> list[tuple[tuple[str, ...], Mapping]]:
    """Every dataset config that reads an ``ann_file`` (those accept ``file_client_args`` in mmdet 2.28)."""
    return [(p, n) for p, n in dicts(_as_dict(cfg)) if "ann_file" in n and "type" in n]


def substitute_file_client_args(
    cfg: Mapping, file_client_args: Mapping | None, keep: set[tuple[str, ...]] = frozenset()
) -> int:
    """Set ``file_client_args`` on every loading step and annotation-reading dataset. Paths in ``keep`` (or
    below them) were set explicitly by ``override_mmdet_config`` and are left alone. Returns how many were set."""
    if not file_client_args:
        return 0
    if not isinstance(file_client_args, Mapping) or "backend" not in file_client_args:
        raise ConfigError(
            f"data.file_client_args must be a mapping with a 'backend' key (e.g. {{backend: s3, bucket_name: b}}),"
            f" got {redact(file_client_args)!r}"  # the rest may hold credentials
        )

    def kept(path: tuple) -> bool:  # an override wrote <path>.file_client_args or a key below it
        target = path + ("file_client_args",)
        return any(k[: len(target)] == target for k in keep)

    # As mmcv's FileClient must receive them (the object-store backends' `prefix` becomes `key_prefix`).
    args = normalize_file_client_args(copy.deepcopy(dict(file_client_args)))
    count = 0
    for path, node in loading_steps(cfg) + dataset_nodes(cfg):
        if kept(path):
            continue
        node["file_client_args"] = ConfigDict(copy.deepcopy(args))
        count += 1
    return count


URI_BACKENDS = {"s3://": "s3", "gs://": "gcs", "gcs://": "gcs"}


def backend_from_uris(cfg: Mapping) -> dict | None:
    """``{backend: s3|gcs}`` when the datasets' ``ann_file``/``img_prefix`` are object-store URIs and the
    experiment gave no ``data.file_client_args`` (``data_root: s3://bucket/coco/`` alone then works)."""
    for _, node in dataset_nodes(cfg):
        for key in ("ann_file", "img_prefix", "seg_prefix"):
            value = node.get(key)
            for scheme, backend in URI_BACKENDS.items():
                if isinstance(value, str) and value.startswith(scheme):
                    return {"backend": backend}
    return None
