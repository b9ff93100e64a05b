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

import logging
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

import torch
from mmcv.parallel import DataContainer, collate
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import Dataset, Sampler

from model_hub_mmdet.bad_images import (
    SKIPPED_INDICES_KEY,
    SKIPPED_KEY,
    BadImageError,
    BadImagePolicy,
    BadImageTracker,
    LoadReport,
    skipped_indices,
    skipped_samples,
)
from model_hub_mmdet.errors import UserError
from model_hub_mmdet.mmdet2.transport import pack_batch, unpack_batch
from model_hub_mmdet.sampling import (
    MAX_SUBSTITUTES,
    GroupBatchSampler,
    LoadFailure,
    ResumableBatchSampler,
    SeededDataset,
    Substitute,
)
from model_hub_mmdet.workers import worker_init

logger = logging.getLogger("model_hub_mmdet")

__all__ = [  # the core's samplers and bad-image bookkeeping are part of this module's API too
    "MAX_SUBSTITUTES", "SKIPPED_INDICES_KEY", "SKIPPED_KEY", "BadImageError", "BadImagePolicy", "BadImageTracker",
    "GroupBatchSampler", "LoadFailure", "LoadReport", "ResumableBatchSampler", "SeededDataset", "Substitute",
    "build_train_loader", "build_val_loader", "collate_checked", "collate_fn", "collate_validation", "install_checks",
    "skipped_indices", "skipped_samples", "unwrap_batch",
]


def install_checks() -> None:
    """Make mmdet's image loading and COCO annotation loading raise one-line errors naming the file (part of
    :func:`model_hub_mmdet.mmdet2.patches.apply`)."""
    from model_hub_mmdet.mmdet2.datasets import annotations, robust

    robust.install()
    annotations.install()


class _LazyIterator:
    """Creates the real DataLoader iterator at the first ``next()``, i.e. after the trial restored state;
    each batch then passes through ``check`` (in the main process)."""

    def __init__(self, make: Any, check: Callable[[Any], Any] | None = None) -> None:
        self._make = make
        self._check = check
        self._it: Iterator | None = None

    def __iter__(self) -> _LazyIterator:
        return self

    def __next__(self) -> Any:
        if self._it is None:
            self._it = self._make()
        batch = unpack_batch(next(self._it))
        return self._check(batch) if self._check is not None else batch

    def release(self) -> None:
        """Forget the DataLoader iterator (a later ``next()`` starts a new one)."""
        self._it = None


class TrainLoader(TorchDataLoader):
    """A torch DataLoader whose iterator starts lazily (Determined calls ``iter()`` before loading a
    checkpoint; the sampler's position must be restored before any index is drawn). ``resumable`` is the
    :class:`ResumableBatchSampler` underneath (possibly wrapped by a storage prefetcher); ``tracker`` counts
    unreadable images across its workers."""

    resumable: ResumableBatchSampler
    tracker: BadImageTracker

    def __iter__(self) -> Iterator:
        tracker = getattr(self, "tracker", None)
        self._lazy = _LazyIterator(super().__iter__, tracker.training_batch if tracker is not None else None)
        return self._lazy

    def release_workers(self) -> bool:
        """Stop the persistent worker processes now instead of at exit; returns whether any were running.
        Training may still go on afterwards: the next batch starts new workers, from the sampler's position."""
        iterator = getattr(self, "_iterator", None)  # torch keeps the iterator of persistent workers here
        lazy = getattr(self, "_lazy", None)
        if lazy is not None:
            lazy.release()
        if iterator is None:
            return False
        self._iterator = None
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        return True


def build_train_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    seed: int,
    rank: int = 0,
    num_replicas: int = 1,
    shuffle: bool = True,
    file_client_args: Mapping | None = None,
    bad_images: Mapping | BadImagePolicy | None = None,
    worker_niceness: int = 0,
) -> TrainLoader:
    """The endless, resumable, group-batched training loader of one slot. With an object-store
    ``file_client_args`` whose ``prefetch`` is > 0, the images of the next batches are fetched into the local
    cache ahead of the loader (this slot's batches only). ``bad_images`` is the experiment's
    ``data.bad_images`` (see :class:`~model_hub_mmdet.mmdet2.datasets.robust.BadImagePolicy`); the workers run at
    ``worker_niceness`` below the training process (:mod:`model_hub_mmdet.workers`)."""
    policy = BadImagePolicy.from_config(bad_images)
    groups = GroupBatchSampler.for_dataset(dataset, batch_size, num_replicas=num_replicas, seed=seed, shuffle=shuffle)
    resumable = ResumableBatchSampler(groups, len(dataset), rank=rank)
    sampler = _with_prefetch(resumable, dataset, file_client_args)
    generator = torch.Generator()  # worker base seeds must not draw from the global torch RNG
    generator.manual_seed(seed)
    loader = TrainLoader(
        SeededDataset(dataset, seed),
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn(batch_size, pack=True),  # unpacked by _LazyIterator
        persistent_workers=num_workers > 0,
        generator=generator,
        worker_init_fn=worker_init(worker_niceness),
    )
    loader.resumable = resumable
    loader.tracker = BadImageTracker(policy, samples_per_pass=len(resumable) * batch_size, batch_size=_batch_size)
    return loader


