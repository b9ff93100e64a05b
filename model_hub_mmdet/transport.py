"""How a collated batch travels from a data-loader worker process to the training process (both generations).

torch sends every tensor a worker returns through shared memory, one file descriptor per tensor, which the main
process fetches from the worker over a socket before it can rebuild the tensor; everything else is pickled into
a pipe of 64 KiB that the worker refills while the main process reads. A 2.x Mask R-CNN batch of 8 demo images
held 17 tensors (one image stack, boxes and labels per image) and 360 KB of masks, one byte per pixel: the main
process spent ~9 ms per batch in ``next()``, 4 ms of it on the CPU and the rest waiting for the worker's threads
(``bench/step_ab.py``), while the model sat idle. So, in the worker (:meth:`BatchTransport.pack`):

* tensors below :data:`INLINE_BYTES` travel by value, inside the pickled batch, as numpy arrays;
* binary ``BitmapMasks`` (values 0 and 1) travel as bits, an eighth of the bytes.

The main process restores both (:meth:`BatchTransport.unpack`) before anything else sees the batch, so a trial
gets the batch the generation's collate made. Large tensors (the images) keep torch's shared memory: copying
megabytes through the pipe would cost more than one round trip. ``next()`` then took ~2.1 ms (1.7 ms of CPU).

The walk through the batch is written once here; each generation's ``transport.py`` subclasses
:class:`BatchTransport` for its mask class and its containers (2.x ``DataContainer``; 3.x data samples and boxes).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, MutableSequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

INLINE_BYTES = 1 << 16  # 64 KiB: boxes, labels, points; the images of a batch are megabytes
PACK_MASK_SIZE = 1 << 12  # smaller mask arrays are not worth the packing

Convert = Callable[[Any, bool], Any]  # (value, inside a generation's container) -> the value to store


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


def _packed_tensor(value: torch.Tensor) -> Any:
    if value.device.type != "cpu" or value.requires_grad or value.nbytes > INLINE_BYTES:
        return value
    try:
        return InlineTensor(value.numpy())
    except (TypeError, RuntimeError):  # a dtype numpy lacks (bfloat16, ...): torch's own way
        return value


def _packed_masks(masks: Any) -> Any:
    if isinstance(masks, np.ndarray) and masks.dtype in (np.uint8, np.bool_) and masks.size >= PACK_MASK_SIZE:
        if masks.dtype == np.bool_ or masks.max(initial=0) <= 1:
            return PackedMasks(masks)
    return masks


class BatchTransport:
    """Packs a batch in a loader worker and unpacks it in the main process, in place.

    A generation overrides :meth:`masks_type` (its ``BitmapMasks``) and :meth:`each_in_place` for the containers
    its collate makes; the batch's own dicts and lists are walked here.
    """

    def masks_type(self) -> type:
        """The generation's ``BitmapMasks`` class."""
        raise NotImplementedError

    def each_in_place(self, value: Any, convert: Convert, in_container: bool) -> bool:
        """Apply ``convert`` to the parts of ``value`` if it is one of the generation's containers (in place), and
        say whether it was."""
        return False

    # -- the walk
    def pack(self, batch: Any) -> Any:
        """In a loader worker: pack the batch's small tensors and binary masks (in place) for the trip to the main
        process. Outside a worker the batch is returned untouched."""
        if get_worker_info() is None:
            return batch
        return self.pack_here(batch)

    def pack_here(self, batch: Any) -> Any:
        """Pack ``batch`` (in place) as a worker would, in whatever process this is."""
        return self._convert(batch, True)

    def unpack(self, batch: Any) -> Any:
        """In the main process: undo :meth:`pack` (in place); a batch that was not packed is unchanged."""
        return self._convert(batch, False)

    def _convert(self, value: Any, packing: bool, in_container: bool = False) -> Any:
        if packing and isinstance(value, torch.Tensor):
            return _packed_tensor(value)
        if not packing and isinstance(value, InlineTensor):
            return value.tensor()
        if isinstance(value, self.masks_type()):
            if packing:
                value.masks = _packed_masks(value.masks)
            elif isinstance(value.masks, PackedMasks):
                value.masks = value.masks.array()
            return value

        def convert(item: Any, inside: bool = in_container) -> Any:
            return self._convert(item, packing, inside)

        if self.each_in_place(value, convert, in_container):
            return value
        if isinstance(value, MutableMapping) and not in_container:
            for key in list(value):
                value[key] = convert(value[key])
        elif isinstance(value, MutableSequence):
            for i, item in enumerate(value):
                value[i] = convert(item)
        return value
