"""Walks over MMDetection 3.x config trees: the one place that knows how 3.x configs nest.

Paths and the generic walks are the core's (:mod:`model_hub_mmdet.config_tree`). Datasets sit in
``train_dataloader``/``val_dataloader``/``test_dataloader.dataset`` and nest through wrappers: ``RepeatDataset``,
``ClassBalancedDataset`` and ``MultiImageMixDataset`` hold one ``dataset``, ``ConcatDataset`` a list of
``datasets``. Class names are ``metainfo.classes``.
"""

from __future__ import annotations

from collections.abc import Mapping

from model_hub_mmdet.config_tree import annotated_dataset, children, dataset_configs, dicts, key_paths

__all__ = ["SPLITS", "annotated_dataset", "children", "dataset_configs", "dicts", "key_paths", "split_dataset",
           "type_name"]

SPLITS = ("train", "val", "test")


def type_name(node: Mapping) -> str:
    """A node's ``type`` without a registry scope (``mmdet.LoadImageFromFile`` -> ``LoadImageFromFile``)."""
    kind = node.get("type")
    return kind.rsplit(".", 1)[-1] if isinstance(kind, str) else ""


def split_dataset(cfg: Mapping, split: str) -> Mapping:
    """``<split>_dataloader.dataset`` of a config, or {}."""
    loader = cfg.get(f"{split}_dataloader") or {}
    dataset = loader.get("dataset") if isinstance(loader, Mapping) else None
    return dataset if isinstance(dataset, Mapping) else {}
