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

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from torch.utils.data import Dataset

from model_hub_mmdet import loaders
from model_hub_mmdet.bad_images import (
    SKIPPED_INDICES_KEY,
    SKIPPED_KEY,
    BadImagePolicy,
    skipped_indices,
    skipped_samples,
)
from model_hub_mmdet.errors import ConfigError
from model_hub_mmdet.loaders import INDEX_KEY, TrainLoader, strip_bookkeeping
from model_hub_mmdet.mmdet3.datasets import aspect_ratio_flags
from model_hub_mmdet.mmdet3.transport import pack_batch, unpack_batch

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


def build_train_loader(dataset: Dataset, batch_size: int, num_workers: int, seed: int, rank: int = 0,
                       num_replicas: int = 1, shuffle: bool = True, group_by_aspect_ratio: bool = True,
                       collate: Callable[[list], Any] | None = None, file_client_args: Mapping | None = None,
                       bad_images: Mapping | BadImagePolicy | None = None, worker_niceness: int = 0) -> TrainLoader:
    """The endless, resumable, group-batched training loader of one slot (see the module docstring;
    :func:`model_hub_mmdet.loaders.build_train_loader`); with an object-store ``file_client_args`` whose
    ``prefetch`` is > 0, its images are fetched ahead."""
    from mmengine.dataset import pseudo_collate

    if group_by_aspect_ratio and getattr(dataset, "flag", None) is None:
        dataset.flag = aspect_ratio_flags(dataset)  # read by the sampler and by bad-image substitution
    fmt = loaders.BatchFormat(collate=collate or pseudo_collate, count=_batch_size, pack=pack_batch,
                              unpack=unpack_batch)
    return loaders.build_train_loader(dataset, batch_size, fmt, num_workers=num_workers, seed=seed, rank=rank,
                                      num_replicas=num_replicas, shuffle=shuffle, images=_ImagePaths(dataset),
                                      file_client_args=file_client_args, bad_images=bad_images,
                                      worker_niceness=worker_niceness)


def build_val_loader(dataset: Dataset, batch_size: int, num_workers: int, collate: Callable[[list], Any] | None = None,
                     bad_images: Mapping | BadImagePolicy | None = None, worker_niceness: int = 0) -> Any:
    """Determined's DataLoader over :class:`~model_hub_mmdet.loaders.IndexedDataset`, in order, no padding: each
    image once (:func:`model_hub_mmdet.loaders.build_val_loader`). An unreadable image is a DataError naming the
    file, raised in the main process; with ``bad_images: {skip_at_validation: true}`` it is left out of its batch
    instead and each pass logs how many were left out."""
    from mmengine.dataset import pseudo_collate

    fmt = loaders.BatchFormat(collate=collate or pseudo_collate, count=_batch_size, pack=pack_batch,
                              unpack=unpack_batch)
    return loaders.build_val_loader(dataset, batch_size, fmt, num_workers=num_workers, bad_images=bad_images,
                                    worker_niceness=worker_niceness)
