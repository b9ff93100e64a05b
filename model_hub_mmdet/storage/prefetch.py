"""Warm the object cache ahead of the data loader, so that workers read images from local disk.

The batch sampler runs in the main process and knows the order of the epoch. :class:`PrefetchBatchSampler` wraps
it: before a batch is handed to the loader, the images of the next ``depth`` samples are already being fetched
into the cache by a small thread pool (connection-pooled, one SDK client). Workers then hit the cache; a worker
that asks for an image the prefetcher has queued or is fetching waits for it (each queued image is claimed in
the cache, see :mod:`model_hub_mmdet.storage.cache`) rather than requesting it a second time. A prefetch
failure is only logged: the worker's own read raises the real error. From the second epoch on, the prefetcher
remembers what is cached and costs a set lookup per image.

Wrap the *outermost* batch sampler (after Determined's sharding), so each rank warms only its own samples::

    class Loader(det.pytorch.DataLoader):
        def get_data_loader(self, *args, **kwargs):
            return with_prefetch(super().get_data_loader(*args, **kwargs), file_client_args)

Enabled by ``data.file_client_args.prefetch: N`` (samples ahead; about 2-4 batches per rank is plenty) with the
cache on; ``prefetch_threads`` sets the concurrency.
"""

from __future__ import annotations

import bisect
import logging
import os.path as osp
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from torch.utils.data import DataLoader, Sampler

from model_hub_mmdet.storage import ObjectStoreBackend, object_backend
from model_hub_mmdet.storage.base import PendingFetch

logger = logging.getLogger(__name__)


def sample_paths(dataset: Any, index: int) -> list[str]:
    """The files sample ``index`` of an mmdet dataset reads through its FileClient: the image, and the
    segmentation map when the dataset has a ``seg_prefix``. Follows mmdet's dataset wrappers."""
    dataset, index = _unwrap(dataset, index)
    infos = getattr(dataset, "data_infos", None)
    if infos is None or not 0 <= index < len(infos):
        return []
    info = infos[index]
    paths = []
    filename = info.get("filename") or info.get("file_name")
    if filename:
        prefix = getattr(dataset, "img_prefix", None)
        paths.append(osp.join(prefix, filename) if prefix else filename)
    seg_prefix = getattr(dataset, "seg_prefix", None)
    if seg_prefix and hasattr(dataset, "get_ann_info"):
        seg_map = (dataset.get_ann_info(index) or {}).get("seg_map")
        if seg_map:
            paths.append(osp.join(seg_prefix, seg_map))
    return paths


def _unwrap(dataset: Any, index: int) -> tuple[Any, int]:
    """Map an index of RepeatDataset / ClassBalancedDataset / ConcatDataset / MultiImageMixDataset to the
    index of the dataset that owns the files."""
    for _ in range(16):  # wrappers nest a few levels at most
        if hasattr(dataset, "cumulative_sizes") and hasattr(dataset, "datasets"):
            which = bisect.bisect_right(dataset.cumulative_sizes, index)
            index -= dataset.cumulative_sizes[which - 1] if which else 0
            dataset = dataset.datasets[which]
        elif hasattr(dataset, "repeat_indices") and hasattr(dataset, "dataset"):
            index, dataset = dataset.repeat_indices[index], dataset.dataset
        elif hasattr(dataset, "dataset") and not hasattr(dataset, "data_infos"):
            inner = dataset.dataset
            index, dataset = index % max(1, len(inner)), inner
        else:
            break
    return dataset, index


class Prefetcher:
    """Fetches objects into ``backend``'s cache on a thread pool; failures are logged, never raised.

    Each object is claimed in the cache when it is queued, not when a thread gets to it: a worker that needs an
    image still in the queue waits for it rather than fetching it too (the queue is in the loader's order, so the
    image it needs is at the front). Fetches still queued at :meth:`close` give their claims back.
    """

    def __init__(self, backend: ObjectStoreBackend, threads: int = 8) -> None:
        self.backend = backend
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="model-hub-mmdet-prefetch")
        self._closed = False
        self._failures = 0

    def submit(self, paths: Iterable[str]) -> None:
        """Queue the ``paths`` that are neither cached nor being fetched (once known, a cached path costs a set
        lookup: from the second epoch on, this is all the prefetcher does)."""
        for path in paths:
            try:
                fetch = self.backend.reserve(path)
            except Exception:  # noqa: BLE001 - e.g. an unresolvable path: the loader reports it
                continue
            if fetch is not None:
                self._pool.submit(self._run, fetch)

    def _run(self, fetch: PendingFetch) -> None:
        if self._closed:
            fetch.release()  # queued before close: give the claim back without fetching
            return
        try:
            fetch()
        except Exception as err:  # noqa: BLE001 - the loader's own read reports it properly
            self._failures += 1
            if self._failures <= 3:
                logger.warning("prefetch of %s failed (the data loader will retry it): %s", fetch.path, err)

    def close(self) -> None:
        """Stop: queued fetches are dropped (the pool only gives their claims back), running ones finish in the
        background."""
        self._closed = True
        self._pool.shutdown(wait=False)


class PrefetchBatchSampler(Sampler):
    """Yields the batches of ``batch_sampler`` unchanged while warming the cache ``depth`` samples ahead."""

    def __init__(self, batch_sampler: Iterable[list[int]], dataset: Any, backend: ObjectStoreBackend, depth: int,
                 threads: int = 8) -> None:
        self.batch_sampler = batch_sampler
        self.dataset = dataset
        self.backend = backend
        self.depth = max(1, int(depth))
        self.threads = threads

    def __len__(self) -> int:
        return len(self.batch_sampler)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        # batch_size, drop_last, sampler, set_epoch, ...: whatever the wrapped sampler offers.
        if name == "batch_sampler":
            raise AttributeError(name)
        return getattr(self.batch_sampler, name)

    def __iter__(self) -> Iterator[list[int]]:
        prefetcher = Prefetcher(self.backend, self.threads)
        ahead: deque[list[int]] = deque()
        queued = 0
        try:
            for batch in self.batch_sampler:
                prefetcher.submit(p for i in batch for p in sample_paths(self.dataset, int(i)))
                ahead.append(batch)
                queued += len(batch)
                while ahead and queued - len(ahead[0]) >= self.depth:
                    queued -= len(ahead[0])
                    yield ahead.popleft()
            while ahead:
                yield ahead.popleft()
        finally:
            prefetcher.close()


def with_prefetch(loader: DataLoader, file_client_args: Mapping | None, depth: int | None = None) -> DataLoader:
    """``loader`` rebuilt with a :class:`PrefetchBatchSampler`, when ``file_client_args`` selects an object
    store with the cache on and ``prefetch`` (or ``depth``) > 0; otherwise ``loader`` itself."""
    backend = object_backend(dict(file_client_args) if file_client_args else None)
    depth = backend.prefetch if backend is not None and depth is None else depth
    if backend is None or backend.cache is None or not depth or depth <= 0 or loader.batch_sampler is None:
        return loader
    sampler = PrefetchBatchSampler(loader.batch_sampler, loader.dataset, backend, depth, backend.prefetch_threads)
    return DataLoader(
        loader.dataset,
        batch_sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
        prefetch_factor=loader.prefetch_factor,
        persistent_workers=loader.persistent_workers,
    )
