"""Datasets, samplers and loaders for training and validation.

Training order is a pure function of ``(seed, position)``: :class:`GroupBatchSampler` lays out each pass
over the data as batches of per-slot size, each from one aspect-ratio group (``dataset.flag``, like mmdet's
``GroupSampler``/``DistributedGroupSampler``), padded so every slot gets the same number of batches; slot
``r`` of ``n`` takes batches ``r, r + n, ...``. :class:`ResumableBatchSampler` walks that sequence forever
from a position the trial restores from its checkpoint, and :class:`SeededDataset` seeds the augmentation
RNGs from the sample's place in the sequence, so a resumed run sees exactly the batches (and flips, crops)
the uninterrupted run would have seen. Determined's own skip-on-resume is not used because local mode
restarts its batch counter at 0 (see README, "Resuming").

Validation uses Determined's DataLoader, which gives slot ``r`` every ``n``-th batch: each image once.

Unreadable images (``data.bad_images``, :class:`~model_hub_mmdet.mmdet2.datasets.robust.BadImagePolicy`): importing
this module makes mmdet's ``LoadImageFromFile`` raise a ``BadImageError`` naming the file, and
``CocoDataset.load_annotations`` an ``AnnotationError`` naming the file and what mmdet cannot train on. In training,
:class:`SeededDataset` replaces a bad sample with a substitute from the same aspect-ratio group, chosen from
``(seed, sample key)`` alone, so the order stays a pure function of ``(seed, position)`` and resumes stay
exact. Worker processes cannot share a counter, so what happened travels with each batch (a
:class:`LoadReport` under ``batch["skipped_samples"]``) and :class:`BadImageTracker`, in the main process,
warns once per file, counts across all workers and stops the run with one line when more than
``max_fraction`` of the samples read were bad. The trial reads the per-batch count with
:func:`skipped_samples`; :func:`unwrap_batch` drops it. Errors a user can fix that are raised inside a worker
also travel this way, so they reach the main process as themselves (one line) rather than as torch's
"Caught ... in DataLoader worker process" wrapper with the worker's traceback in the message.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
from mmcv.parallel import DataContainer, collate
from torch.utils.data import Dataset

from model_hub_mmdet import loaders
from model_hub_mmdet.bad_images import BadImagePolicy
from model_hub_mmdet.loaders import TrainLoader, strip_bookkeeping
from model_hub_mmdet.mmdet2.transport import pack_batch, unpack_batch

logger = logging.getLogger("model_hub_mmdet")

# The core's samplers and bad-image bookkeeping are part of this module's API too (imported when asked for).
_CORE = {
    "model_hub_mmdet.bad_images": ("SKIPPED_INDICES_KEY", "SKIPPED_KEY", "BadImageError", "BadImageTracker",
                                   "LoadReport", "skipped_indices", "skipped_samples"),
    "model_hub_mmdet.sampling": ("MAX_SUBSTITUTES", "GroupBatchSampler", "LoadFailure", "ResumableBatchSampler",
                                 "SeededDataset", "Substitute"),
}
__all__ = [
    *(name for names in _CORE.values() for name in names), "BadImagePolicy", "IndexedDataset", "TrainLoader",
    "build_train_loader", "build_val_loader", "collate_checked", "collate_fn", "collate_validation",
    "install_checks", "unwrap_batch",
]


def __getattr__(name: str) -> Any:
    for module, names in _CORE.items():
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def install_checks() -> None:
    """Make mmdet's image loading and COCO annotation loading raise one-line errors naming the file (part of
    :func:`model_hub_mmdet.mmdet2.patches.apply`)."""
    from model_hub_mmdet.mmdet2.datasets import annotations, robust

    robust.install()
    annotations.install()


def build_train_loader(dataset: Dataset, batch_size: int, num_workers: int, seed: int, rank: int = 0,
                       num_replicas: int = 1, shuffle: bool = True, file_client_args: Mapping | None = None,
                       bad_images: Mapping | BadImagePolicy | None = None, worker_niceness: int = 0) -> TrainLoader:
    """The endless, resumable, group-batched training loader of one slot (:func:`model_hub_mmdet.loaders.
    build_train_loader` with mmcv's collate, the whole batch in one DataContainer chunk, packed for the trip from a
    worker by :mod:`.transport`). With an object-store ``file_client_args`` whose ``prefetch`` is > 0, the images
    of the next batches are fetched into the local cache ahead of the loader. ``bad_images`` is the experiment's
    ``data.bad_images`` (see :class:`~model_hub_mmdet.mmdet2.datasets.robust.BadImagePolicy`); the workers run at
    ``worker_niceness`` below the training process (:mod:`model_hub_mmdet.workers`)."""
    return loaders.build_train_loader(dataset, batch_size, batch_format(batch_size), num_workers=num_workers,
                                      seed=seed, rank=rank, num_replicas=num_replicas, shuffle=shuffle,
                                      file_client_args=file_client_args, bad_images=bad_images,
                                      worker_niceness=worker_niceness)


def build_val_loader(dataset: Dataset, batch_size: int, num_workers: int,
                     bad_images: Mapping | BadImagePolicy | None = None, worker_niceness: int = 0) -> Any:
    """Determined's DataLoader over :class:`IndexedDataset`, in order, no padding: each image once
    (:func:`model_hub_mmdet.loaders.build_val_loader` with mmcv's collate). An unreadable image is a DataError
    naming the file, raised in the main process; with ``bad_images: {skip_at_validation: true}`` it is left out of
    its batch instead (the batch's ``skipped_indices`` lists it, see :func:`skipped_indices`)."""
    return loaders.build_val_loader(dataset, batch_size, batch_format(batch_size), num_workers=num_workers,
                                    bad_images=bad_images, worker_niceness=worker_niceness)


def batch_format(samples_per_gpu: int) -> loaders.BatchFormat:
    """mmcv's collate with the whole batch in one DataContainer chunk, packed by :mod:`.transport`, the validation
    index in a DataContainer."""
    return loaders.BatchFormat(collate=partial(mmcv_collate, samples_per_gpu=samples_per_gpu), count=_batch_size,
                               pack=pack_batch, unpack=unpack_batch, wrap_index=index_container)


def index_container(idx: int) -> DataContainer:
    """A validation sample's dataset index, in a cpu-only DataContainer (mmcv's collate keeps it a list)."""
    return DataContainer(int(idx), cpu_only=True)


class IndexedDataset(loaders.IndexedDataset):
    """:class:`model_hub_mmdet.loaders.IndexedDataset` with the index under ``sample_idx`` as mmcv batches it."""

    def __init__(self, dataset: Dataset) -> None:
        super().__init__(dataset, wrap_index=index_container)


def mmcv_collate(batch: list, samples_per_gpu: int) -> Any:
    """mmcv's collate with the whole batch on one device (one DataContainer chunk)."""
    return collate(batch, samples_per_gpu=samples_per_gpu)


def collate_checked(batch: list, samples_per_gpu: int, skip_bad_images: bool = False, pack: bool = False) -> Any:
    """mmcv's collate of the loadable samples, with a :class:`LoadReport` under ``skipped_samples``
    (:func:`model_hub_mmdet.loaders.collate_checked`). With ``pack`` a worker packs the batch for the trip to the
    main process (:func:`model_hub_mmdet.mmdet2.transport.pack_batch`); only for loaders that unpack it again, as
    this module's do."""
    return loaders.collate_checked(batch, partial(mmcv_collate, samples_per_gpu=samples_per_gpu),
                                   skip_bad_images=skip_bad_images, pack=pack_batch if pack else None)


def collate_fn(samples_per_gpu: int, pack: bool = False) -> Callable[[list], Any]:
    """The training collate: :func:`collate_checked` with the whole batch on one device."""
    return partial(collate_checked, samples_per_gpu=samples_per_gpu, pack=pack)


def collate_validation(batch: list, samples_per_gpu: int, skip_bad_images: bool = False, pack: bool = False) -> Any:
    """The validation collate (see :func:`collate_checked`); picklable for spawned workers."""
    return collate_checked(batch, samples_per_gpu, skip_bad_images=skip_bad_images, pack=pack)


def _batch_size(batch: Mapping) -> int:
    """Samples in a collated mmdet batch (its ``img_metas``), else 1."""
    metas = batch.get("img_metas")
    if isinstance(metas, DataContainer):
        return sum(len(chunk) for chunk in metas.data)
    return 1


def unwrap_batch(batch: Any, device: torch.device) -> Any:
    """Turn mmcv's collated DataContainers into what a detector's forward takes, on ``device``.

    Each DataContainer holds one chunk (the whole per-slot batch): stacked tensors and lists of tensors move
    to ``device``; ``cpu_only`` data (image metas, bitmap masks) stays where it is. The loaders' bookkeeping
    (``skipped_samples``, ``skipped_indices``) is dropped; a failure it still carries is raised.
    """
    batch = strip_bookkeeping(batch)
    if isinstance(batch, DataContainer):
        data = batch.data[0]
        if batch.cpu_only:
            return data
        if isinstance(data, torch.Tensor):
            return data.to(device, non_blocking=True)
        return [d.to(device, non_blocking=True) if isinstance(d, torch.Tensor) else d for d in data]
    if isinstance(batch, Mapping):
        return {k: unwrap_batch(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(unwrap_batch(v, device) for v in batch)
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    return batch
