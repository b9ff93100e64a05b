"""A native mmdet 2.x checkpoint run on a few images, for the run summary's ``predictions.png``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def predict(config: str | Path, checkpoint: str | Path, images: Sequence[str | Path]) -> tuple[list[str], list[Any]]:
    """The class names and, per image, mmdet 2.x's result (per-class box arrays, and masks for instance
    segmentation: ``(bbox_result, segm_result)``)."""
    from mmdet.apis import inference_detector, init_detector

    model = init_detector(str(config), str(checkpoint), device="cpu")
    return list(model.CLASSES or []), [inference_detector(model, str(image)) for image in images]


def validation_images(config_path: str | Path, count: int = 4) -> list[Path]:
    """Up to ``count`` readable images of the config's validation set (a bad one must not cost the summary)."""
    import cv2
    from mmcv import Config

    cfg = Config.fromfile(str(config_path))
    val = cfg.data.val
    prefix = Path(val.get("img_prefix") or "")
    try:
        images = json.loads(Path(val.ann_file).read_text())["images"][:count]
    except (OSError, KeyError, ValueError):
        return []
    return [prefix / img["file_name"] for img in images if cv2.imread(str(prefix / img["file_name"])) is not None]
