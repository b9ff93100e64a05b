"""Datasets, samplers and loaders of MMDetection 3.x for training and validation.

Training order is a pure function of ``(seed, position)`` (:mod:`model_hub_mmdet.sampling`): each pass over the data
is laid out as batches of per-slot size, each from one aspect-ratio group when the config's
``train_dataloader.batch_sampler`` is mmdet's ``AspectRatioBatchSampler`` (width < height, or not, as it groups),
padded so every slot gets the same number of batches; slot ``r`` of ``n`` takes batches ``r, r + n, ...``.
``train_dataloader.sampler.shuffle`` is honoured. The sampler walks that sequence forever from the position the
trial restores, and each sample's augmentation is seeded from its place in the sequence, so a resumed run sees
exactly the batches the uninterrupted run would have seen. Batches are collated with the config's ``collate_fn``
(mmengine's ``pseudo_collate`` by default), as mmengine's runner does, travel from the loader workers as
:mod:`.transport` packs them, and the model's ``data_preprocessor`` stacks, normalises and moves them in the main
process.

Validation uses Determined's DataLoader, which gives slot ``r`` every ``n``-th batch: each image once. Bad images
follow ``data.bad_images`` as in 2.x (:mod:`model_hub_mmdet.bad_images`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

import torch
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import Dataset

from model_hub_mmdet.bad_images import (
    SKIPPED_INDICES_KEY,
    SKIPPED_KEY,
    BadImagePolicy,
    BadImageTracker,
    skipped_indices,
    skipped_samples,
)
from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.loaders import INDEX_KEY, IndexedDataset, TrainLoader, collate_checked, strip_bookkeeping
from model_hub_mmdet.mmdet3.datasets import aspect_ratio_flags
from model_hub_mmdet.mmdet3.transport import pack_batch, unpack_batch
from model_hub_mmdet.sampling import GroupBatchSampler, ResumableBatchSampler, SeededDataset
from model_hub_mmdet.workers import worker_init

__all__ = ["INDEX_KEY", "SKIPPED_INDICES_KEY", "SKIPPED_KEY", "build_collate", "build_train_loader",
           "build_val_loader", "groups_by_aspect_ratio", "skipped_indices", "skipped_samples", "strip_bookkeeping"]


def build_collate(loader_cfg: Mapping[str, Any] | None) -> Callable[[list], Any]:
    """The config's ``collate_fn`` (a ``FUNCTIONS`` registry entry, default ``pseudo_collate``)."""
    from mmengine.registry import FUNCTIONS

    spec = dict((loader_cfg or {}).get("collate_fn") or {"type": "pseudo_collate"})
    kind = spec.pop("type", "pseudo_collate")
    func = FUNCTIONS.get(kind) if isinstance(kind, str) else kind
    if func is None:
        raise ConfigError(f"train_dataloader.collate_fn.type={kind!r} is not a registered function")
    return partial(func, **spec) if spec else func


def groups_by_aspect_ratio(loader_cfg: Mapping[str, Any] | None) -> bool:
    """Whether the config batches images by aspect ratio (``batch_sampler=dict(type='AspectRatioBatchSampler')``)."""
    batch_sampler = (loader_cfg or {}).get("batch_sampler")
    return isinstance(batch_sampler, Mapping) and "AspectRatio" in str(batch_sampler.get("type", ""))


def _batch_size(batch: Mapping) -> int:
    inputs = batch.get("inputs")
    return len(inputs) if isinstance(inputs, (list, tuple)) else 1


class _ImagePaths:
    """The image path of each dataset index, in the shape the core's prefetcher reads (``data_infos`` entries with
    a ``filename``; mmengine's ``get_data_info(i)['img_path']`` already holds ``data_root`` and the prefix)."""

    img_prefix = None

    def __init__(self, dataset: Any) -> None:
        self._dataset = dataset
        self._infos: list[dict] | None = None

    def __len__(self) -> int:
        return len(self._dataset)

    @property
    def data_infos(self) -> list[dict]:
        """``{"filename": img_path}`` per index, read once."""
        if self._infos is None:
            self._infos = [{"filename": self._dataset.get_data_info(i).get("img_path")} for i in range(len(self))]
        return self._infos


