"""Training and validation loaders around a generation's collate, shared by the adapters (no mmcv/mmengine).

* :class:`TrainLoader` is a torch ``DataLoader`` over the core's :class:`~model_hub_mmdet.sampling.SeededDataset`
  and :class:`~model_hub_mmdet.sampling.ResumableBatchSampler` whose iterator starts lazily (Determined calls
  ``iter()`` before it loads a checkpoint; the sampler's position must be restored before any index is drawn) and
  whose batches pass :class:`~model_hub_mmdet.bad_images.BadImageTracker` in the main process.
* :class:`IndexedDataset` gives each validation sample its dataset index, to put predictions of all slots back in
  order; a sample that raises an error a user can fix becomes a :class:`~model_hub_mmdet.sampling.LoadFailure`.
* :func:`collate_checked` collates the loadable samples of a batch with the generation's collate and carries a
  :class:`~model_hub_mmdet.bad_images.LoadReport` under ``skipped_samples``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from torch.utils.data import DataLoader, Dataset

from model_hub_mmdet.bad_images import SKIPPED_INDICES_KEY, SKIPPED_KEY, BadImageError, BadImageTracker, LoadReport
from model_hub_mmdet.errors import UserError
from model_hub_mmdet.sampling import LoadFailure, ResumableBatchSampler, Substitute

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


class TrainLoader(DataLoader):
    """A torch DataLoader whose iterator starts lazily. ``resumable`` is the :class:`ResumableBatchSampler`
    underneath; ``tracker`` counts unreadable images across its workers; ``unpack`` (optional) restores a batch a
    worker packed for transport."""

    resumable: ResumableBatchSampler
    tracker: BadImageTracker
    unpack: Callable[[Any], Any] | None = None

    def __iter__(self) -> Iterator:
        tracker = getattr(self, "tracker", None)
        self._lazy = LazyIterator(super().__iter__, tracker.training_batch if tracker is not None else None,
                                  self.unpack)
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
