"""How a collated MMDetection 3.x batch travels from a data-loader worker to the training process: the core's
:class:`~model_hub_mmdet.transport.BatchTransport` (small tensors by value, binary masks as bits).

A 3.x batch (``pseudo_collate``: ``inputs``, a list of image tensors, and ``data_samples``, a list of
``DetDataSample`` holding boxes, labels and ``BitmapMasks`` of one byte per pixel) holds several small tensors per
image; they are entered here: the data fields of data samples (``InstanceData``) and the boxes' ``tensor``.
"""

from __future__ import annotations

from typing import Any

from model_hub_mmdet.transport import INLINE_BYTES, BatchTransport, Convert, InlineTensor, PackedMasks

__all__ = ["INLINE_BYTES", "InlineTensor", "PackedMasks", "pack_batch", "unpack_batch"]


class _Transport(BatchTransport):
    def masks_type(self) -> type:
        from mmdet.structures.mask import BitmapMasks

        return BitmapMasks

    def each_in_place(self, value: Any, convert: Convert, in_container: bool) -> bool:
        from mmdet.structures.bbox import BaseBoxes
        from mmengine.structures import BaseDataElement

        if isinstance(value, BaseBoxes):
            value.tensor = convert(value.tensor, in_container)
            return True
        if isinstance(value, BaseDataElement):
            # written past InstanceData's length check: a packed field is restored before anyone reads it
            for key in list(value.keys()):
                object.__setattr__(value, key, convert(getattr(value, key), in_container))
            return True
        return False


_TRANSPORT = _Transport()
pack_batch = _TRANSPORT.pack
unpack_batch = _TRANSPORT.unpack
_pack = _TRANSPORT.pack_here  # what a worker sends, for tests/mmdet3/test_data.py
