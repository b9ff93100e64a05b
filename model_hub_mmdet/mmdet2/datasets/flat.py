"""One copy of a 2.x dataset's annotations for all its loader workers (and all the ranks of a node).

MMDetection 2.x keeps a dataset's annotations as Python objects: ``data_infos`` (a list of dicts) and, for COCO,
pycocotools' index (``dataset.coco``: a dict per annotation, lists per image). Forked loader workers share those
pages only until they read them: a read writes reference counts, so every worker drifts towards a private copy of
everything it has touched (about 0.9 GB per worker on COCO 2017, see bench/loader_memory.py). mmengine's datasets
(3.x) avoid it by serializing their records into one numpy buffer.

:func:`share_annotations` does the same to a built 2.x dataset, in the main process before the workers fork:

* ``data_infos`` becomes a :class:`~model_hub_mmdet.node_cache.FlatList`: a read-only sequence of the same dicts,
  decoded on access;
* a COCO dataset's ``coco`` becomes a :class:`FlatCOCO`: each image's annotations encoded together, with numpy
  arrays of annotation and image ids. ``get_ann_ids(img_ids=...)`` and ``load_anns`` (what ``get_ann_info``,
  ``get_cat_ids`` and subclasses call per sample) answer from the flat buffers with the same values in the same
  order; anything else of pycocotools' API reaches the full index: a test-mode (validation) dataset keeps it, for
  ``evaluate``; a training dataset drops it and rebuilds it from the file if something asks (a warning says what);
* ``proposals``, and a ``ClassBalancedDataset``'s repeat indices, become flat too.

The buffers are memory-mapped from one node-local file (:mod:`model_hub_mmdet.node_cache`), so the ranks of a
node share them as well; ``MODEL_HUB_MMDET_NODE_CACHE=off`` keeps them in each process instead. Wrappers
(``ConcatDataset``, ``RepeatDataset``, ``ClassBalancedDataset``, ``MultiImageMixDataset``) are walked into.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import marshal
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from model_hub_mmdet.node_cache import FlatList, cache_key, shared_arrays, wrapped_datasets

logger = logging.getLogger("model_hub_mmdet")

__all__ = ["FlatCOCO", "share_annotations"]

SHARED = "_model_hub_mmdet_shared"  # set on a dataset once its annotations are flat


def share_annotations(dataset: Any) -> Any:
    """Keep ``dataset``'s per-sample annotations in flat, shared buffers (see the module docstring); returns
    ``dataset``, changed in place. Call it in the main process after the dataset is built and before its loader
    starts workers. Samples, labels, boxes and order stay the same; calling it again does nothing."""
    for leaf in _leaves(dataset):
        _share(leaf)
    return dataset


def _leaves(dataset: Any) -> Iterator[Any]:
    """The datasets holding annotations under mmdet's dataset wrappers (a wrapper's own list made flat too)."""
    return wrapped_datasets(dataset, "data_infos", _flatten_repeat_indices)


def _flatten_repeat_indices(wrapper: Any) -> None:
    if isinstance(getattr(wrapper, "repeat_indices", None), list):  # ClassBalancedDataset
        wrapper.repeat_indices = np.asarray(wrapper.repeat_indices, np.int64)


def _source_mtime(cls: type) -> int | None:
    with contextlib.suppress(TypeError, OSError):
        return os.stat(inspect.getsourcefile(cls) or "").st_mtime_ns
    return None


def _digest(infos: Any) -> str:
    """Which records, in which order (a filtered subset of a file has another digest)."""
    try:  # the common case, integer ids: cheap
        ids = np.array([info["id"] for info in infos], np.int64)
        return hashlib.sha256(ids.tobytes()).hexdigest() + f"-{len(ids)}"
    except (KeyError, TypeError, ValueError, OverflowError):
        pass
    keys = [(info.get("id"), info.get("filename")) if isinstance(info, Mapping) else None for info in infos]
    try:
        return hashlib.sha256(marshal.dumps(keys)).hexdigest()
    except ValueError:
        return hashlib.sha256(repr(keys).encode()).hexdigest()


def _flattenable_coco(coco: Any) -> bool:
    """pycocotools' instance index with integer image ids (COCOPanoptic's index differs; annotation ids are checked
    while building)."""
    try:
        from pycocotools.coco import COCO
    except ImportError:
        return False
    if not isinstance(coco, COCO) or type(coco).__name__ == "COCOPanoptic" or not hasattr(coco, "imgToAnns"):
        return False
    return np.asarray(list(coco.imgToAnns)).dtype.kind in "iu"


class _NotFlat(Exception):
    """The index has annotation ids that are not integers: it stays as it is."""


def _coco_arrays(coco: Any) -> dict[str, np.ndarray]:
    """Each image's annotation list (in the file's order), encoded per image in the order of the sorted image ids;
    the annotation ids in that order and where each image's start."""
    index = coco.imgToAnns
    keys = sorted(index)
    groups = [index[k] for k in keys]
    blobs = FlatList.from_items(groups)
    starts = np.zeros(len(groups) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, groups), np.int64, count=len(groups)), out=starts[1:])
    ann_ids = np.asarray([ann["id"] for group in groups for ann in group])
    if ann_ids.dtype.kind not in "iu":
        raise _NotFlat
    ann_ids = ann_ids.astype(np.int64).reshape(-1)
    order = np.argsort(ann_ids, kind="stable")
    return {"coco.img_keys": np.asarray(keys, np.int64), "coco.ann_starts": starts, "coco.ann_ids": ann_ids,
            "coco.ann_order": order, "coco.ann_sorted": ann_ids[order], **blobs.arrays("coco.anns")}


