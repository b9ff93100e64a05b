"""How a collated MMDetection 3.x batch travels from a data-loader worker process to the training process.

torch sends every tensor a worker returns through shared memory, one file descriptor per tensor, which the main
process fetches from the worker over a socket before it can rebuild the tensor; everything else is pickled. A 3.x
batch (``pseudo_collate``: ``inputs``, a list of image tensors, and ``data_samples``, a list of ``DetDataSample``
holding boxes, labels and ``BitmapMasks`` of one byte per pixel) holds several small tensors per image, and the
main process spent most of ``next()`` on their handles while the model waited. So, in the worker
(:func:`pack_batch`), as for 2.x (``model_hub_mmdet.mmdet2.transport``):

* tensors below :data:`INLINE_BYTES` travel by value, inside the pickled batch, as numpy arrays: also those inside
  data samples (``InstanceData`` fields, the boxes' ``tensor``);
* binary ``BitmapMasks`` travel as bits, an eighth of the bytes.

The main process restores both (:func:`unpack_batch`) before anything else sees the batch, so the trial gets the
batch ``pseudo_collate`` made. Large tensors keep torch's shared memory.
"""

from __future__ import annotations

from collections.abc import MutableMapping, MutableSequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

INLINE_BYTES = 1 << 16  # 64 KiB
PACK_MASK_SIZE = 1 << 12  # smaller mask arrays are not worth the packing


class InlineTensor:
    """A small CPU tensor carried by value as a numpy array."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def tensor(self) -> torch.Tensor:
        """The tensor again (sharing the array's memory)."""
        return torch.from_numpy(self.array)


class PackedMasks:
    """The 0/1 array of a ``BitmapMasks`` carried as bits."""

    __slots__ = ("bits", "shape", "dtype")

    def __init__(self, array: np.ndarray) -> None:
        self.bits = np.packbits(array, axis=None)
        self.shape = array.shape
        self.dtype = array.dtype

    def array(self) -> np.ndarray:
        """The 0/1 array again, of its original dtype."""
        count = int(np.prod(self.shape))
        return np.unpackbits(self.bits, count=count).reshape(self.shape).astype(self.dtype, copy=False)


def _data_element() -> type:
    from mmengine.structures import BaseDataElement

    return BaseDataElement


def _boxes() -> type:
    from mmdet.structures.bbox import BaseBoxes

    return BaseBoxes


def _bitmap() -> type:
    from mmdet.structures.mask import BitmapMasks

    return BitmapMasks


def _pack(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        if value.device.type != "cpu" or value.requires_grad or value.nbytes > INLINE_BYTES:
            return value
        try:
            return InlineTensor(value.numpy())
        except (TypeError, RuntimeError):  # a dtype numpy lacks (bfloat16, ...): torch's own way
            return value
    if isinstance(value, _bitmap()):
        masks = value.masks
        if isinstance(masks, np.ndarray) and masks.dtype in (np.uint8, np.bool_) and masks.size >= PACK_MASK_SIZE:
            if masks.dtype == np.bool_ or masks.max(initial=0) <= 1:
                value.masks = PackedMasks(masks)
        return value
    if isinstance(value, _boxes()):
        value.tensor = _pack(value.tensor)
        return value
    _each_in_place(value, _pack)
    return value


def _unpack(value: Any) -> Any:
    if isinstance(value, InlineTensor):
        return value.tensor()
    if isinstance(value, _bitmap()):
        if isinstance(value.masks, PackedMasks):
            value.masks = value.masks.array()
        return value
    if isinstance(value, _boxes()):
        value.tensor = _unpack(value.tensor)
        return value
    _each_in_place(value, _unpack)
    return value


def _each_in_place(value: Any, convert: Any) -> None:
    """Apply ``convert`` to the items of the batch's dicts and lists and to the data fields of data samples
    (written past ``InstanceData``'s length check: a packed field is restored before anyone reads it)."""
    if isinstance(value, _data_element()):
        for key in list(value.keys()):
            object.__setattr__(value, key, convert(getattr(value, key)))
    elif isinstance(value, MutableMapping):
        for key in list(value):
            value[key] = convert(value[key])
    elif isinstance(value, MutableSequence):
        for i, item in enumerate(value):
            value[i] = convert(item)


def pack_batch(batch: Any) -> Any:
    """In a loader worker: pack the batch's small tensors and binary masks (in place) for the trip to the main
    process. Outside a worker the batch is returned untouched."""
    if get_worker_info() is None:
        return batch
    return _pack(batch)


def unpack_batch(batch: Any) -> Any:
    """In the main process: undo :func:`pack_batch` (in place); a batch that was not packed is unchanged."""
    return _unpack(batch)
