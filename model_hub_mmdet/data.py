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
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

import numpy as np
import torch
from mmcv.parallel import DataContainer, collate
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import Dataset, Sampler


class GroupBatchSampler(Sampler):
    """Batches of ``batch_size`` indices, each from a single aspect-ratio group, reshuffled on every pass.

    ``num_replicas`` is the number of slots that will share the batches: each pass is padded (with indices of
    the same group, like mmdet) to a multiple of ``batch_size * num_replicas`` per group. Without shuffling the
    order is sequential within each group. The n-th iteration over the sampler is pass ``start_pass + n``.
    """

    def __init__(
        self,
        flags: np.ndarray | None,
        batch_size: int,
        num_replicas: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        start_pass: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.flags = np.zeros(0, np.int64) if flags is None else np.asarray(flags, np.int64)
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.seed = seed
        self.shuffle = shuffle
        self.passes = start_pass
        chunk = batch_size * num_replicas
        self.group_sizes = np.bincount(self.flags) if len(self.flags) else np.zeros(0, np.int64)
        self._num_batches = sum(math.ceil(int(s) / chunk) * num_replicas for s in self.group_sizes if s > 0)

    @classmethod
    def for_dataset(cls, dataset: Dataset, batch_size: int, **kwargs: Any) -> GroupBatchSampler:
        flags = getattr(dataset, "flag", None)
        if flags is None:
            flags = np.zeros(len(dataset), np.int64)
        return cls(np.asarray(flags), batch_size, **kwargs)

    def __len__(self) -> int:
        return self._num_batches

    def batches_for_pass(self, pass_idx: int) -> list[list[int]]:
        """The batches of one pass over the data (deterministic in ``seed`` and ``pass_idx``)."""
        rng = np.random.RandomState((self.seed * 1_000_003 + pass_idx) % 2**32)
        chunk = self.batch_size * self.num_replicas
        batches: list[list[int]] = []
        for group, size in enumerate(self.group_sizes):
            if size == 0:
                continue
            idx = np.flatnonzero(self.flags == group)
            if self.shuffle:
                idx = rng.permutation(idx)
            padded = math.ceil(size / chunk) * chunk
            idx = np.resize(idx, padded)  # pad by repeating the group's own indices
            batches += [idx[i : i + self.batch_size].tolist() for i in range(0, padded, self.batch_size)]
        if self.shuffle:
            # Shuffle whole "rounds" of num_replicas batches so that every slot's share stays group-pure.
            rounds = [batches[i : i + self.num_replicas] for i in range(0, len(batches), self.num_replicas)]
            batches = [b for r in rng.permutation(len(rounds)) for b in rounds[r]]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches_for_pass(self.passes)
        self.passes += 1
        yield from batches


class ResumableBatchSampler(Sampler):
    """This slot's share of an endless sequence of :class:`GroupBatchSampler` passes, from ``position`` on.

    Yields *sample keys* ``pass_idx * len(dataset) + index`` (decoded by :class:`SeededDataset`) so that each
    sample's augmentation can be seeded by its place in the sequence. ``len()`` is batches per slot per pass.
    """

    def __init__(self, groups: GroupBatchSampler, dataset_len: int, rank: int = 0, position: int = 0) -> None:
        self.groups = groups
        self.dataset_len = dataset_len
        self.rank = rank
        self.position = position  # batches this slot has consumed; the trial restores it on resume

    def __len__(self) -> int:
        return len(self.groups) // self.groups.num_replicas

    def __iter__(self) -> Iterator[list[int]]:
        per_pass = len(self)
        while True:
            pass_idx, offset = divmod(self.position, per_pass)
            batches = self.groups.batches_for_pass(pass_idx)[self.rank :: self.groups.num_replicas]
            for batch in batches[offset:]:
                self.position += 1
                yield [pass_idx * self.dataset_len + i for i in batch]


class SeededDataset(Dataset):
    """Decodes sample keys from :class:`ResumableBatchSampler` and seeds numpy/random for each sample.

    mmdet's transforms draw from the global ``numpy.random`` and ``random`` state; seeding them from
    ``(seed, key)`` makes augmentation independent of worker count, worker scheduling and resumes. The
    caller's RNG state is restored afterwards so the main process's streams are untouched.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int) -> Any:
        np_state, py_state = np.random.get_state(), random.getstate()
        sample_seed = (self.seed * 2_654_435_761 + int(key)) % 2**32
        np.random.seed(sample_seed)
        random.seed(sample_seed)
        try:
            return self.dataset[int(key) % len(self.dataset)]
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class _LazyIterator:
    """Creates the real DataLoader iterator at the first ``next()``, i.e. after the trial restored state."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self._it: Iterator | None = None

    def __iter__(self) -> _LazyIterator:
        return self

    def __next__(self) -> Any:
        if self._it is None:
            self._it = self._make()
        return next(self._it)


class TrainLoader(TorchDataLoader):
    """A torch DataLoader whose iterator starts lazily (Determined calls ``iter()`` before loading a
    checkpoint; the sampler's position must be restored before any index is drawn). ``resumable`` is the
    :class:`ResumableBatchSampler` underneath (possibly wrapped by a storage prefetcher)."""

    resumable: ResumableBatchSampler

    def __iter__(self) -> Iterator:
        return _LazyIterator(super().__iter__)


def build_train_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    seed: int,
    rank: int = 0,
    num_replicas: int = 1,
    shuffle: bool = True,
    file_client_args: Mapping | None = None,
) -> TrainLoader:
    """The endless, resumable, group-batched training loader of one slot. With an object-store
    ``file_client_args`` whose ``prefetch`` is > 0, the images of the next batches are fetched into the local
    cache ahead of the loader (this slot's batches only)."""
    groups = GroupBatchSampler.for_dataset(dataset, batch_size, num_replicas=num_replicas, seed=seed, shuffle=shuffle)
    resumable = ResumableBatchSampler(groups, len(dataset), rank=rank)
    sampler = _with_prefetch(resumable, dataset, file_client_args)
    generator = torch.Generator()  # worker base seeds must not draw from the global torch RNG
    generator.manual_seed(seed)
    loader = TrainLoader(
        SeededDataset(dataset, seed),
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn(batch_size),
        persistent_workers=num_workers > 0,
        generator=generator,
    )
    loader.resumable = resumable
    return loader


