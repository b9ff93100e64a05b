"""The training order: a pure function of ``(seed, position)``, shared by both MMDetection generations.

:class:`GroupBatchSampler` lays out each pass over the data as batches of per-slot size, each from one
aspect-ratio group (``dataset.flag`` in mmdet 2.x, the aspect ratios of ``AspectRatioBatchSampler`` in 3.x),
padded so every slot gets the same number of batches; slot ``r`` of ``n`` takes batches ``r, r + n, ...``.
:class:`ResumableBatchSampler` walks that sequence forever from a position the trial restores from its
checkpoint, and :class:`SeededDataset` seeds the augmentation RNGs from the sample's place in the sequence, so a
resumed run sees exactly the batches (and flips, crops) the uninterrupted run would have seen. A sample whose image
cannot be read is replaced by a :class:`Substitute` of the same group (see :mod:`model_hub_mmdet.bad_images`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Sampler

from model_hub_mmdet.bad_images import BadImageError
from model_hub_mmdet.errors import DataError, UserError

MAX_SUBSTITUTES = 8  # a bad sample whose 8 substitutes are all bad too means the data is broken, not a few files


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


@dataclass
class Substitute:
    """A training sample that stands in for unreadable ones: ``skipped`` lists ``(file, reason)`` of each."""

    sample: Any
    skipped: list[tuple[str, str]]


@dataclass
class LoadFailure:
    """A sample that raised an error a user can fix; carried to the main process and raised there."""

    error: UserError
    index: int = -1


class SeededDataset(Dataset):
    """Decodes sample keys from :class:`ResumableBatchSampler` and seeds numpy/random for each sample.

    mmdet's transforms draw from the global ``numpy.random`` and ``random`` state; seeding them from
    ``(seed, key)`` makes augmentation independent of worker count, worker scheduling and resumes. The
    caller's RNG state is restored afterwards so the main process's streams are untouched.

    A sample whose image cannot be loaded (:class:`~model_hub_mmdet.mmdet2.datasets.robust.BadImageError`) is
    replaced by another sample of the same aspect-ratio group (``dataset.flag``), drawn from
    ``(seed, key, attempt)`` and augmented under a seed of the same, and returned as a :class:`Substitute`;
    after ``MAX_SUBSTITUTES`` bad substitutes, or on any other user error, a :class:`LoadFailure`.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self._groups: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def _load(self, index: int, sample_seed: int) -> Any:
        np_state, py_state = np.random.get_state(), random.getstate()
        np.random.seed(sample_seed)
        random.seed(sample_seed)
        try:
            return self.dataset[index]
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)

    def _group(self, index: int) -> np.ndarray:
        """The indices of ``index``'s aspect-ratio group (the whole dataset without ``flag``)."""
        flags = getattr(self.dataset, "flag", None)
        group = int(flags[index]) if flags is not None else 0
        if group not in self._groups:
            members = np.flatnonzero(np.asarray(flags) == group) if flags is not None else np.arange(len(self))
            self._groups[group] = members
        return self._groups[group]

    def substitute_index(self, key: int, attempt: int, tried: set[int]) -> int | None:
        """The index standing in for sample ``key`` at ``attempt`` (1, 2, ...): same group, not yet tried,
        a pure function of ``(seed, key, attempt)`` and of which files are bad."""
        members = self._group(int(key) % len(self))
        candidates = members[~np.isin(members, list(tried))]
        if not len(candidates):
            return None
        rng = np.random.RandomState((self.seed * 1_000_003 + int(key) * 7_919 + attempt) % 2**32)
        return int(candidates[rng.randint(len(candidates))])

    def __getitem__(self, key: int) -> Any:
        key = int(key)
        sample_seed = (self.seed * 2_654_435_761 + key) % 2**32
        index = key % len(self.dataset)
        skipped: list[tuple[str, str]] = []
        tried: set[int] = set()
        for attempt in range(MAX_SUBSTITUTES + 1):
            try:
                sample = self._load(index, (sample_seed + attempt * 40_503) % 2**32)
            except BadImageError as err:
                skipped.append((err.filename, err.reason))
                tried.add(index)
                found = self.substitute_index(key, attempt + 1, tried)
                if found is None:
                    break
                index = found
                continue
            except UserError as err:
                return LoadFailure(err, index)
            return Substitute(sample, skipped) if skipped else sample
        name, reason = skipped[0]
        return LoadFailure(
            DataError(
                f"{name}: {reason}; and {len(skipped) - 1} substitute image(s) of the same aspect-ratio group"
                f" could not be loaded either: the dataset's images look broken"
            ),
            key % len(self.dataset),
        )

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "_groups"):
            raise AttributeError(name)
        return getattr(self.dataset, name)