def _share(dataset: Any) -> None:
    if getattr(dataset, SHARED, False) or isinstance(dataset.data_infos, FlatList):
        return
    infos = dataset.data_infos
    coco = getattr(dataset, "coco", None)
    flat_coco = _flattenable_coco(coco)
    proposals = getattr(dataset, "proposals", None)
    cls = type(dataset)
    key = cache_key(getattr(dataset, "ann_file", None), dataset=f"{cls.__module__}.{cls.__qualname__}",
                    source=_source_mtime(cls), records=len(infos), order=_digest(infos), coco=flat_coco,
                    proposals=None if proposals is None else [getattr(dataset, "proposal_file", None), len(proposals)])

    def build() -> dict[str, np.ndarray]:
        arrays = FlatList.from_items(infos).arrays("infos")
        if flat_coco:
            arrays.update(_coco_arrays(coco))
        if proposals is not None:
            arrays.update(FlatList.from_items(proposals).arrays("proposals"))
        return arrays

    try:
        arrays, how = shared_arrays(key, build)
    except _NotFlat:
        flat_coco = False
        arrays, how = shared_arrays(key + "-no-coco", build)
    dataset.data_infos = FlatList.from_arrays(arrays, "infos")
    if proposals is not None:
        dataset.proposals = FlatList.from_arrays(arrays, "proposals")
    if flat_coco:
        # a validation dataset keeps pycocotools' index for evaluate; a training one lets it go (rebuilt on demand)
        # (mmdet's load_annotations adds ``filename`` to pycocotools' image records: a rebuilt index gets it too)
        filename = "filename" in next(iter(coco.imgs.values()), {})
        dataset.coco = FlatCOCO(arrays, full=coco if dataset.test_mode else None,
                                rebuild=(type(coco), getattr(dataset, "ann_file", None),
                                         getattr(dataset, "file_client", None), filename))
    setattr(dataset, SHARED, True)
    logger.debug("%s: %d records in flat buffers (%s, %.0f MiB)", getattr(dataset, "ann_file", cls.__name__),
                 len(infos), how, sum(a.nbytes for a in arrays.values()) / 2**20)


def _array_like(obj: Any) -> bool:
    return hasattr(obj, "__iter__") and hasattr(obj, "__len__")  # pycocotools' _isArrayLike


