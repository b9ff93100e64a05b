"""How a collated batch travels from a data-loader worker process to the training process.

torch sends every tensor a worker returns through shared memory, one file descriptor per tensor, which the main
process fetches from the worker over a socket before it can rebuild the tensor; everything else is pickled into
a pipe of 64 KiB that the worker refills while the main process reads. A Mask R-CNN batch of 8 demo images held
17 tensors (one image stack, boxes and labels per image) and 360 KB of masks, one byte per pixel: the main
process spent ~9 ms per batch in ``next()``, 4 ms of it on the CPU and the rest waiting for the worker's threads
(``bench/step_ab.py``), while the model sat idle. So, in the worker (:func:`pack_batch`):

* tensors below :data:`INLINE_BYTES` travel by value, inside the pickled batch, as numpy arrays;
* binary ``BitmapMasks`` (values 0 and 1) travel as bits, an eighth of the bytes.

The main process restores both (:func:`unpack_batch`) before anything else sees the batch, so a trial gets the
batch mmcv's collate made. Large tensors (the images) keep torch's shared memory: copying megabytes through the
pipe would cost more than one round trip. ``next()`` then takes ~2.1 ms (1.7 ms of CPU).
"""

from __future__ import annotations

from collections.abc import MutableMapping, MutableSequence
from typing import Any

import numpy as np
import torch
from mmcv.parallel import DataContainer
from mmdet.core import BitmapMasks
from torch.utils.data import get_worker_info

INLINE_BYTES = 1 << 16  # 64 KiB: boxes, labels, points; the images of a batch are megabytes
PACK_MASK_SIZE = 1 << 12  # smaller mask arrays are not worth the packing


class InlineTensor:
    """A small CPU tensor carried by value as a numpy array."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.array)


class PackedMasks:
    """The 0/1 array of a ``BitmapMasks`` carried as bits."""

    __slots__ = ("bits", "shape", "dtype")

    def __init__(self, array: np.ndarray) -> None:
        self.bits = np.packbits(array, axis=None)
        self.shape = array.shape
        self.dtype = array.dtype

    def array(self) -> np.ndarray:
        count = int(np.prod(self.shape))
        return np.unpackbits(self.bits, count=count).reshape(self.shape).astype(self.dtype, copy=False)


def _pack(value: Any, in_container: bool = False) -> Any:
    if isinstance(value, torch.Tensor):
        if value.device.type != "cpu" or value.requires_grad or value.nbytes > INLINE_BYTES:
            return value
        try:
            return InlineTensor(value.numpy())
        except (TypeError, RuntimeError):  # a dtype numpy lacks (bfloat16, ...): torch's own way
            return value
    if isinstance(value, BitmapMasks):
        masks = value.masks
        if isinstance(masks, np.ndarray) and masks.dtype in (np.uint8, np.bool_) and masks.size >= PACK_MASK_SIZE:
            if masks.dtype == np.bool_ or masks.max(initial=0) <= 1:
                value.masks = PackedMasks(masks)
        return value
    _each_in_place(value, _pack, in_container)
    return value


def _unpack(value: Any, in_container: bool = False) -> Any:
    if isinstance(value, InlineTensor):
        return value.tensor()
    if isinstance(value, BitmapMasks):
        if isinstance(value.masks, PackedMasks):
            value.masks = value.masks.array()
        return value
    _each_in_place(value, _unpack, in_container)
    return value


def _each_in_place(value: Any, convert: Any, in_container: bool) -> None:
    """Apply ``convert`` to the items of a DataContainer's chunks (and their lists), or of the batch's own dicts
    and lists. Dicts inside a DataContainer (image metas) are not entered: mmdet puts no tensor there."""
    if isinstance(value, DataContainer):
        value = value.data
        in_container = True
    elif isinstance(value, MutableMapping) and not in_container:
        for key in list(value):
            value[key] = convert(value[key], in_container)
        return
    if isinstance(value, MutableSequence):
        for i, item in enumerate(value):
            value[i] = convert(item, in_container)


def pack_batch(batch: Any) -> Any:
    """In a loader worker: pack the batch's small tensors and binary masks (in place: in the batch's dicts and
    lists and in its DataContainers' chunks) for the trip to the main process. Outside a worker the batch is
    returned untouched."""
    if get_worker_info() is None:
        return batch
    return _pack(batch)


def unpack_batch(batch: Any) -> Any:
    """In the main process: undo :func:`pack_batch` (in place); a batch that was not packed is unchanged."""
    return _unpack(batch)
