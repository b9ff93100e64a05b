"""One copy of a 3.x dataset's serialized annotations per node, not one per rank.

mmengine's ``BaseDataset(serialize_data=True)`` (mmdet 3's default) already keeps ``data_list`` as one pickled
numpy buffer, ``data_bytes`` with its ``data_address`` offsets, so its forked loader workers do not copy it on read.
Each rank of a node still builds and holds its own buffer. :func:`share_serialized` swaps a built dataset's buffers
for read-only memory maps of one node-local file (:mod:`model_hub_mmdet.node_cache`), written by the first rank to
get there and mapped by the others: the page cache holds the only copy. The records, their order and what
``get_data_info`` returns stay the same. Datasets that do not serialize, and mmengine's dataset wrappers
(``ConcatDataset``, ``RepeatDataset``, ``ClassBalancedDataset``), are walked into or left as they are.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from model_hub_mmdet.node_cache import cache_key, is_mapped, shared_arrays, wrapped_datasets

logger = logging.getLogger("model_hub_mmdet")

__all__ = ["share_serialized"]


def share_serialized(dataset: Any) -> Any:
    """Map ``dataset``'s serialized ``data_bytes`` / ``data_address`` from the node's shared file; returns
    ``dataset``, changed in place (nothing changes when it keeps no serialized buffer). Call it in the main process
    after the dataset is built and fully initialised, before its loader starts workers."""
    for leaf in _leaves(dataset):
        _share(leaf)
    return dataset


def _leaves(dataset: Any) -> Iterator[Any]:
    return wrapped_datasets(dataset, "data_bytes")


def _share(dataset: Any) -> None:
    data, address = getattr(dataset, "data_bytes", None), getattr(dataset, "data_address", None)
    if not isinstance(data, np.ndarray) or not isinstance(address, np.ndarray) or is_mapped(data):
        return  # not serialized, or shared already
    cls = type(dataset)
    # keyed by content (what mmengine built from the file and the settings), so a mismatch cannot be mapped
    key = cache_key(getattr(dataset, "ann_file", None), by_content=True,
                    dataset=f"{cls.__module__}.{cls.__qualname__}",
                    bytes=int(data.nbytes), records=len(address), crc=zlib.crc32(data), offsets=zlib.crc32(address))
    arrays, how = shared_arrays(key, lambda: {"data_bytes": data, "data_address": address})
    dataset.data_bytes, dataset.data_address = arrays["data_bytes"], arrays["data_address"]
    logger.debug("%s: %d serialized records shared per node (%s, %.0f MiB)", getattr(dataset, "ann_file", cls),
                 len(address), how, data.nbytes / 2**20)
