"""How a collated 2.x batch travels from a data-loader worker to the training process: the core's
:class:`~model_hub_mmdet.transport.BatchTransport` (small tensors by value, binary masks as bits), entering mmcv's
``DataContainer`` chunks. Dicts inside a ``DataContainer`` (image metas) are not entered: mmdet puts no tensor
there."""

from __future__ import annotations

from collections.abc import MutableSequence
from typing import Any

from mmcv.parallel import DataContainer
from mmdet.core import BitmapMasks

from model_hub_mmdet.transport import INLINE_BYTES, BatchTransport, Convert, InlineTensor, PackedMasks

__all__ = ["INLINE_BYTES", "InlineTensor", "PackedMasks", "pack_batch", "unpack_batch"]


class _Transport(BatchTransport):
    def masks_type(self) -> type:
        return BitmapMasks

    def each_in_place(self, value: Any, convert: Convert, in_container: bool) -> bool:
        if not isinstance(value, DataContainer):
            return False
        if isinstance(value.data, MutableSequence):  # the chunks (one per GPU) and their lists
            for i, item in enumerate(value.data):
                value.data[i] = convert(item, True)
        return True


_TRANSPORT = _Transport()
pack_batch = _TRANSPORT.pack
unpack_batch = _TRANSPORT.unpack
