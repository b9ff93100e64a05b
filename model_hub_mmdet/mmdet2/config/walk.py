"""Walks over MMDetection config trees: the one place that knows how configs nest.

A config is dicts, lists and tuples. Paths are tuples of strings: dict keys, and list/tuple indices as numeric
strings (``("data", "train", "pipeline", "2")``), the form ``override_mmdet_config`` keys are written in.

Datasets nest through wrappers: ``RepeatDataset``, ``ClassBalancedDataset`` and ``MultiImageMixDataset`` hold one
``dataset``, ``ConcatDataset`` a list of ``datasets``, and ``data.train`` itself may be a list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

Path = tuple[str, ...]


def children(node: Any) -> Iterable[tuple[str, Any]]:
    """The (segment, value) pairs directly below ``node``: a dict's items, a list's or tuple's elements."""
    if isinstance(node, Mapping):
        return ((str(k), v) for k, v in node.items())
    if isinstance(node, (list, tuple)):
        return ((str(i), v) for i, v in enumerate(node))
    return ()


def dicts(tree: Any, path: Path = ()) -> Iterator[tuple[Path, Mapping]]:
    """Every dict in ``tree`` (``tree`` itself first) with its path, parents before children."""
    if isinstance(tree, Mapping):
        yield path, tree
    for seg, value in children(tree):
        yield from dicts(value, path + (seg,))


def key_paths(tree: Any, max_depth: int = 10, path: Path = ()) -> Iterator[Path]:
    """The path of every dict key in ``tree``, depth first (a key, then the keys below it, then its next sibling);
    paths longer than ``max_depth`` are not visited."""
    if len(path) >= max_depth:
        return
    for seg, value in children(tree):
        if isinstance(tree, Mapping):
            yield path + (seg,)
        yield from key_paths(value, max_depth, path + (seg,))


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
