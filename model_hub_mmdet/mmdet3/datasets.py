"""Datasets of MMDetection 3.x: one-line errors for bad images and annotation files, and aspect-ratio groups.

* mmcv 2.1's ``LoadImageFromFile.transform`` fails on an undecodable image with ``AssertionError('failed to load
  image: ...')`` and on a missing one with whatever the backend raises; :func:`install_image_check` wraps it
  (class-level, so pipelines built before it are covered) so that a failure the file explains becomes a
  :class:`~model_hub_mmdet.bad_images.BadImageError` naming the file and why, which the ``data.bad_images``
  policy acts on (:mod:`model_hub_mmdet.sampling`). A successful load costs nothing extra.
* Every error raised in place of mmdet's or mmcv's is also of the type they raised (``AssertionError``,
  ``FileNotFoundError``, ...: :func:`~model_hub_mmdet.error_types.keeping`): never stricter than MMDetection.
* ``CocoDataset.load_data_list`` fails on a missing, non-JSON or non-COCO file with pycocotools' traceback, and
  mmengine on a file without images (or none left of the dataset's classes) deep in its serialisation;
  :func:`install_annotation_check` names the file and the problem in one :class:`DataError` line.
* :func:`aspect_ratio_flags` groups images as mmdet's ``AspectRatioBatchSampler`` does (width < height, or not).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from model_hub_mmdet import bad_images
from model_hub_mmdet.error_types import keeping
from model_hub_mmdet.errors import DataError, UserError
from model_hub_mmdet.patch_registry import wrap_method


def diagnose_image(filename: str, backend_args: Mapping | None = None) -> str | None:
    """Why ``filename`` cannot be loaded as an image, or None when it can."""
    import mmcv
    from mmengine import fileio

    args = dict(backend_args) if backend_args else None
    return bad_images.diagnose(lambda: fileio.get(filename, backend_args=args), mmcv.imfrombytes,
                               "data_root/data_prefix")


def _image_path(results: Any) -> str | None:
    filename = results.get("img_path") if isinstance(results, Mapping) else None
    return None if filename is None else str(filename)


def _checked_transform(original: Any) -> Any:
    return bad_images.checked_load(
        original, _image_path, lambda step, filename: diagnose_image(filename, getattr(step, "backend_args", None)))


def install_image_check() -> None:
    """Make ``LoadImageFromFile`` raise :class:`BadImageError` naming the file (idempotent)."""
    from mmcv.transforms import LoadImageFromFile

    wrap_method(LoadImageFromFile, "transform", _checked_transform)


def diagnose_annotations(ann_file: str, backend_args: Mapping | None = None) -> str:
    """What is wrong with a COCO annotation file that mmdet could not load."""
    from mmengine import fileio

    try:
        text = fileio.get_text(ann_file, backend_args=dict(backend_args) if backend_args else None)
    except DataError as err:
        return str(err)
    except FileNotFoundError:
        return "file not found; check data_root and ann_file"
    except (OSError, UnicodeDecodeError) as err:
        return f"cannot be read ({err})"
    try:
        doc = json.loads(text)
    except ValueError as err:
        return f"not valid JSON ({err})"
    if not isinstance(doc, dict):
        return f"holds a JSON {type(doc).__name__}, not a COCO object with images, annotations and categories"
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(doc.get(k), list)]
    if missing:
        return f"has no list of {', '.join(missing)} (is it a COCO instances file?)"
    return ""


def _checked_load(original: Any) -> Any:
    def load_data_list(self: Any) -> Any:
        try:
            data_list = original(self)
        except UserError:
            raise
        except Exception as err:
            reason = diagnose_annotations(str(self.ann_file), getattr(self, "backend_args", None))
            detail = reason or f"cannot be loaded by {type(self).__name__} ({type(err).__name__}: {err})"
            raise keeping(DataError, err, f"{self.ann_file}: {detail}") from err
        # mmengine fails in np.concatenate (a ValueError, as DataError is) serialising an empty list; unserialised,
        # an empty dataset is mmdet's to accept.
        if not data_list and getattr(self, "serialize_data", True):
            raise DataError(f"{self.ann_file}: holds no images; check that it is the annotation file you meant")
        return data_list

    return load_data_list


def _checked_filter(original: Any) -> Any:
    def filter_data(self: Any) -> Any:
        data_list = original(self)
        if not data_list and not self.test_mode and getattr(self, "serialize_data", True):
            classes = ", ".join(map(str, (self.metainfo or {}).get("classes") or ()))
            raise DataError(
                f"{self.ann_file}: none of its images has an annotation of the dataset's classes ({classes}), and"
                " filter_cfg.filter_empty_gt drops images without one; check metainfo.classes against the file's"
                " categories"
            )
        return data_list

    return filter_data


def install_annotation_check() -> None:
    """Make ``CocoDataset.load_data_list`` and ``filter_data`` raise one DataError line naming the file
    (idempotent)."""
    from mmdet.datasets import CocoDataset

    wrap_method(CocoDataset, "load_data_list", _checked_load)
    wrap_method(CocoDataset, "filter_data", _checked_filter)


def aspect_ratio_flags(dataset: Any) -> np.ndarray:
    """Per image, 0 when its width < height else 1: the two groups of mmdet's ``AspectRatioBatchSampler``. A
    dataset without ``get_data_info`` sizes is one group."""
    get = getattr(dataset, "get_data_info", None)
    flags = np.ones(len(dataset), np.int64)
    if get is None:
        return flags
    for i in range(len(dataset)):
        try:
            info = get(i)
            flags[i] = 0 if info["width"] < info["height"] else 1
        except (KeyError, TypeError, AttributeError, NotImplementedError):
            return np.ones(len(dataset), np.int64)
    return flags
