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

Unreadable images (``data.bad_images``, :class:`~model_hub_mmdet.datasets.robust.BadImagePolicy`): importing
this module makes mmdet's ``LoadImageFromFile`` raise a ``BadImageError`` naming the file, and
``CocoDataset.load_annotations`` an ``AnnotationError`` naming the file and its problems. In training,
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
import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from mmcv.parallel import DataContainer, collate
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import Dataset, Sampler

from model_hub_mmdet.datasets import annotations, robust
from model_hub_mmdet.datasets.robust import BadImageError, BadImagePolicy
from model_hub_mmdet.errors import DataError, UserError
from model_hub_mmdet.transport import pack_batch, unpack_batch
from model_hub_mmdet.workers import worker_init

logger = logging.getLogger("model_hub_mmdet")

SKIPPED_KEY = "skipped_samples"  # the per-batch LoadReport, then (in the main process) the skipped count
SKIPPED_INDICES_KEY = "skipped_indices"  # validation with skip_at_validation: dataset indices left out
MAX_SUBSTITUTES = 8  # a bad sample whose 8 substitutes are all bad too means the data is broken, not a few files


def install_checks() -> None:
    """Make mmdet's image loading and COCO annotation loading raise one-line errors naming the file."""
    robust.install()
    annotations.install()


# Datasets are built (by the trial, before any loader) with the classes these checks patch.
install_checks()


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

    A sample whose image cannot be loaded (:class:`~model_hub_mmdet.datasets.robust.BadImageError`) is
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
    ``data.bad_images`` (see :class:`~model_hub_mmdet.datasets.robust.BadImagePolicy`); the workers run at
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
    loader.tracker = BadImageTracker(policy, samples_per_pass=len(resumable) * batch_size)
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
            loader.tracker = BadImageTracker(policy, samples_per_pass=len(dataset))
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


@dataclass
class LoadReport:
    """What happened while one batch was loaded (in a worker): ``skipped`` ``(file, reason)`` of each bad image
    left out or substituted, ``substituted`` samples that stand in for bad ones, ``failure`` an error to raise,
    ``indices`` dataset indices left out of a validation batch."""

    skipped: list[tuple[str, str]] = field(default_factory=list)
    substituted: int = 0
    failure: UserError | None = None
    indices: list[int] = field(default_factory=list)


def collate_checked(batch: list, samples_per_gpu: int, skip_bad_images: bool = False, pack: bool = False) -> Any:
    """mmcv's collate of the loadable samples, with a :class:`LoadReport` under ``skipped_samples``.

    :class:`Substitute` samples count as substituted; a :class:`LoadFailure` of a bad image is left out when
    ``skip_bad_images`` (validation's opt-in), any other failure makes the batch carry only the report, for
    the main process to raise. With ``pack`` a worker packs the batch for the trip to the main process
    (:func:`model_hub_mmdet.transport.pack_batch`); only for loaders that unpack it again, as this module's do.
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


class BadImageTracker:
    """Main-process bookkeeping of unreadable images over all of one loader's workers.

    Training: every file is warned about once; the run stops with a :class:`DataError` when the samples that
    needed a substitute exceed ``max_fraction`` of the samples read so far, counted over at least one pass's
    worth (``samples_per_pass``) so that one bad image early in the first pass does not stop a run whose data
    is 99.9% fine (``max_fraction: 0`` stops at the first). Validation: a bad image is an error unless
    ``skip_at_validation``; then each pass logs the count.
    """

    def __init__(self, policy: BadImagePolicy, samples_per_pass: int) -> None:
        self.policy = policy
        self.samples_per_pass = max(1, int(samples_per_pass))
        self.samples = 0
        self.substituted = 0
        self.warned: set[str] = set()
        self.latest: tuple[str, str] = ("", "")  # the last bad file and why, for the stop message

    def _warn(self, skipped: list[tuple[str, str]], what: str) -> None:
        for name, reason in skipped:
            if name not in self.warned:
                self.warned.add(name)
                logger.warning("%s: skipped an unreadable image: %s: %s", what, name, reason)

    @staticmethod
    def _report(batch: Any) -> LoadReport | None:
        report = batch.get(SKIPPED_KEY) if isinstance(batch, Mapping) else None
        return report if isinstance(report, LoadReport) else None

    def training_batch(self, batch: Any) -> Any:
        """Raise a carried failure, warn about new bad files, count, stop past ``max_fraction``; the batch
        then carries the number of substituted samples under ``skipped_samples``."""
        report = self._report(batch)
        if report is None:
            return batch
        if report.failure is not None:
            raise report.failure
        self._warn(report.skipped, "training")
        if report.skipped:
            self.latest = report.skipped[-1]
        self.samples += _batch_size(batch)
        self.substituted += report.substituted
        allowed = self.policy.max_fraction * max(self.samples, self.samples_per_pass)
        if self.substituted > allowed:
            name, reason = self.latest
            raise DataError(
                f"{self.substituted} of the {self.samples} training samples read so far had unreadable images, more"
                f" than {robust.SETTING}.max_fraction={self.policy.max_fraction:g} allows (latest: {name}: {reason});"
                " fix or remove those images, or raise the setting"
            )
        batch[SKIPPED_KEY] = report.substituted
        return batch

    def validation_pass(self, batches: Iterator) -> Iterator:
        """Check each batch of one validation pass (raise a carried failure); log what was left out."""
        left_out: list[str] = []
        for batch in batches:
            report = self._report(batch)
            if report is not None:
                if report.failure is not None:
                    raise report.failure
                self._warn(report.skipped, "validation")
                left_out += [name for name, _ in report.skipped]
                batch[SKIPPED_KEY] = len(report.indices)
                batch[SKIPPED_INDICES_KEY] = list(report.indices)
                if set(batch) <= {SKIPPED_KEY, SKIPPED_INDICES_KEY}:  # every image was left out: nothing to predict
                    continue
            yield batch
        if left_out:
            logger.warning(
                "validation left out %d unreadable image(s) (%s.skip_at_validation: true): %s",
                len(left_out), robust.SETTING, ", ".join(left_out[:10]) + (", ..." if len(left_out) > 10 else ""),
            )


def _batch_size(batch: Mapping) -> int:
    """Samples in a collated mmdet batch (its ``img_metas``), else 1."""
    metas = batch.get("img_metas")
    if isinstance(metas, DataContainer):
        return sum(len(chunk) for chunk in metas.data)
    return 1


def skipped_samples(batch: Any) -> int:
    """How many samples of this batch stand in for (training) or left out (validation) unreadable images.
    The trial reports it as the ``skipped_samples`` training metric."""
    value = batch.get(SKIPPED_KEY, 0) if isinstance(batch, Mapping) else 0
    if isinstance(value, LoadReport):
        return value.substituted + len(value.indices)
    return int(value)


def skipped_indices(batch: Any) -> list[int]:
    """Dataset indices a validation batch left out (``skip_at_validation``); [] otherwise."""
    return list(batch.get(SKIPPED_INDICES_KEY, ())) if isinstance(batch, Mapping) else []


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
