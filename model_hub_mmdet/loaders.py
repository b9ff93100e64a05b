"""Training and validation loaders around a generation's collate, shared by the adapters (no mmcv/mmengine).

* :class:`TrainLoader` is a torch ``DataLoader`` over the core's :class:`~model_hub_mmdet.sampling.SeededDataset`
  and :class:`~model_hub_mmdet.sampling.ResumableBatchSampler` whose iterator starts lazily (Determined calls
  ``iter()`` before it loads a checkpoint; the sampler's position must be restored before any index is drawn) and
  whose batches pass :class:`~model_hub_mmdet.bad_images.BadImageTracker` in the main process.
* :class:`IndexedDataset` gives each validation sample its dataset index, to put predictions of all slots back in
  order; a sample that raises an error a user can fix becomes a :class:`~model_hub_mmdet.sampling.LoadFailure`.
* :func:`collate_checked` collates the loadable samples of a batch with the generation's collate and carries a
  :class:`~model_hub_mmdet.bad_images.LoadReport` under ``skipped_samples``.
* :func:`build_train_loader` and :func:`build_val_loader` put these together for a generation, which brings its
  collate, the ``pack``/``unpack`` of a batch's trip from a worker (its ``transport.py``), how to count a batch's
  samples, and (for the prefetcher) where its images are.
"""

from __future__ import annotations

import dataclasses
import gc
import os
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from model_hub_mmdet.bad_images import (
    SKIPPED_INDICES_KEY,
    SKIPPED_KEY,
    BadImageError,
    BadImagePolicy,
    BadImageTracker,
    LoadReport,
)
from model_hub_mmdet.errors import UserError
from model_hub_mmdet.sampling import GroupBatchSampler, LoadFailure, ResumableBatchSampler, SeededDataset, Substitute
from model_hub_mmdet.workers import plug_heap_holes, release_free_heap, worker_init

INDEX_KEY = "sample_idx"


class LazyIterator:
    """Creates the real DataLoader iterator at the first ``next()``, i.e. after the trial restored state; each
    batch then passes through ``unpack`` and ``check`` (in the main process)."""

    def __init__(self, make: Callable[[], Iterator], check: Callable[[Any], Any] | None = None,
                 unpack: Callable[[Any], Any] | None = None) -> None:
        self._make = make
        self._check = check
        self._unpack = unpack
        self._it: Iterator | None = None

    def __iter__(self) -> LazyIterator:
        return self

    def __next__(self) -> Any:
        if self._it is None:
            self._it = self._make()
        batch = next(self._it)
        if self._unpack is not None:
            batch = self._unpack(batch)
        return self._check(batch) if self._check is not None else batch

    def release(self) -> None:
        """Forget the DataLoader iterator (a later ``next()`` starts a new one)."""
        self._it = None


def forked_with_frozen_heap(make: Callable[[], Iterator]) -> Iterator:
    """``make()`` (which forks the loader's workers) with the garbage collector's objects frozen, then unfrozen in
    this process. A forked worker shares the parent's memory until it writes to it, and a full collection in the
    worker writes to the header of every object it tracks: without the freeze each worker slowly copies every page
    of the parent's Python heap (the dataset, the model, the modules). ``MODEL_HUB_MMDET_GC_FREEZE=0`` turns it off
    (bench/loader_memory.py measures both)."""
    release_free_heap()
    plug_heap_holes()
    if os.environ.get("MODEL_HUB_MMDET_GC_FREEZE", "1") == "0":
        return make()
    gc.freeze()
    try:
        return make()
    finally:
        gc.unfreeze()