class _SampleKeys:
    """What the prefetcher sees of the training set: sample key ``k`` is index ``k % len``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = _ImagePaths(dataset)

    def __len__(self) -> int:
        return len(self.dataset)


def _with_prefetch(sampler: ResumableBatchSampler, dataset: Any, file_client_args: Mapping | None) -> Any:
    """With an object store whose ``prefetch`` is > 0 (and a cache), the images of the next batches of this slot are
    fetched into the local cache ahead of the loader (:mod:`model_hub_mmdet.storage.prefetch`)."""
    from model_hub_mmdet.storage import object_backend
    from model_hub_mmdet.storage.prefetch import PrefetchBatchSampler

    backend = object_backend(dict(file_client_args)) if file_client_args else None
    if backend is None or backend.cache is None or not backend.prefetch or backend.prefetch <= 0:
        return sampler
    return PrefetchBatchSampler(sampler, _SampleKeys(dataset), backend, backend.prefetch, backend.prefetch_threads)


def build_train_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    seed: int,
    rank: int = 0,
    num_replicas: int = 1,
    shuffle: bool = True,
    group_by_aspect_ratio: bool = True,
    collate: Callable[[list], Any] | None = None,
    file_client_args: Mapping | None = None,
    bad_images: Mapping | BadImagePolicy | None = None,
    worker_niceness: int = 0,
) -> TrainLoader:
    """The endless, resumable, group-batched training loader of one slot (see the module docstring); with an
    object-store ``file_client_args`` whose ``prefetch`` is > 0, its images are fetched ahead."""
    from mmengine.dataset import pseudo_collate

    policy = BadImagePolicy.from_config(bad_images)
    if group_by_aspect_ratio and getattr(dataset, "flag", None) is None:
        dataset.flag = aspect_ratio_flags(dataset)  # read by the sampler and by bad-image substitution
    groups = GroupBatchSampler.for_dataset(dataset, batch_size, num_replicas=num_replicas, seed=seed, shuffle=shuffle)
    resumable = ResumableBatchSampler(groups, len(dataset), rank=rank)
    generator = torch.Generator()  # worker base seeds must not draw from the global torch RNG
    generator.manual_seed(seed)
    loader = TrainLoader(
        SeededDataset(dataset, seed),
        batch_sampler=_with_prefetch(resumable, dataset, file_client_args),
        num_workers=num_workers,
        collate_fn=partial(collate_checked, collate=collate or pseudo_collate, pack=pack_batch),
        persistent_workers=num_workers > 0,
        generator=generator,
        worker_init_fn=worker_init(worker_niceness),
    )
    loader.resumable = resumable
    loader.unpack = unpack_batch  # the main process restores what a worker packed (transport.py)
    loader.tracker = BadImageTracker(policy, samples_per_pass=len(resumable) * batch_size, batch_size=_batch_size)
    return loader


def build_val_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    collate: Callable[[list], Any] | None = None,
    bad_images: Mapping | BadImagePolicy | None = None,
    worker_niceness: int = 0,
) -> Any:
    """Determined's DataLoader over :class:`IndexedDataset`, in order, no padding: each image once. An unreadable
    image is a DataError naming the file, raised in the main process; with ``bad_images: {skip_at_validation:
    true}`` it is left out of its batch instead and each pass logs how many were left out."""
    from determined import pytorch
    from mmengine.dataset import pseudo_collate

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
        collate_fn=partial(collate_checked, collate=collate or pseudo_collate,
                           skip_bad_images=policy.skip_at_validation, pack=pack_batch),
    )


class _CheckedLoader(TorchDataLoader):
    """A torch DataLoader whose batches pass through ``tracker.validation_pass`` (in the main process)."""

    tracker: BadImageTracker

    def __iter__(self) -> Iterator:
        return self.tracker.validation_pass(unpack_batch(batch) for batch in super().__iter__())