class _SampleKeys:
    """What the prefetcher sees of the training set: a wrapper whose index ``key`` is sample ``key % len``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)


def _with_prefetch(sampler: ResumableBatchSampler, dataset: Dataset, file_client_args: Mapping | None) -> Sampler:
    from model_hub_mmdet.storage import object_backend
    from model_hub_mmdet.storage.prefetch import PrefetchBatchSampler

    backend = object_backend(dict(file_client_args)) if file_client_args else None
    if backend is None or backend.cache is None or not backend.prefetch or backend.prefetch <= 0:
        return sampler
    return PrefetchBatchSampler(sampler, _SampleKeys(dataset), backend, backend.prefetch, backend.prefetch_threads)


def build_val_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    bad_images: Mapping | BadImagePolicy | None = None,
    worker_niceness: int = 0,
) -> Any:
    """Determined's DataLoader over :class:`IndexedDataset`, in order, no padding: each image once; the workers
    run at ``worker_niceness`` below the training process (:mod:`model_hub_mmdet.workers`).

    An unreadable image is a DataError naming the file, raised in the main process; with
    ``bad_images: {skip_at_validation: true}`` it is left out of its batch instead (the batch's
    ``skipped_indices`` lists it, see :func:`skipped_indices`) and each pass logs how many were left out.
    """
    from determined import pytorch

    policy = BadImagePolicy.from_config(bad_images)

    class ValidationLoader(pytorch.DataLoader):
        def get_data_loader(self, *args: Any, **kwargs: Any) -> TorchDataLoader:
            loader = super().get_data_loader(*args, **kwargs)
            loader.__class__ = _CheckedLoader  # same object, its iterator checks each batch
            loader.tracker = BadImageTracker(policy, samples_per_pass=len(dataset), batch_size=_batch_size)
            return loader

    return ValidationLoader(
        IndexedDataset(dataset),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        worker_init_fn=worker_init(worker_niceness),
        collate_fn=partial(collate_validation, samples_per_gpu=batch_size, skip_bad_images=policy.skip_at_validation,
                           pack=True),  # unpacked by _CheckedLoader
    )


class _CheckedLoader(TorchDataLoader):
    """A torch DataLoader whose batches pass through ``tracker.validation_batch`` (in the main process)."""

    tracker: BadImageTracker

    def __iter__(self) -> Iterator:
        return self.tracker.validation_pass(unpack_batch(batch) for batch in super().__iter__())


class IndexedDataset(Dataset):
    """Wraps a dataset so each sample also carries its dataset index (to re-order predictions across slots).
    A sample that raises an error a user can fix becomes a :class:`LoadFailure` for the collate to handle."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> dict | LoadFailure:
        try:
            sample = self.dataset[idx]
        except UserError as err:
            return LoadFailure(err, int(idx))
        return dict(sample, sample_idx=DataContainer(int(idx), cpu_only=True))

    def __getattr__(self, name: str) -> Any:  # CLASSES, evaluate, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def mmcv_collate(batch: list, samples_per_gpu: int) -> Any:
    """mmcv's collate with the whole batch on one device (one DataContainer chunk)."""
    return collate(batch, samples_per_gpu=samples_per_gpu)


def collate_checked(batch: list, samples_per_gpu: int, skip_bad_images: bool = False, pack: bool = False) -> Any:
    """mmcv's collate of the loadable samples, with a :class:`LoadReport` under ``skipped_samples``.

    :class:`Substitute` samples count as substituted; a :class:`LoadFailure` of a bad image is left out when
    ``skip_bad_images`` (validation's opt-in), any other failure makes the batch carry only the report, for
    the main process to raise. With ``pack`` a worker packs the batch for the trip to the main process
    (:func:`model_hub_mmdet.mmdet2.transport.pack_batch`); only for loaders that unpack it again, as this module's do.
    """
    report = LoadReport()
    samples = []
    for item in batch:
        if isinstance(item, Substitute):
            report.skipped += item.skipped
            report.substituted += 1
            item = item.sample
        elif isinstance(item, LoadFailure):
            if skip_bad_images and isinstance(item.error, BadImageError):
                report.skipped.append((item.error.filename, item.error.reason))
                report.indices.append(item.index)
                continue
            report.failure = report.failure or item.error
            continue
        samples.append(item)
    if report.failure is not None or not samples:
        return {SKIPPED_KEY: report}
    out = mmcv_collate(samples, samples_per_gpu)
    if isinstance(out, dict):
        out[SKIPPED_KEY] = report
    return pack_batch(out) if pack else out


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
    if isinstance(batch, Mapping) and SKIPPED_KEY in batch:
        report = batch[SKIPPED_KEY]
        if isinstance(report, LoadReport) and report.failure is not None:
            raise report.failure
        batch = {k: v for k, v in batch.items() if k not in (SKIPPED_KEY, SKIPPED_INDICES_KEY)}
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