class _SampleKeys:
    """What the prefetcher sees of the training set: a wrapper whose index ``key`` is sample ``key % len``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)


def _with_prefetch(sampler: ResumableBatchSampler, dataset: Dataset, file_client_args: Mapping | None) -> Sampler:
    from model_hub_mmdet.backends import object_backend
    from model_hub_mmdet.backends.prefetch import PrefetchBatchSampler

    backend = object_backend(dict(file_client_args)) if file_client_args else None
    if backend is None or backend.cache is None or not backend.prefetch or backend.prefetch <= 0:
        return sampler
    return PrefetchBatchSampler(sampler, _SampleKeys(dataset), backend, backend.prefetch, backend.prefetch_threads)


def build_val_loader(dataset: Dataset, batch_size: int, num_workers: int) -> Any:
    """Determined's DataLoader over :class:`IndexedDataset`, in order, no padding: each image once."""
    from determined import pytorch

    return pytorch.DataLoader(
        IndexedDataset(dataset),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_fn(batch_size),
    )


class IndexedDataset(Dataset):
    """Wraps a dataset so each sample also carries its dataset index (to re-order predictions across slots)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> dict:
        sample = self.dataset[idx]
        return dict(sample, sample_idx=DataContainer(int(idx), cpu_only=True))

    def __getattr__(self, name: str) -> Any:  # CLASSES, evaluate, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def mmcv_collate(batch: list, samples_per_gpu: int) -> Any:
    """mmcv's collate with the whole batch on one device (one DataContainer chunk)."""
    return collate(batch, samples_per_gpu=samples_per_gpu)


def collate_fn(samples_per_gpu: int):
    return partial(mmcv_collate, samples_per_gpu=samples_per_gpu)


def unwrap_batch(batch: Any, device: torch.device) -> Any:
    """Turn mmcv's collated DataContainers into what a detector's forward takes, on ``device``.

    Each DataContainer holds one chunk (the whole per-slot batch): stacked tensors and lists of tensors move
    to ``device``; ``cpu_only`` data (image metas, bitmap masks) stays where it is.
    """
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
