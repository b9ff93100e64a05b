"""Walks over MMDetection 2.x config trees (the core's :mod:`model_hub_mmdet.config_tree`).

Paths are tuples of strings: dict keys, and list/tuple indices as numeric strings (``("data", "train",
"pipeline", "2")``), the form ``override_mmdet_config`` keys are written in. Datasets sit in ``data.train``,
``data.val`` and ``data.test`` (``data.train`` may be a list) and nest through wrappers.
"""

from model_hub_mmdet.config_tree import Path, annotated_dataset, children, dataset_configs, dicts, key_paths

__all__ = ["Path", "annotated_dataset", "children", "dataset_configs", "dicts", "key_paths"]