class TrainLoader(DataLoader):
    """A torch DataLoader whose iterator starts lazily. ``resumable`` is the :class:`ResumableBatchSampler`
    underneath; ``tracker`` counts unreadable images across its workers; ``unpack`` (optional) restores a batch a
    worker packed for transport."""

    resumable: ResumableBatchSampler
    tracker: BadImageTracker
    unpack: Callable[[Any], Any] | None = None

    def __iter__(self) -> Iterator:
        tracker = getattr(self, "tracker", None)
        make = partial(forked_with_frozen_heap, super().__iter__) if self.num_workers > 0 else super().__iter__
        self._lazy = LazyIterator(make, tracker.training_batch if tracker is not None else None, self.unpack)
        return self._lazy

    def release_workers(self) -> bool:
        """Stop the persistent worker processes now; returns whether any were running. Training may go on: the
        next batch starts new workers (which copy the dataset as it is then), from the sampler's position."""
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


class IndexedDataset(Dataset):
    """Wraps a dataset so each (dict) sample also carries its dataset index under ``sample_idx``. A sample that
    raises an error a user can fix becomes a :class:`LoadFailure` for the collate to handle."""

    def __init__(self, dataset: Dataset, wrap_index: Callable[[int], Any] = int) -> None:
        self.dataset = dataset
        self.wrap_index = wrap_index

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> dict | LoadFailure:
        try:
            sample = self.dataset[idx]
        except UserError as err:
            return LoadFailure(err, int(idx))
        return dict(sample, **{INDEX_KEY: self.wrap_index(int(idx))})

    def __getattr__(self, name: str) -> Any:  # metainfo, CLASSES, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def collate_checked(batch: list, collate: Callable[[list], Any], skip_bad_images: bool = False,
                    pack: Callable[[Any], Any] | None = None) -> Any:
    """``collate`` of the loadable samples, with a :class:`LoadReport` under ``skipped_samples``.

    :class:`Substitute` samples count as substituted; a :class:`LoadFailure` of a bad image is left out when
    ``skip_bad_images`` (validation's opt-in), any other failure makes the batch carry only the report, for the main
    process to raise. ``pack`` (optional) prepares the batch for the trip from a worker to the main process.
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
    out = collate(samples)
    if isinstance(out, dict):
        out[SKIPPED_KEY] = report
    return pack(out) if pack is not None else out


def strip_bookkeeping(batch: Any) -> Any:
    """A batch without the loaders' bookkeeping (``skipped_samples``, ``skipped_indices``); a failure it still
    carries is raised."""
    if isinstance(batch, Mapping) and SKIPPED_KEY in batch:
        report = batch[SKIPPED_KEY]
        if isinstance(report, LoadReport) and report.failure is not None:
            raise report.failure
        return {k: v for k, v in batch.items() if k not in (SKIPPED_KEY, SKIPPED_INDICES_KEY)}
    return batch


class _SampleKeys:
    """What the prefetcher sees of the training set: sample key ``k`` is image ``k % len`` of ``images`` (a
    dataset whose ``data_infos`` entries have a ``filename``)."""

    def __init__(self, images: Any) -> None:
        self.dataset = images

    def __len__(self) -> int:
        return len(self.dataset)


def _with_prefetch(sampler: ResumableBatchSampler, images: Any, file_client_args: Mapping | None) -> Sampler:
    """With an object store whose ``prefetch`` is > 0 (and a cache), the images of this slot's next batches are
    fetched into the local cache ahead of the loader (:mod:`model_hub_mmdet.storage.prefetch`)."""
    from model_hub_mmdet.storage import object_backend
    from model_hub_mmdet.storage.prefetch import PrefetchBatchSampler

    backend = object_backend(dict(file_client_args)) if file_client_args else None
    if backend is None or backend.cache is None or not backend.prefetch or backend.prefetch <= 0:
        return sampler
    return PrefetchBatchSampler(sampler, _SampleKeys(images), backend, backend.prefetch, backend.prefetch_threads)


@dataclasses.dataclass(frozen=True)
class BatchFormat:
    """A generation's batches: ``collate`` (in the workers), ``pack`` for the trip to the main process and
    ``unpack`` there (the generation's ``transport.py``), ``count`` of a collated batch's samples, and
    ``wrap_index`` of a validation sample's dataset index."""

    collate: Callable[[list], Any]
    count: Callable[[Mapping], int]
    pack: Callable[[Any], Any] | None = None
    unpack: Callable[[Any], Any] | None = None
    wrap_index: Callable[[int], Any] = int


def build_train_loader(dataset: Dataset, batch_size: int, fmt: BatchFormat, *, num_workers: int, seed: int,
                       rank: int = 0, num_replicas: int = 1, shuffle: bool = True, images: Any = None,
                       file_client_args: Mapping | None = None, bad_images: Mapping | BadImagePolicy | None = None,
                       worker_niceness: int = 0) -> TrainLoader:
    """The endless, resumable, group-batched training loader of one slot: batches of ``dataset.flag``'s groups
    (:class:`~model_hub_mmdet.sampling.GroupBatchSampler`), seeded augmentation, the generation's batches
    (``fmt``), bad images as ``bad_images`` says, the workers ``worker_niceness`` below the training process.
    ``images`` (default: ``dataset``) is what the prefetcher reads image paths from."""
    policy = BadImagePolicy.from_config(bad_images)
    groups = GroupBatchSampler.for_dataset(dataset, batch_size, num_replicas=num_replicas, seed=seed, shuffle=shuffle)
    resumable = ResumableBatchSampler(groups, len(dataset), rank=rank)
    generator = torch.Generator()  # worker base seeds must not draw from the global torch RNG
    generator.manual_seed(seed)
    loader = TrainLoader(
        SeededDataset(dataset, seed),
        batch_sampler=_with_prefetch(resumable, dataset if images is None else images, file_client_args),
        num_workers=num_workers,
        collate_fn=partial(collate_checked, collate=fmt.collate, pack=fmt.pack),
        persistent_workers=num_workers > 0,
        generator=generator,
        worker_init_fn=worker_init(worker_niceness),
    )
    loader.resumable = resumable
    loader.unpack = fmt.unpack
    loader.tracker = BadImageTracker(policy, samples_per_pass=len(resumable) * batch_size, batch_size=fmt.count)
    return loader


def build_val_loader(dataset: Dataset, batch_size: int, fmt: BatchFormat, *, num_workers: int,
                     bad_images: Mapping | BadImagePolicy | None = None, worker_niceness: int = 0) -> Any:
    """Determined's DataLoader over :class:`IndexedDataset`, in order, no padding: each image once across slots.
    An unreadable image is a DataError naming the file, raised in the main process; with ``bad_images:
    {skip_at_validation: true}`` it is left out of its batch instead (the batch's ``skipped_indices`` lists it)
    and each pass logs how many were left out."""
    from determined import pytorch

    policy = BadImagePolicy.from_config(bad_images)

    class ValidationLoader(pytorch.DataLoader):
        def get_data_loader(self, *args: Any, **kwargs: Any) -> DataLoader:
            loader = super().get_data_loader(*args, **kwargs)
            loader.__class__ = _CheckedLoader  # same object, its iterator checks each batch
            loader.tracker = BadImageTracker(policy, samples_per_pass=len(dataset), batch_size=fmt.count)
            loader.unpack = fmt.unpack
            return loader

    return ValidationLoader(
        IndexedDataset(dataset, fmt.wrap_index),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        worker_init_fn=worker_init(worker_niceness),
        collate_fn=partial(collate_checked, collate=fmt.collate, skip_bad_images=policy.skip_at_validation,
                           pack=fmt.pack),
    )


class _CheckedLoader(DataLoader):
    """A torch DataLoader whose batches are unpacked and pass through ``tracker.validation_pass`` (in the main
    process)."""

    tracker: BadImageTracker
    unpack: Callable[[Any], Any] | None = None

    def __iter__(self) -> Iterator:
        unpack = self.unpack or (lambda batch: batch)
        return self.tracker.validation_pass(unpack(batch) for batch in super().__iter__())
