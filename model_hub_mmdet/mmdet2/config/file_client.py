"""Point every file-loading step of an MMDetection config at one storage backend (``data.file_client_args``)."""

from __future__ import annotations

from collections.abc import Mapping

from mmcv import ConfigDict

from model_hub_mmdet.config_storage import URI_BACKENDS, as_dict, backend_of_uris, set_storage_args, storage_args
from model_hub_mmdet.config_tree import dicts

__all__ = ["LOADING_STEPS", "URI_BACKENDS", "backend_from_uris", "dataset_nodes", "loading_steps",
           "substitute_file_client_args"]

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


def loading_steps(cfg: Mapping) -> list[tuple[tuple[str, ...], Mapping]]:
    """Every (path, step) of a file-loading pipeline step anywhere in the config: ``data.train/val/test`` at any
    wrapper depth, and the top-level copies (``train_pipeline``, yolox's ``train_dataset``) the dump shows."""
    return [(p, n) for p, n in dicts(as_dict(cfg)) if isinstance(n.get("type"), str) and n["type"] in LOADING_STEPS]


def dataset_nodes(cfg: Mapping) -> list[tuple[tuple[str, ...], Mapping]]:
    """Every dataset config that reads an ``ann_file`` (those accept ``file_client_args`` in mmdet 2.28)."""
    return [(p, n) for p, n in dicts(as_dict(cfg)) if "ann_file" in n and "type" in n]


def substitute_file_client_args(
    cfg: Mapping, file_client_args: Mapping | None, keep: set[tuple[str, ...]] = frozenset()
) -> int:
    """Set ``file_client_args`` on every loading step and annotation-reading dataset. Paths in ``keep`` (or
    below them) were set explicitly by ``override_mmdet_config`` and are left alone. Returns how many were set."""
    args = storage_args(file_client_args)  # as mmcv's FileClient must receive them
    if args is None:
        return 0
    return set_storage_args(loading_steps(cfg) + dataset_nodes(cfg), "file_client_args", args, keep, ConfigDict)


def backend_from_uris(cfg: Mapping) -> dict | None:
    """``{backend: s3|gcs}`` when the datasets' ``ann_file``/``img_prefix`` are object-store URIs and the
    experiment gave no ``data.file_client_args`` (``data_root: s3://bucket/coco/`` alone then works)."""
    return backend_of_uris(n.get(k) for _, n in dataset_nodes(cfg) for k in ("ann_file", "img_prefix", "seg_prefix"))