class FlatCOCO:
    """pycocotools' ``COCO`` index for per-sample reads, from flat buffers.

    ``get_ann_ids`` / ``getAnnIds`` with image ids and ``load_anns`` / ``loadAnns`` answer as pycocotools does (the
    same ids in the same order, equal annotation dicts) without Python objects per annotation; every other name is
    looked up on the full index: ``full`` when given, else rebuilt once from the annotation file (a warning)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], full: Any = None,
                 rebuild: tuple[type, str | None, Any, bool] | None = None) -> None:
        self._arrays = dict(arrays)
        self._img_keys = arrays["coco.img_keys"]
        self._starts = arrays["coco.ann_starts"]
        self._ann_ids = arrays["coco.ann_ids"]
        self._order = arrays["coco.ann_order"]
        self._sorted = arrays["coco.ann_sorted"]
        self._anns = FlatList.from_arrays(arrays, "coco.anns")
        self._full_index = full
        self._rebuild = rebuild
        self._cached: tuple[int, list] = (-1, [])

    # ------------------------------------------------------------------------------------ per-sample reads
    def _image(self, img_id: Any) -> int:
        """Position of ``img_id`` among the images with annotations, -1 if it has none."""
        try:
            pos = int(np.searchsorted(self._img_keys, img_id))
        except (TypeError, ValueError):
            return -1
        return pos if pos < len(self._img_keys) and self._img_keys[pos] == img_id else -1

    def _group(self, pos: int) -> list:
        if self._cached[0] != pos:  # get_ann_ids then load_anns of one image decode it once
            self._cached = (pos, self._anns[pos])
        return self._cached[1]

    def _ann(self, ann_id: Any) -> dict:
        where = int(np.searchsorted(self._sorted, ann_id)) if isinstance(ann_id, (int, np.integer)) else -1
        if not 0 <= where < len(self._sorted) or self._sorted[where] != ann_id:
            raise KeyError(ann_id)
        at = int(self._order[where])
        pos = int(np.searchsorted(self._starts, at, side="right")) - 1
        return self._group(pos)[at - int(self._starts[pos])]

    def get_ann_ids(self, img_ids: Any = (), cat_ids: Any = (), area_rng: Any = (), iscrowd: Any = None) -> list:
        """pycocotools' ``getAnnIds``: from the flat buffers when image ids are given."""
        img_ids = img_ids if _array_like(img_ids) else [img_ids]
        cat_ids = cat_ids if _array_like(cat_ids) else [cat_ids]
        if len(img_ids) == 0:
            return self._full().getAnnIds(img_ids, cat_ids, area_rng, iscrowd)
        positions = [p for p in (self._image(i) for i in img_ids) if p >= 0]
        if len(cat_ids) == 0 and len(area_rng) == 0 and iscrowd is None:
            return [i for p in positions for i in self._ann_ids[self._starts[p]:self._starts[p + 1]].tolist()]
        anns = [ann for p in positions for ann in self._group(p)]
        if len(cat_ids):
            anns = [ann for ann in anns if ann["category_id"] in cat_ids]
        if len(area_rng):
            anns = [ann for ann in anns if area_rng[0] < ann["area"] < area_rng[1]]
        if iscrowd is not None:
            return [ann["id"] for ann in anns if ann["iscrowd"] == iscrowd]
        return [ann["id"] for ann in anns]

    def getAnnIds(self, imgIds: Any = (), catIds: Any = (), areaRng: Any = (), iscrowd: Any = None) -> list:  # noqa: N802, N803
        return self.get_ann_ids(imgIds, catIds, areaRng, iscrowd)

    def load_anns(self, ids: Any = ()) -> list | None:
        """pycocotools' ``loadAnns``."""
        if _array_like(ids):
            return [self._ann(i) for i in ids]
        if type(ids) is int:
            return [self._ann(ids)]
        return None

    loadAnns = load_anns  # noqa: N815

    # ---------------------------------------------------------------------------------- the rest of the API
    def _full(self) -> Any:
        if self._full_index is None:
            cls, ann_file, file_client, filename = self._rebuild or (None, None, None, False)
            if cls is None or ann_file is None:
                raise AttributeError("the full COCO index of this dataset was dropped by share_annotations")
            logger.warning("Rebuilding the pycocotools index of %s: something asked for more than the per-sample"
                           " reads that share_annotations keeps flat (this costs the file's load again).", ann_file)
            get_local_path = getattr(file_client, "get_local_path", None)
            with (get_local_path(ann_file) if get_local_path else contextlib.nullcontext(ann_file)) as local:
                full = cls(local)
            if filename:
                for img in full.imgs.values():
                    img["filename"] = img["file_name"]
            self._full_index = full
        return self._full_index

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._full(), name)

    def __reduce__(self) -> tuple:
        arrays = {k: np.array(v) for k, v in self._arrays.items()}
        return FlatCOCO, (arrays, self._full_index, self._rebuild)
