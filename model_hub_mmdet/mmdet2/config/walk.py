"""Walks over MMDetection config trees: the one place that knows how configs nest.

A config is dicts, lists and tuples. Paths are tuples of strings: dict keys, and list/tuple indices as numeric
strings (``("data", "train", "pipeline", "2")``), the form ``override_mmdet_config`` keys are written in.

Datasets nest through wrappers: ``RepeatDataset``, ``ClassBalancedDataset`` and ``MultiImageMixDataset`` hold one
``dataset``, ``ConcatDataset`` a list of ``datasets``, and ``data.train`` itself may be a list.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from model_hub_mmdet.config_tree import Path, children, dicts, key_paths

__all__ = ["Path", "annotated_dataset", "children", "dataset_configs", "dicts", "key_paths"]


def dataset_configs(ds: Any) -> Iterator[Mapping]:
    """``ds`` (a dataset config, or a list of them) and every dataset config wrapped inside it, outermost first."""
    if isinstance(ds, (list, tuple)):
        for item in ds:
            yield from dataset_configs(item)
    elif isinstance(ds, Mapping):
        yield ds
        for key in ("dataset", "datasets"):
            if key in ds:
                yield from dataset_configs(ds[key])


def annotated_dataset(ds: Mapping) -> Mapping:
    """The dataset config inside ``ds`` that reads the annotations (the first with an ``ann_file``, which is
    where ``classes`` go), or else the innermost one."""
    last = ds
    for last in dataset_configs(ds):
        if "ann_file" in last:
            break
    return last
