"""MMDetection 2.x's hook for the shared COCO annotation checker (:mod:`model_hub_mmdet.coco_annotations`).

:func:`install` wraps ``CocoDataset.load_annotations`` (and so every subclass that does not override it): mmdet
parses the file once, with pycocotools, and the checker reads pycocotools' index and the parsed dict. Only when
mmdet's own loading fails is the file read again, to say why. The checker's names are re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from model_hub_mmdet import coco_annotations
from model_hub_mmdet.coco_annotations import (
    DROPPED,
    SECTIONS,
    AnnotationError,
    AnnotationReport,
    Reader,
    annotation_error,
    error_class,
    inspect_coco,
)
from model_hub_mmdet.mmdet2.datasets.patching import wrap_method

__all__ = ["DROPPED", "SECTIONS", "AnnotationError", "AnnotationReport", "annotation_error", "annotation_warnings",
           "error_class", "inspect_coco", "inspect_file", "install", "validate_coco_annotations"]
logger = logging.getLogger("model_hub_mmdet")


def file_reader(file_client_args: Mapping | None) -> Reader | None:
    """The checker's reader for mmcv ``file_client_args`` (None: the local disk)."""
    if not file_client_args:
        return None

    def read(path: str) -> bytes:
        from mmcv import FileClient

        from model_hub_mmdet.storage.base import normalize_file_client_args

        return FileClient(**normalize_file_client_args(dict(file_client_args))).get(path)

    return read


def inspect_file(path_or_obj: Any, classes: Sequence[str] | None = None, file_client_args: Mapping | None = None,
                 **kwargs: Any) -> AnnotationReport:
    """:func:`model_hub_mmdet.coco_annotations.inspect_file`, the file read through mmcv's ``file_client_args``."""
    return coco_annotations.inspect_file(path_or_obj, classes, file_reader(file_client_args), **kwargs)


def validate_coco_annotations(path_or_obj: Any, classes: Sequence[str] | None = None,
                              file_client_args: Mapping | None = None, name: str | None = None) -> list[str]:
    """:func:`model_hub_mmdet.coco_annotations.validate_coco_annotations` through ``file_client_args``."""
    return coco_annotations.validate_coco_annotations(path_or_obj, classes, file_reader(file_client_args), name)


def annotation_warnings(path_or_obj: Any, classes: Sequence[str] | None = None,
                        file_client_args: Mapping | None = None, name: str | None = None, **kwargs: Any) -> list[str]:
    """:func:`model_hub_mmdet.coco_annotations.annotation_warnings` through ``file_client_args``."""
    return coco_annotations.annotation_warnings(path_or_obj, classes, file_reader(file_client_args), name, **kwargs)

_warned: set[tuple[str, str]] = set()  # (file, line): each file's warning once per process


def _checked_load(original: Any) -> Any:
    def load_annotations(self: Any, ann_file: str) -> list:
        # mmdet passes a local copy (get_local_path) for remote files; name the file the user configured.
        shown = str(getattr(self, "ann_file", None) or ann_file)
        classes = getattr(self, "CLASSES", None)
        modes = dict(filter_empty_gt=getattr(self, "filter_empty_gt", True),
                     test_mode=getattr(self, "test_mode", False))
        try:
            infos = original(self, ann_file)
        except Exception as err:
            report = inspect_file(ann_file, classes, **modes)
            if report.problems:
                raise report.error(shown) from err
            raise
        coco = getattr(self, "coco", None)
        report = inspect_coco(getattr(coco, "dataset", None), classes, coco=coco, **modes)
        if report.problems:
            raise report.error(shown)
        line = report.warning_line(shown)
        if line and (shown, line) not in _warned:
            _warned.add((shown, line))
            logger.warning("%s", line)
        return infos

    return load_annotations


def install() -> None:
    """Make ``CocoDataset.load_annotations`` refuse what mmdet cannot train on and warn about what it tolerates
    (idempotent)."""
    from mmdet.datasets import CocoDataset

    wrap_method(CocoDataset, "load_annotations", _checked_load)
