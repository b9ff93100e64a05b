"""A native mmdet 3.x checkpoint run on a few images, for the run summary's ``predictions.png``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def as_2x_result(pred_instances: Any, num_classes: int) -> Any:
    """mmdet 3.x ``pred_instances`` as mmdet 2.x's result: per class an ``(n, 5)`` array of boxes and scores, and
    with masks ``(bbox_result, segm_result)`` (per class a list of boolean masks)."""
    bboxes = pred_instances.bboxes.detach().cpu().numpy()
    scores = pred_instances.scores.detach().cpu().numpy()
    labels = pred_instances.labels.detach().cpu().numpy()
    masks = pred_instances.masks.detach().cpu().numpy() if "masks" in pred_instances else None
    boxes = np.concatenate([bboxes, scores[:, None]], axis=1) if len(bboxes) else np.zeros((0, 5), np.float32)
    bbox_result = [boxes[labels == c].astype(np.float32) for c in range(num_classes)]
    if masks is None:
        return bbox_result
    segm_result = [[m.astype(bool) for m in masks[labels == c]] for c in range(num_classes)]
    return bbox_result, segm_result


def predict(config: str | Path, checkpoint: str | Path, images: Sequence[str | Path]) -> tuple[list[str], list[Any]]:
    """The class names and, per image, the detections in mmdet 2.x's result format (see :func:`as_2x_result`)."""
    from mmdet.apis import inference_detector, init_detector

    model = init_detector(str(config), str(checkpoint), device="cpu")
    classes = list((model.dataset_meta or {}).get("classes") or [])
    results = [inference_detector(model, str(image)) for image in images]
    return classes, [as_2x_result(r.pred_instances, len(classes)) for r in results]


def validation_images(config_path: str | Path, count: int = 4) -> list[Path]:
    """Up to ``count`` readable images of the config's validation set (a bad one must not cost the summary)."""
    import cv2
    from mmengine.config import Config

    cfg = Config.fromfile(str(config_path))
    dataset = cfg.val_dataloader.dataset
    while "dataset" in dataset:
        dataset = dataset.dataset
    root = dataset.get("data_root") or ""
    ann_file = os.path.join(root, dataset.ann_file)
    prefix = Path(root) / ((dataset.get("data_prefix") or {}).get("img") or "")
    try:
        images = json.loads(Path(ann_file).read_text())["images"][:count]
    except (OSError, KeyError, ValueError):
        return []
    return [prefix / img["file_name"] for img in images if cv2.imread(str(prefix / img["file_name"])) is not None]
