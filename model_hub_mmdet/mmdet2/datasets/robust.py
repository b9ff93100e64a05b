"""Images that cannot be loaded: one error that names the file, and the setting that decides what happens next.

mmdet 2.28's ``LoadImageFromFile`` decodes with ``mmcv.imfrombytes``, which returns ``None`` for bytes that are not
an image (or a truncated PNG), and the step then fails on ``img.shape`` with an ``AttributeError`` that names
nothing; a zero-byte file fails inside OpenCV, a missing file with a bare ``FileNotFoundError``.
:func:`install` wraps the step's ``__call__`` (class-level, so pipelines built before it and subclasses that do
not override ``__call__`` are covered): a successful load costs nothing extra, and a failed one is diagnosed
(missing, empty, undecodable, or the storage backend's own :class:`~model_hub_mmdet.errors.DataError`, which
names bucket and key) and raised as :class:`BadImageError`. A failure the file does not explain (the bytes decode
fine) is re-raised unchanged, so bugs elsewhere in the step are not mistaken for bad data. The error is also of the
type the step raised (``FileNotFoundError``, ``AttributeError``, ...: :func:`~model_hub_mmdet.error_types.keeping`),
so code that caught mmdet's error still catches it.

What a bad image does to a run is :class:`BadImagePolicy`, read from the experiment's ``data.bad_images``::

    data:
      bad_images:
        max_fraction: 0.01        # training: skip bad samples, stop when more than 1% of those read are bad
        skip_at_validation: false # validation: a bad image is an error (a smaller set would falsify mAP)
"""

from __future__ import annotations

import os.path as osp
from collections.abc import Mapping
from typing import Any

from model_hub_mmdet import bad_images
from model_hub_mmdet.bad_images import SETTING, BadImageError, BadImagePolicy
from model_hub_mmdet.mmdet2.datasets.patching import wrap_method

__all__ = ["SETTING", "BadImageError", "BadImagePolicy", "diagnose", "image_path", "install"]

def image_path(results: Mapping[str, Any]) -> str | None:
    """The file ``LoadImageFromFile`` reads for ``results`` (None when the results lack the keys it needs)."""
    try:
        name = results["img_info"]["filename"]
        prefix = results.get("img_prefix")
    except (KeyError, TypeError):
        return None
    return osp.join(prefix, name) if prefix is not None else name


def diagnose(file_client: Any, filename: str, flag: str = "color", channel_order: str = "bgr") -> str | None:
    """Why ``filename`` cannot be loaded as an image through ``file_client``, or None when it can."""
    import mmcv

    return bad_images.diagnose(lambda: file_client.get(filename),
                               lambda data: mmcv.imfrombytes(data, flag=flag, channel_order=channel_order),
                               "img_prefix/data_root")


def _why(step: Any, filename: str) -> str | None:
    client = getattr(step, "file_client", None)
    return diagnose(client, filename, step.color_type, step.channel_order) if client is not None else None


def _checked_call(original: Any) -> Any:
    return bad_images.checked_load(original, image_path, _why)


def install() -> None:
    """Wrap mmdet's ``LoadImageFromFile.__call__`` so a failed load raises :class:`BadImageError` (idempotent)."""
    from mmdet.datasets.pipelines import LoadImageFromFile

    wrap_method(LoadImageFromFile, "__call__", _checked_call)
